/**
 * A federation whose silos are Azure ML workspaces, end to end on a `flo host` child process: the real
 * @azure/arm-machinelearning client PUTs the silo jobs to the HTTPS fake ARM (trusted through
 * FLO_ARM_CA_FILE) with tokens from the fake managed identity endpoint; the fake's workspaces "train"
 * like the toy trainer, write the contract outputs to each silo's exchange datastore (an HTTPS Azurite
 * with OAuth) and publish the Event Grid events onto the job-events queue; the orchestrator reads the
 * updates with its own identity and aggregates them.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StorageSharedKeyCredential } from "@azure/storage-blob";
import { ModelStore } from "../lib/models/store";
import { generateTestCertificate, type TestCertificate } from "./fakes/arm/cert";
import { FakeArm, validateJobPutBody, type FakeJob, type FakeTrainingResult } from "./fakes/arm/fakeArm";
import { startFakeManagedIdentity, type FakeManagedIdentity } from "./fakes/arm/fakeManagedIdentity";
import { AZURITE_ACCOUNT, AZURITE_KEY, startHttpsAzuriteBlob, type HttpsBlobServer } from "./fakes/arm/httpsBlob";
import { expectedToyModel, finished, readToyModel, startFloHost, TOY_TEAM, toyModelBytes, type FloHost, type ToySilo } from "./helpers/flo";

const silos: readonly ToySilo[] = TOY_TEAM;
const SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590";
const CLIENT_ID = "5f2b3c4d-1111-4222-8333-944455566677";
const FEDERATION = "fraud-aml";
const ROUNDS = 2;

const spec = {
  name: FEDERATION,
  rounds: ROUNDS,
  silos: silos.map((s) => ({
    name: s.name,
    compute: { type: "azureml", subscriptionId: SUBSCRIPTION, resourceGroup: `rg-${s.name}`, workspace: `mlw-${s.name}`, computeName: "cpu-cluster", exchangeDatastore: "flo_exchange" },
    inputs: { data: `azureml://datastores/claims/paths/${s.name}/` },
  })),
  training: {
    command: "node toy-trainer.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}} --data ${{inputs.data}} --round ${{inputs.round}}",
    environment: "azureml:flo-node:1",
  },
  aggregation: { strategy: "fedavg" },
  policy: { minSilos: silos.length, roundTimeout: "PT2M" },
};

let certificate: TestCertificate;
let exchange: HttpsBlobServer;
let identity: FakeManagedIdentity;
let fake: FakeArm;
let flo: FloHost;
let orchestratorStore: ModelStore;

/** What the toy trainer does, run by the fake workspace: read the mounted global model, move halfway to the silo's target. */
async function trainLikeToyTrainer(job: FakeJob): Promise<FakeTrainingResult> {
  const silo = silos.find((s) => s.name === (job.properties.tags as Record<string, string>).floSilo);
  if (!silo) return { fail: `unknown silo tag on ${job.name}` };
  const globalUri = (job.properties.inputs as Record<string, { uri?: string }>).global_model?.uri;
  const global = globalUri ? readToyModel(await orchestratorStore.getBytes(orchestratorStore.pathFromUri(`${globalUri}model.safetensors`))) : [0, 0, 0, 0];
  const w = global.map((v, i) => Math.fround(v + 0.5 * (silo.target[i] - v)));
  const loss = (x: number[]) => x.reduce((acc, v, i) => acc + (v - silo.target[i]) ** 2, 0) / x.length;
  const metrics: Record<string, unknown> = { num_examples: silo.n, metrics: { loss: loss(w) } };
  if (globalUri) metrics.global_metrics = { loss: loss(global) };
  return { model: toyModelBytes(w), metrics };
}

beforeAll(async () => {
  certificate = generateTestCertificate();
  exchange = await startHttpsAzuriteBlob(certificate);
  identity = await startFakeManagedIdentity();
  fake = await FakeArm.start({
    certificate,
    blob: {
      serviceUrlFor: () => exchange.accountUrl,
      credential: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
      pipelineOptions: { tlsOptions: { ca: certificate.cert } },
    },
    // Event Grid's delivery onto the Service Bus queue the host's jobEvents trigger reads.
    publishEvent: (event) => flo.send("job-events", { body: event, messageId: event.id, contentType: "application/json" }),
    autoRun: { train: trainLikeToyTrainer, stepDelayMs: 20 },
  });
  for (const s of silos) {
    fake.addDatastore(`mlw-${s.name}`, "flo_exchange", { datastoreType: "AzureBlob", accountName: `${s.name}exchange`, containerName: `exchange-${s.name}` });
  }
  flo = await startFloHost({
    dir: mkdtempSync(join(tmpdir(), "flo-aml-e2e-")),
    env: identity.env,
    settings: {
      FLO_ARM_ENDPOINT: fake.url,
      FLO_ARM_CA_FILE: certificate.certPath,
      FLO_AZUREML_BLOB_ENDPOINT: exchange.accountUrl,
      FLO_AZUREML_CODE_ID: "azureml:flo-toy:1",
      FLO_AZURE_CREDENTIAL: "managedidentity",
      FLO_MANAGED_IDENTITY_CLIENT_ID: CLIENT_ID,
    },
  });
  orchestratorStore = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
}, 60_000);

afterAll(async () => {
  await flo?.stop();
  await fake?.close();
  await exchange?.close();
  await identity?.close();
  certificate?.dispose();
}, 30_000);

it("runs 2 rounds on 3 Azure ML silos: complete job PUTs, round 2 mounts the round-2 global model, FedAvg of the silos' updates", async () => {
  expect((await flo.start(spec)).status).toBe(202);
  const status = await flo.waitFor(FEDERATION, finished, 90_000);
  expect({ runtimeStatus: status.runtimeStatus, failure: status.failure }).toEqual({ runtimeStatus: "Completed", failure: undefined });
  await fake.settle();
  expect(fake.publishErrors).toEqual([]);
  // Each job went Queued -> Running -> Completed, and every event was delivered to (and consumed from) job-events.
  expect(fake.publishedEvents.map((e) => `${e.data.runId} ${e.data.runStatus}`).filter((e) => e.endsWith("Completed")).length).toBe(silos.length * ROUNDS);
  expect(fake.publishedEvents.length).toBe(3 * silos.length * ROUNDS);
  expect(await flo.peek("job-events")).toEqual([]);
  expect(await flo.peek("job-events-rejected")).toEqual([]);

  // One PUT per silo and round, each a complete command job (inputs and outputs with their URIs).
  const puts = fake.requestsTo("PUT", "/jobs/");
  expect(puts.map((r) => r.path.split("/").pop()).sort()).toEqual([1, 2].flatMap((r) => silos.map((s) => `flo-${FEDERATION}-r${r}-${s.name}`)).sort());
  for (const put of puts) {
    expect({ path: put.path, problems: validateJobPutBody(put.body) }).toEqual({ path: put.path, problems: [] });
    const p = (put.body as { properties: Record<string, any> }).properties;
    const silo = p.tags.floSilo as string;
    const round = Number(p.tags.floRound);
    expect(put.path).toBe(`/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-${silo}/providers/Microsoft.MachineLearningServices/workspaces/mlw-${silo}/jobs/flo-${FEDERATION}-r${round}-${silo}`);
    expect(p.tags).toEqual({ floFederation: FEDERATION, floRound: String(round), floSilo: silo, floKind: "train", floApp: "flo" });
    expect(p.codeId).toMatch(new RegExp(`/workspaces/mlw-${silo}/codes/flo-toy/versions/1$`));
    expect(p.environmentId).toMatch(/flo-node/);
    expect(p.computeId).toMatch(new RegExp(`/workspaces/mlw-${silo}/computes/cpu-cluster$`));
    expect(p.outputs.model_update).toEqual({ jobOutputType: "uri_folder", mode: "ReadWriteMount", uri: `azureml://datastores/flo_exchange/paths/flo/${FEDERATION}/r${round}/${silo}/` });
    expect(p.inputs.data).toEqual({ jobInputType: "literal", value: `azureml://datastores/claims/paths/${silo}/` });
    if (round === 1) expect(p.inputs).not.toHaveProperty("global_model");
    else {
      // Round 2 trains from the model round 1 produced, in the orchestrator's storage.
      expect(p.inputs.global_model).toEqual({
        jobInputType: "uri_folder",
        mode: "ReadOnlyMount",
        uri: `${orchestratorStore.containerUrl}/federations/${FEDERATION}/rounds/2/global/`,
      });
    }
  }

  // The final model is FedAvg of the silos' toy updates.
  const w = readToyModel(await orchestratorStore.getBytes(orchestratorStore.pathFromUri(status.output.finalModel.uri)));
  expectedToyModel(silos, ROUNDS).forEach((v, i) => expect(w[i]).toBeCloseTo(v, 6));

  // The manifest records the updates read from each silo's exchange datastore, weighted by num_examples.
  const manifest = await orchestratorStore.getJson<any>(`federations/${FEDERATION}/rounds/2/manifest.json`);
  expect(manifest.silos.map((s: any) => [s.silo, s.update?.uri, s.numExamples])).toEqual(silos.map((s) => [s.name, `azureml://datastores/flo_exchange/paths/flo/${FEDERATION}/r2/${s.name}/`, s.n]));

  // Every token came from the managed identity endpoint, for the configured user-assigned identity.
  expect(identity.requests.length).toBeGreaterThan(0);
  expect(new Set(identity.requests.map((r) => r.clientId))).toEqual(new Set([CLIENT_ID]));
  // ARM tokens: the SDK scopes them to its endpoint (https://management.azure.com in Azure, the fake here).
  expect(new Set(identity.requests.map((r) => r.resource.replace(/\/+$/, "")))).toEqual(new Set([fake.url, "https://storage.azure.com"]));
}, 120_000);
