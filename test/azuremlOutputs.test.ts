import { randomBytes } from "node:crypto";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import type { AccessToken, TokenCredential } from "@azure/core-auth";
import { AzureMlAuthorizationError, AzureMlConfigError, AzureMlSiloCompute, type AzureMlSiloComputeOptions } from "../lib/compute/azureml/compute";
import { parseDatastoreUri, resolveDatastoreFolder, type DatastoreEndpoint } from "../lib/compute/azureml/outputs";
import { SiloOutputError, type SiloJobRequest } from "../lib/compute/siloCompute";
import { azureMlSiloComputeFromSettings } from "../lib/compute/azureml/settings";
import type { AzureMlEventGridEvent } from "../lib/compute/azureml/events";
import { parseJobEvent } from "../lib/compute/backends";
import { createAzureCredential, credentialSettingsFromEnv } from "../lib/azure/credentials";
import { startFakeManagedIdentity, type FakeManagedIdentity } from "./fakes/arm/fakeManagedIdentity";
import { generateTestCertificate, type TestCertificate } from "./fakes/arm/cert";
import { FakeArm, StubArmCredential } from "./fakes/arm/fakeArm";
import { AZURITE_ACCOUNT, AZURITE_KEY, FakeStorageTokenCredential, startHttpsAzuriteBlob, type HttpsBlobServer } from "./fakes/arm/httpsBlob";

const SUBSCRIPTION = "00000000-0000-0000-0000-0000000000bb";
const RESOURCE_GROUP = "rg-silo-us";
const WORKSPACE = "mlw-silo-us";
const EXCHANGE_ACCOUNT = "silousexchange";
const EXCHANGE_CONTAINER = "flo-exchange";

let certificate: TestCertificate;
let blobServer: HttpsBlobServer;
let fake: FakeArm;
let storageCredential: FakeStorageTokenCredential;
let resolvedEndpoints: DatastoreEndpoint[];

beforeAll(async () => {
  certificate = generateTestCertificate();
  blobServer = await startHttpsAzuriteBlob(certificate);
  fake = await FakeArm.start({
    certificate,
    // The silo side (the "trainer") writes with the account key; the orchestrator only ever reads with a token.
    blob: {
      serviceUrlFor: () => blobServer.accountUrl,
      credential: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
      pipelineOptions: { tlsOptions: { ca: certificate.cert } },
    },
  });
  fake.addDatastore(WORKSPACE, "floexchange", {
    datastoreType: "AzureBlob",
    accountName: EXCHANGE_ACCOUNT,
    containerName: EXCHANGE_CONTAINER,
    endpoint: "core.windows.net",
    protocol: "https",
  });
  fake.addAssetVersion(WORKSPACE, "environments", "flo-node", "1");
  fake.addAssetVersion(WORKSPACE, "environments", "e", "1");
  fake.addAssetVersion(WORKSPACE, "codes", "flo-train", "2");
  fake.addDatastore(WORKSPACE, "lake", { datastoreType: "AzureDataLakeGen2", accountName: "silouslake", filesystem: "updates" });
  fake.addDatastore(WORKSPACE, "files", { datastoreType: "AzureFile", accountName: "silousfiles" });
});

afterAll(async () => {
  await fake?.close();
  await blobServer?.close();
  certificate?.dispose();
});

beforeEach(() => {
  fake.clearFaults();
  storageCredential = new FakeStorageTokenCredential();
  resolvedEndpoints = [];
});

function compute(overrides: Partial<AzureMlSiloComputeOptions> = {}): AzureMlSiloCompute {
  return new AzureMlSiloCompute({
    subscriptionId: SUBSCRIPTION,
    resourceGroup: RESOURCE_GROUP,
    workspace: WORKSPACE,
    computeName: "cpu-cluster",
    credential: new StubArmCredential(),
    exchangeDatastore: "floexchange",
    endpoint: fake.url,
    tlsOptions: { ca: fake.ca },
    retryOptions: { maxRetries: 0 },
    environmentId: "azureml:flo-node:1",
    blob: {
      credential: storageCredential,
      // Every account is Azurite here; record what the datastore resolved to.
      serviceUrlFor: (endpoint) => {
        resolvedEndpoints.push(endpoint);
        return blobServer.accountUrl;
      },
      tlsOptions: { ca: certificate.cert },
      retryOptions: { maxTries: 1 },
    },
    ...overrides,
  });
}

let round = 0;
function request(): SiloJobRequest {
  round += 1;
  return {
    federationId: "fraud",
    round,
    silo: "us",
    jobName: `flo-fraud-r${round}-us`,
    command: "node train.js --out ${{outputs.model_update}}",
    inputs: { global_model: { kind: "folder", uri: "azureml://datastores/orchestrator/paths/fraud/r0/global/" } },
    outputUri: "",
    timeoutSeconds: 600,
    tags: {},
  };
}

describe("reading a completed job's output", () => {
  test("resolves the datastore, lists the folder and reads model + metrics with the orchestrator's token", async () => {
    const silo = compute();
    const job = request();
    await silo.submit(job);
    fake.advanceJob(WORKSPACE, job.jobName);
    fake.advanceJob(WORKSPACE, job.jobName);
    const model = randomBytes(300_000);
    const metrics = { num_examples: 1234, metrics: { loss: 0.25, auc: 0.91 }, global_metrics: { loss: 0.4 } };
    await fake.completeJob(WORKSPACE, job.jobName, { model, metrics });

    const status = await silo.status(job.jobName);
    expect(status.state).toBe("completed");
    expect(status.outputUri).toBe(`azureml://datastores/floexchange/paths/flo/fraud/r${round}/us/`);

    const folder = await silo.openOutput(status.outputUri!);
    expect(resolvedEndpoints).toEqual([{ accountName: EXCHANGE_ACCOUNT, endpoint: "core.windows.net", protocol: "https" }]);
    expect(folder.location).toEqual({
      accountName: EXCHANGE_ACCOUNT,
      containerName: EXCHANGE_CONTAINER,
      serviceUrl: blobServer.accountUrl,
      prefix: `flo/fraud/r${round}/us/`,
      folderUrl: `${blobServer.accountUrl}/${EXCHANGE_CONTAINER}/flo/fraud/r${round}/us/`,
    });
    expect(folder.files.sort((a, b) => a.name.localeCompare(b.name))).toEqual([
      { name: "metrics.json", size: Buffer.byteLength(JSON.stringify(metrics)) },
      { name: "model.safetensors", size: model.length },
    ]);
    expect(folder.kind).toBe("train");
    expect(folder.metrics).toEqual({ numExamples: 1234, metrics: { loss: 0.25, auc: 0.91 }, globalMetrics: { loss: 0.4 } });
    expect(await folder.model.size()).toBe(model.length);
    expect(folder.model.name).toBe(`${blobServer.accountUrl}/${EXCHANGE_CONTAINER}/flo/fraud/r${round}/us/model.safetensors`);
    expect((await folder.model.read(0, 8)).equals(model.subarray(0, 8))).toBe(true);
    expect((await folder.model.read(123_456, 70_000)).equals(model.subarray(123_456, 193_456))).toBe(true);
    expect((await folder.model.read(model.length - 1, 1)).equals(model.subarray(model.length - 1))).toBe(true);
    await expect(folder.model.read(model.length - 10, 11)).rejects.toThrow(`short read from ${folder.model.name}: asked for 11 bytes at offset ${model.length - 10}, only 10 exist there`);
    // Bearer tokens for storage, never the account key.
    expect(storageCredential.calls).toBeGreaterThan(0);
    expect(new Set(storageCredential.scopes)).toEqual(new Set(["https://storage.azure.com/.default"]));
  });

  test("the long azureml:// form resolves to the same folder", async () => {
    const silo = compute();
    const job = request();
    await silo.submit(job);
    await fake.completeJob(WORKSPACE, job.jobName, { model: Buffer.from("weights"), metrics: { num_examples: 3, metrics: {} } });
    const longUri = `azureml://subscriptions/${SUBSCRIPTION}/resourcegroups/${RESOURCE_GROUP}/workspaces/${WORKSPACE}/datastores/floexchange/paths/flo/fraud/r${round}/us`;
    const folder = await silo.openOutput(longUri);
    expect(folder.location.prefix).toBe(`flo/fraud/r${round}/us/`);
    expect((await folder.model.read(0, 7)).toString()).toBe("weights");
    expect(folder.metrics).toEqual({ numExamples: 3, metrics: {} });
  });

  test("a folder without metrics.json is a silo output error naming the folder", async () => {
    round += 1;
    const prefix = `flo/fraud/r${round}/us/`;
    const writer = new BlobServiceClient(blobServer.accountUrl, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), {
      tlsOptions: { ca: certificate.cert },
    } as never).getContainerClient(EXCHANGE_CONTAINER);
    await writer.createIfNotExists();
    await writer.getBlockBlobClient(`${prefix}model.safetensors`).uploadData(Buffer.from("x"));
    const error = await compute()
      .openOutput(`azureml://datastores/floexchange/paths/${prefix}`)
      .catch((e) => e);
    expect(error).toBeInstanceOf(SiloOutputError);
    expect(error.message).toBe(
      `Invalid silo output at ${blobServer.accountUrl}/${EXCHANGE_CONTAINER}/${prefix}: metrics.json: expected a file written by the job, got no such file (the folder holds model.safetensors)`,
    );
    const empty = await compute()
      .openOutput("azureml://datastores/floexchange/paths/flo/nothing/here/")
      .catch((e) => e);
    expect(empty).toBeInstanceOf(SiloOutputError);
    expect(empty.message).toContain("model.safetensors: expected a file written by the job, got an empty folder");
  });

  test("storage refusing the orchestrator's token names the Storage Blob Data Reader role and the container", async () => {
    const wrongAudience: TokenCredential = {
      async getToken(): Promise<AccessToken> {
        const now = Math.floor(Date.now() / 1000);
        const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString("base64url");
        const payload = { aud: "https://management.azure.com", iss: "https://sts.windows.net/t/", iat: now, nbf: now - 60, exp: now + 3600 };
        return { token: `${b64({ alg: "none" })}.${b64(payload)}.x`, expiresOnTimestamp: (now + 3600) * 1000 };
      },
    };
    const silo = compute({
      blob: { credential: wrongAudience, serviceUrlFor: () => blobServer.accountUrl, tlsOptions: { ca: certificate.cert }, retryOptions: { maxTries: 1 } },
    });
    const error = await silo.openOutput("azureml://datastores/floexchange/paths/flo/fraud/r1/us/").catch((e) => e);
    expect(error).toBeInstanceOf(AzureMlAuthorizationError);
    expect(error.requiredRole).toBe("Storage Blob Data Reader");
    expect(error.scope).toBe(`${blobServer.accountUrl}/${EXCHANGE_CONTAINER}`);
    expect([401, 403]).toContain(error.statusCode);
    expect(error.message).toContain(`the orchestrator's identity needs the "Storage Blob Data Reader" role on the silo's exchange container`);
  });

  test("403 on the datastore read names the workspace and the AzureML Data Scientist role", async () => {
    fake.injectFault({ method: "GET", pathIncludes: "/datastores/floexchange", status: 403 });
    const error = await compute()
      .openOutput("azureml://datastores/floexchange/paths/flo/x/")
      .catch((e) => e);
    expect(error).toBeInstanceOf(AzureMlAuthorizationError);
    expect(error.workspace).toBe(WORKSPACE);
    expect(error.message).toContain(`Azure ML denied read datastore floexchange in workspace ${WORKSPACE}`);
    expect(error.message).toContain('"AzureML Data Scientist" role on the workspace');
  });
});

describe("datastore resolution", () => {
  test("default blob URL is https://<account>.blob.<endpoint>/<container>/<path>; ADLS Gen2 uses its filesystem", async () => {
    const client = compute().client;
    const coordinates = { subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP, workspace: WORKSPACE };
    const blob = await resolveDatastoreFolder(client, coordinates, "azureml://datastores/floexchange/paths/flo/fraud/r1/us/");
    expect(blob.folderUrl).toBe(`https://${EXCHANGE_ACCOUNT}.blob.core.windows.net/${EXCHANGE_CONTAINER}/flo/fraud/r1/us/`);
    const lake = await resolveDatastoreFolder(client, coordinates, "azureml://datastores/lake/paths/a/b");
    expect(lake.folderUrl).toBe("https://silouslake.blob.core.windows.net/updates/a/b/");
    await expect(resolveDatastoreFolder(client, coordinates, "azureml://datastores/files/paths/a")).rejects.toThrow(
      `Invalid Azure ML job setting datastore files in workspace ${WORKSPACE}: expected an AzureBlob (or AzureDataLakeGen2) datastore with an account and a container, got type AzureFile, account silousfiles, container none`,
    );
    await expect(resolveDatastoreFolder(client, coordinates, "azureml://datastores/missing/paths/a")).rejects.toMatchObject({ statusCode: 404 });
    await expect(
      resolveDatastoreFolder(client, coordinates, "azureml://subscriptions/11111111-0000-0000-0000-000000000000/resourcegroups/rg/workspaces/ws/datastores/d/paths/p"),
    ).rejects.toBeInstanceOf(AzureMlConfigError);
  });

  test("parseDatastoreUri handles both forms and refuses others", () => {
    expect(parseDatastoreUri("azureml://datastores/workspaceblobstore/paths/flo/f/r1/s/")).toEqual({ datastore: "workspaceblobstore", path: "flo/f/r1/s/" });
    expect(parseDatastoreUri("azureml://subscriptions/s1/resourcegroups/rg1/workspaces/ws1/datastores/ds/paths/p/q")).toEqual({
      subscriptionId: "s1",
      resourceGroup: "rg1",
      workspace: "ws1",
      datastore: "ds",
      path: "p/q",
    });
    expect(parseDatastoreUri("azureml://subscriptions/s1/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1/datastores/ds/paths/p")).toMatchObject({
      workspace: "ws1",
      datastore: "ds",
      path: "p",
    });
    expect(() => parseDatastoreUri("azureml://jobs/j1/outputs/model_update/paths/x")).toThrow(AzureMlConfigError);
    expect(() => parseDatastoreUri("https://a.blob.core.windows.net/c/p")).toThrow(/expected azureml:\/\/datastores\/<datastore>\/paths\/<path>/);
  });
});

describe("compute from settings (how the app builds it)", () => {
  const spec = { subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP, workspace: WORKSPACE, computeName: "gpu-cluster", exchangeDatastore: "floexchange" };

  test("endpoint, CA file, blob endpoint and code id settings redirect a whole submit -> complete -> read cycle", async () => {
    const silo = azureMlSiloComputeFromSettings(spec, {
      credential: new StubArmCredential(),
      blobCredential: storageCredential,
      env: {
        FLO_ARM_ENDPOINT: fake.url,
        FLO_ARM_CA_FILE: certificate.certPath,
        FLO_AZUREML_BLOB_ENDPOINT: blobServer.accountUrl,
        FLO_AZUREML_CODE_ID: "azureml:flo-train:2",
      },
      overrides: { environmentId: "azureml:flo-node:1", retryOptions: { maxRetries: 0 } },
    });
    const job = { ...request(), inputs: { global_model: { kind: "folder" as const, uri: "http://127.0.0.1:10000/devstoreaccount1/flo/fraud/r0/global/" } } };
    const submitted = await silo.submit(job);
    const body = fake.requestsTo("PUT", `/jobs/${job.jobName}`)[0].body as { properties: Record<string, unknown> };
    expect(body.properties.codeId).toBe(
      `/subscriptions/${SUBSCRIPTION}/resourceGroups/${RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/${WORKSPACE}/codes/flo-train/versions/2`,
    );
    expect(body.properties.computeId).toMatch(/\/computes\/gpu-cluster$/);
    await fake.completeJob(WORKSPACE, job.jobName, { model: Buffer.from("abc"), metrics: { num_examples: 1, metrics: { loss: 1 } } });
    const folder = await silo.openOutput(submitted.outputUri!);
    expect((await folder.model.read(0, 3)).toString()).toBe("abc");
    expect(folder.location.serviceUrl).toBe(blobServer.accountUrl);
  });

  test("bad settings are named", () => {
    const credential = new StubArmCredential();
    expect(() => azureMlSiloComputeFromSettings(spec, { credential, env: { FLO_ARM_ENDPOINT: "http://management.example" } })).toThrow(
      'Invalid Azure ML job setting FLO_ARM_ENDPOINT: expected an https:// URL, got "http://management.example"',
    );
    expect(() => azureMlSiloComputeFromSettings(spec, { credential, env: { FLO_AZUREML_BLOB_ENDPOINT: "http://10.0.0.5/acct" } })).toThrow(
      'Invalid Azure ML job setting FLO_AZUREML_BLOB_ENDPOINT: expected an https:// URL (http:// only on loopback), got "http://10.0.0.5/acct"',
    );
    expect(() => azureMlSiloComputeFromSettings(spec, { credential, env: { FLO_ARM_CA_FILE: "/nonexistent/ca.pem" } })).toThrow(
      'Invalid Azure ML job setting FLO_ARM_CA_FILE: expected a readable PEM file, got "/nonexistent/ca.pem" (ENOENT)',
    );
    const silo = azureMlSiloComputeFromSettings(spec, { credential, env: {}, overrides: { environmentId: "azureml:e:1" } });
    expect(() => silo.buildJobBody({ ...request(), inputs: { global_model: { kind: "folder", uri: "http://10.1.2.3/models/" } } })).toThrow(/inputs\.global_model\.uri/);
  });
});

describe("a self-running fake workspace (for end-to-end federations)", () => {
  test("jobs run by themselves, write the contract outputs and publish the events Event Grid would deliver", async () => {
    const delivered: AzureMlEventGridEvent[] = [];
    let releaseSlowJob!: () => void;
    const slowJobGate = new Promise<void>((resolve) => (releaseSlowJob = resolve));
    const selfRunning = await FakeArm.start({
      certificate,
      blob: fake["options"].blob,
      publishEvent: (event) => {
        // What the job-events queue would carry: JSON bytes.
        delivered.push(JSON.parse(Buffer.from(JSON.stringify(event)).toString("utf8")));
      },
      autoRun: {
        train: async (job) => {
          const silo = (job.properties.tags as Record<string, string>).floSilo;
          if (silo === "bad") return { fail: "trainer exited with code 1" };
          if (silo === "slow") await slowJobGate;
          return { model: Buffer.from(`weights of ${silo}`), metrics: { num_examples: 10, metrics: { loss: 0.5 } } };
        },
      },
    });
    try {
      selfRunning.addAssetVersion(WORKSPACE, "environments", "flo-node", "1");
      selfRunning.addDatastore(WORKSPACE, "floexchange", { datastoreType: "AzureBlob", accountName: EXCHANGE_ACCOUNT, containerName: EXCHANGE_CONTAINER });
      const silo = compute({ endpoint: selfRunning.url });
      const base = request();
      const jobs = ["good", "bad", "slow"].map((name) => ({ ...base, silo: name, jobName: `flo-fraud-r${base.round}-${name}` }));
      for (const job of jobs) await silo.submit(job);
      const waitFor = async (jobName: string, state: string) => {
        for (let i = 0; i < 400 && (await silo.status(jobName)).state !== state; i++) await new Promise((r) => setTimeout(r, 10));
        expect((await silo.status(jobName)).state).toBe(state);
      };
      await waitFor(jobs[0].jobName, "completed");
      await waitFor(jobs[1].jobName, "failed");
      await waitFor(jobs[2].jobName, "running");
      await silo.cancel(jobs[2].jobName);
      releaseSlowJob();
      await selfRunning.settle();
      expect(selfRunning.publishErrors).toEqual([]);

      const bySilo = new Map<string, string[]>();
      for (const event of delivered) {
        const parsed = parseJobEvent(event);
        if (parsed.kind !== "flo-job") throw new Error(`unexpected ${parsed.reason}`);
        expect(parsed).toMatchObject({ federationId: "fraud", round, correlatedBy: "tags", workspaceId: selfRunning.jobs.values().next().value!.workspaceId });
        bySilo.set(parsed.silo, [...(bySilo.get(parsed.silo) ?? []), parsed.rawStatus!]);
      }
      expect(Object.fromEntries(bySilo)).toEqual({
        good: ["Queued", "Running", "Completed"],
        bad: ["Queued", "Running", "Failed"],
        slow: ["Queued", "Running", "CancelRequested", "Canceled"],
      });
      expect((await silo.status(jobs[2].jobName)).state).toBe("canceled");
      const folder = await silo.openOutput((await silo.status(jobs[0].jobName)).outputUri!);
      expect((await folder.model.read(0, 15)).toString()).toBe("weights of good");
    } finally {
      await selfRunning.close();
    }
  });
});

describe("the production credential path: a managed identity, settings only", () => {
  const IDENTITY_VARIABLES = [
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "MSI_ENDPOINT",
    "MSI_SECRET",
    "IDENTITY_SERVER_THUMBPRINT",
    "IMDS_ENDPOINT",
    "AZURE_CLIENT_ID",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_USERNAME",
    "AZURE_PASSWORD",
    "AZURE_TOKEN_CREDENTIALS",
  ];
  const saved: Record<string, string | undefined> = {};
  let identity: FakeManagedIdentity;

  beforeAll(async () => {
    identity = await startFakeManagedIdentity();
    for (const key of IDENTITY_VARIABLES) {
      saved[key] = process.env[key];
      delete process.env[key];
    }
    Object.assign(process.env, identity.env);
  });
  afterAll(async () => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    await identity.close();
  });

  test("DefaultAzureCredential with a user-assigned identity submits to ARM and reads the silo's output from storage", async () => {
    const clientId = "7d9e0f1a-2222-4333-8444-955566677788";
    const env = {
      FLO_MANAGED_IDENTITY_CLIENT_ID: clientId,
      FLO_ARM_ENDPOINT: fake.url,
      FLO_ARM_CA_FILE: certificate.certPath,
      FLO_AZUREML_BLOB_ENDPOINT: blobServer.accountUrl,
    };
    const credential = createAzureCredential(credentialSettingsFromEnv(env));
    const silo = azureMlSiloComputeFromSettings(
      { subscriptionId: SUBSCRIPTION, resourceGroup: RESOURCE_GROUP, workspace: WORKSPACE, computeName: "cpu-cluster", exchangeDatastore: "floexchange" },
      { credential, env, overrides: { environmentId: "azureml:flo-node:1", retryOptions: { maxRetries: 0 } } },
    );
    const job = request();
    const submitted = await silo.submit(job);
    await fake.completeJob(WORKSPACE, job.jobName, { model: Buffer.from("mi-weights"), metrics: { num_examples: 5, metrics: {} } });
    const folder = await silo.openOutput(submitted.outputUri!);
    expect((await folder.model.read(0, 10)).toString()).toBe("mi-weights");
    expect(identity.requests).toEqual(
      expect.arrayContaining([
        { resource: fake.url, clientId },
        { resource: "https://storage.azure.com", clientId },
      ]),
    );
    expect(new Set(identity.requests.map((r) => r.clientId))).toEqual(new Set([clientId]));
  });
});
