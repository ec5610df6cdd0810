import { AzureMachineLearningWorkspaces } from "@azure/arm-machinelearning";
import { createHttpHeaders, createPipelineRequest } from "@azure/core-rest-pipeline";
import {
  AzureMlAssetNotFoundError,
  AzureMlAuthorizationError,
  AzureMlConfigError,
  AzureMlJobConflictError,
  AzureMlJobNotFoundError,
  AzureMlRequestError,
  AzureMlSiloCompute,
  exchangeOutputUri,
  isoDurationFromSeconds,
  toAzureMlError,
  type AzureMlSiloComputeOptions,
} from "../lib/compute/azureml/compute";
import { AZURE_ML_JOB_STATUSES, jobStateFromAzureMlStatus } from "../lib/compute/azureml/status";
import type { SiloJobRequest } from "../lib/compute/siloCompute";
import { FakeArm, StubArmCredential, validateJobPutBody } from "./fakes/arm/fakeArm";

const SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa";
const RESOURCE_GROUP = "rg-silo-eu";
const WORKSPACE = "mlw-silo-eu";
const WORKSPACE_ID = `/subscriptions/${SUBSCRIPTION}/resourceGroups/${RESOURCE_GROUP}/providers/Microsoft.MachineLearningServices/workspaces/${WORKSPACE}`;
const ENVIRONMENT = "azureml://registries/azureml/environments/sklearn-1.5/labels/latest";
const CODE_ID = `${WORKSPACE_ID}/codes/flo-train/versions/3`;
const GLOBAL_MODEL = "https://floorch.blob.core.windows.net/models/fraud/r1/global/";

let fake: FakeArm;
let credential: StubArmCredential;

beforeAll(async () => {
  fake = await FakeArm.start();
  fake.addAssetVersion(WORKSPACE, "codes", "flo-train", "3");
});
afterAll(async () => {
  await fake.close();
});
beforeEach(() => {
  fake.clearFaults();
  credential = new StubArmCredential();
});

function compute(overrides: Partial<AzureMlSiloComputeOptions> = {}): AzureMlSiloCompute {
  return new AzureMlSiloCompute({
    subscriptionId: SUBSCRIPTION,
    resourceGroup: RESOURCE_GROUP,
    workspace: WORKSPACE,
    computeName: "cpu-cluster",
    credential,
    exchangeDatastore: "floexchange",
    endpoint: fake.url,
    tlsOptions: { ca: fake.ca },
    retryOptions: { maxRetries: 2, retryDelayInMs: 20, maxRetryDelayInMs: 100 },
    cancelPollIntervalMs: 10,
    ...overrides,
  });
}

let jobCounter = 0;
function siloRequest(overrides: Partial<SiloJobRequest> = {}): SiloJobRequest {
  jobCounter += 1;
  const round = jobCounter;
  return {
    federationId: "fraud",
    round,
    silo: "eu",
    jobName: `flo-fraud-r${round}-eu`,
    command: "node train.js --global ${{inputs.global_model}} --out ${{outputs.model_update}} --epochs ${{inputs.epochs}}",
    inputs: {
      global_model: { kind: "folder", uri: GLOBAL_MODEL },
      epochs: { kind: "literal", value: "3" },
      round: { kind: "literal", value: String(round) },
      silo: { kind: "literal", value: "eu" },
      federation_id: { kind: "literal", value: "fraud" },
    },
    outputUri: `https://floorch.blob.core.windows.net/models/fraud/r${round}/eu/`,
    code: CODE_ID,
    environment: ENVIRONMENT,
    timeoutSeconds: 5400,
    tags: { team: "risk" },
    ...overrides,
  };
}

describe("submit", () => {
  test("PUTs a complete command job body (inputs and outputs keep uri and mode) with flo's tags", async () => {
    const request = siloRequest();
    const status = await compute().submit(request);

    const puts = fake.requestsTo("PUT", `/jobs/${request.jobName}`);
    expect(puts).toHaveLength(1);
    const put = puts[0];
    expect(put.path).toBe(`${WORKSPACE_ID}/jobs/${request.jobName}`);
    expect(put.query["api-version"]).toBe("2022-10-01");
    expect(put.headers.authorization).toBe("Bearer fake-arm-token");
    expect(put.headers["content-type"]).toBe("application/json");
    expect(String(put.headers["user-agent"])).toMatch(/^flo azsdk-js-arm-machinelearning\/2\.1\.1 /);
    expect(put.status).toBe(201);
    const properties = (put.body as { properties: Record<string, unknown> }).properties;
    expect(properties).toEqual({
      jobType: "Command",
      displayName: request.jobName,
      experimentName: "flo-fraud",
      description: `flo federation fraud, round ${request.round}, silo eu`,
      tags: { team: "risk", floFederation: "fraud", floRound: String(request.round), floSilo: "eu", floKind: "train", floApp: "flo" },
      properties: { floFederation: "fraud", floRound: String(request.round), floSilo: "eu" },
      computeId: `${WORKSPACE_ID}/computes/cpu-cluster`,
      environmentId: ENVIRONMENT,
      codeId: CODE_ID,
      command: request.command,
      inputs: {
        global_model: { jobInputType: "uri_folder", mode: "ReadOnlyMount", uri: GLOBAL_MODEL },
        epochs: { jobInputType: "literal", value: "3" },
        round: { jobInputType: "literal", value: String(request.round) },
        silo: { jobInputType: "literal", value: "eu" },
        federation_id: { jobInputType: "literal", value: "fraud" },
      },
      outputs: {
        model_update: {
          jobOutputType: "uri_folder",
          mode: "ReadWriteMount",
          uri: `azureml://datastores/floexchange/paths/flo/fraud/r${request.round}/eu/`,
        },
      },
      limits: { jobLimitsType: "Command", timeout: "PT1H30M" },
      identity: { identityType: "Managed" },
      resources: { instanceCount: 1 },
    });
    expect(validateJobPutBody(put.body)).toEqual([]);
    expect(status).toEqual({
      jobName: request.jobName,
      state: "queued",
      rawStatus: "NotStarted",
      outputUri: `azureml://datastores/floexchange/paths/flo/fraud/r${request.round}/eu/`,
      logUri: `https://ml.azure.com/runs/${request.jobName}?wsid=${WORKSPACE_ID}`,
    });
    expect(credential.calls).toBeGreaterThan(0);
  });

  test("the fake rejects what the SDK's own serializer sends (Azure/azure-sdk-for-js#29328), so the raw PUT is needed", async () => {
    const client = new AzureMachineLearningWorkspaces(credential, SUBSCRIPTION, {
      endpoint: fake.url,
      tlsOptions: { ca: fake.ca },
      retryOptions: { maxRetries: 0 },
    });
    const body = compute().buildJobBody(siloRequest());
    await expect(client.jobs.createOrUpdate(RESOURCE_GROUP, WORKSPACE, "flo-sdk-bug-demo", body as never)).rejects.toMatchObject({
      statusCode: 400,
      message: "Request is invalid and/or missing fields.",
    });
    const sent = fake.requestsTo("PUT", "/jobs/flo-sdk-bug-demo")[0].body as { properties: { inputs: Record<string, unknown>; outputs: Record<string, unknown> } };
    expect(sent.properties.inputs.global_model).toEqual({ jobInputType: "uri_folder" });
    expect(sent.properties.outputs.model_update).toEqual({ jobOutputType: "uri_folder" });
    expect(fake.jobs.has(`${WORKSPACE}/flo-sdk-bug-demo`)).toBe(false);
  });

  test("resubmitting an existing job name returns that job and never PUTs a second one", async () => {
    const silo = compute();
    const request = siloRequest();
    await silo.submit(request);
    fake.advanceJob(WORKSPACE, request.jobName);
    fake.advanceJob(WORKSPACE, request.jobName);
    const again = await silo.submit(request);
    expect(again.state).toBe("running");
    expect(again.rawStatus).toBe("Running");
    expect(fake.requestsTo("PUT", `/jobs/${request.jobName}`)).toHaveLength(1);
  });

  test("a job created between our GET and PUT (Azure ML's 400 'already exists') is adopted, not duplicated", async () => {
    const request = siloRequest();
    await compute().submit(request);
    // The next GET pretends the job does not exist yet, so the PUT races into a 409.
    fake.injectFault({ method: "GET", pathIncludes: `/jobs/${request.jobName}`, status: 404, code: "UserError", message: "not found" });
    const adopted = await compute().submit(request);
    expect(adopted.jobName).toBe(request.jobName);
    expect(adopted.state).toBe("queued");
    const puts = fake.requestsTo("PUT", `/jobs/${request.jobName}`);
    expect(puts.map((r) => r.status)).toEqual([201, 400]);
  });

  test("an existing job of another silo under the same name is a conflict error", async () => {
    const request = siloRequest();
    await compute().submit(request);
    const other = { ...request, silo: "us" };
    const error = await compute()
      .submit(other)
      .catch((e) => e);
    expect(error).toBeInstanceOf(AzureMlJobConflictError);
    expect(error.message).toBe(`Azure ML job ${request.jobName} already exists in workspace ${WORKSPACE} but is not this silo job: tag floSilo expected "us", got "eu"`);
  });

  test("bad requests fail before any call with the field, expected and got", async () => {
    const before = fake.requests.length;
    const silo = compute();
    await expect(silo.submit(siloRequest({ jobName: "flo fraud/r1" }))).rejects.toThrow(
      'Invalid Azure ML job setting jobName: expected an Azure ML job name matching ^[a-zA-Z0-9][a-zA-Z0-9\\-_]{0,254}$, got "flo fraud/r1"',
    );
    await expect(silo.submit(siloRequest({ environment: undefined }))).rejects.toBeInstanceOf(AzureMlConfigError);
    await expect(silo.submit(siloRequest({ tags: { "team.name": "x" } }))).rejects.toThrow(/tags\.team\.name: expected a tag key without dots/);
    await expect(silo.submit(siloRequest({ inputs: { global_model: { kind: "folder", uri: "/tmp/models/r0" } } }))).rejects.toThrow(
      'Invalid Azure ML job setting inputs.global_model.uri: expected an azureml://, https://, wasbs:// or abfss:// folder URI the Azure ML job can mount, got "/tmp/models/r0"',
    );
    await expect(silo.submit(siloRequest({ timeoutSeconds: 0 }))).rejects.toThrow(/timeoutSeconds: expected a positive whole number of seconds, got 0/);
    expect(fake.requests.length).toBe(before);
    expect(() => compute({ workspace: "" })).toThrow('Invalid Azure ML job setting workspace: expected a non-empty string, got ""');
  });

  test("short asset references become workspace ARM ids; a local code folder is refused", async () => {
    const body = compute().buildJobBody(siloRequest({ code: "azureml:flo-train:7", environment: "azureml:flo-node:2" }));
    expect(body.properties.codeId).toBe(`${WORKSPACE_ID}/codes/flo-train/versions/7`);
    expect(body.properties.environmentId).toBe(`${WORKSPACE_ID}/environments/flo-node/versions/2`);
    // Azure ML YAML's long form is the ARM id behind an `azureml:` prefix.
    expect(compute().buildJobBody(siloRequest({ environment: `azureml:${WORKSPACE_ID}/environments/flo-node/versions/5` })).properties.environmentId).toBe(
      `${WORKSPACE_ID}/environments/flo-node/versions/5`,
    );
    expect(() => compute().buildJobBody(siloRequest({ environment: "azureml:flo-node@latest" }))).toThrow(
      'Invalid Azure ML job setting training.environment: expected a resolved version (submit resolves it in the silo\'s workspace), got "azureml:flo-node@latest"',
    );
    expect(() => compute().buildJobBody(siloRequest({ environment: "azureml:flo-node@prod" }))).toThrow(
      'Invalid Azure ML job setting training.environment: expected azureml:<name>@latest or a pinned version (the Azure ML REST API 2022-10-01 has no lookup for label "prod"), got "azureml:flo-node@prod"',
    );
    expect(() => compute().buildJobBody(siloRequest({ environment: `${WORKSPACE_ID}/codes/flo-train/versions/1` }))).toThrow(/training\.environment: expected the ARM id of a environments version/);
    expect(compute().buildJobBody(siloRequest({ code: undefined })).properties).not.toHaveProperty("codeId");
    expect(() => compute().buildJobBody(siloRequest({ code: "./examples/fraud/trainer" }))).toThrow(
      'Invalid Azure ML job setting training.code: expected azureml:<name>:<version>, azureml:<name>@latest, azureml:/subscriptions/.../versions/<version>, a version\'s ARM id, or an azureml://registries/... URI, got "./examples/fraud/trainer"',
    );
    // The compute's own codeId option wins over the spec's folder.
    expect(compute({ codeId: "azureml:flo-train:1" }).buildJobBody(siloRequest({ code: "./trainer" })).properties.codeId).toBe(`${WORKSPACE_ID}/codes/flo-train/versions/1`);
  });

  test("submit resolves @latest and data asset inputs in the workspace; a missing asset names the silo, workspace and asset", async () => {
    fake.addAssetVersion(WORKSPACE, "environments", "flo-env", "1");
    fake.addAssetVersion(WORKSPACE, "environments", "flo-env", "4");
    fake.addAssetVersion(WORKSPACE, "data", "claims", "3");
    const request = siloRequest({
      environment: "azureml:flo-env@latest",
      code: CODE_ID,
      inputs: { ...siloRequest().inputs, data: { kind: "asset", type: "uri_folder", path: "azureml:claims:3", mode: "download" } },
    });
    await compute().submit(request);
    const put = fake.requestsTo("PUT", `/jobs/${request.jobName}`)[0];
    const p = (put.body as { properties: Record<string, unknown> }).properties;
    expect(p.environmentId).toBe(`${WORKSPACE_ID}/environments/flo-env/versions/4`);
    expect((p.inputs as Record<string, unknown>).data).toEqual({ jobInputType: "uri_folder", mode: "Download", uri: `azureml:${WORKSPACE_ID}/data/claims/versions/3` });
    expect(put.status).toBe(201);

    await expect(compute().submit(siloRequest({ environment: "azureml:no-such-env@latest" }))).rejects.toThrow(
      `Silo eu: environment azureml:no-such-env@latest does not exist in Azure ML workspace ${WORKSPACE} (resource group ${RESOURCE_GROUP}, subscription ${SUBSCRIPTION}): no environment named no-such-env`,
    );
    await expect(compute().submit(siloRequest({ environment: "azureml:flo-env:9" }))).rejects.toBeInstanceOf(AzureMlAssetNotFoundError);
    await expect(
      compute().submit(siloRequest({ environment: "azureml:flo-env:1", inputs: { ...siloRequest().inputs, data: { kind: "asset", type: "mltable", path: "azureml:claims:8", mode: "ro_mount" } } })),
    ).rejects.toThrow(`Silo eu: data asset azureml:claims:8 does not exist in Azure ML workspace ${WORKSPACE}`);
  });

  test("the fake refuses what Azure ML refuses: unregistered or labelled asset ids, unknown input types and modes", async () => {
    const put = (properties: Record<string, unknown>, name: string) =>
      compute().client.sendRequest(
        createPipelineRequest({
          url: `${fake.url}${WORKSPACE_ID}/jobs/${name}?api-version=2022-10-01`,
          method: "PUT",
          body: JSON.stringify({ properties: { jobType: "Command", command: "echo", computeId: `${WORKSPACE_ID}/computes/cpu-cluster`, ...properties } }),
          headers: createHttpHeaders({ "content-type": "application/json" }),
        }),
      );
    fake.addAssetVersion(WORKSPACE, "environments", "flo-env", "1");
    const refused = async (properties: Record<string, unknown>, name: string) => {
      const response = await put(properties, name);
      expect(response.status).toBe(400);
      return (JSON.parse(response.bodyAsText ?? "{}") as { error: { details: { message: string }[] } }).error.details.map((d) => d.message);
    };
    expect(await refused({ environmentId: "azureml:flo-env@latest" }, "fake-label")).toEqual([
      'properties.environmentId: "azureml:flo-env@latest" is not a valid ARM id of a environments version (labels and azureml: shorthands are resolved by clients)',
    ]);
    expect(await refused({ environmentId: `${WORKSPACE_ID}/environments/flo-env/versions/2` }, "fake-missing")).toEqual([
      `properties.environmentId: Could not find asset with ID: ${WORKSPACE_ID}/environments/flo-env/versions/2`,
    ]);
    expect(
      await refused(
        {
          environmentId: `${WORKSPACE_ID}/environments/flo-env/versions/1`,
          inputs: { d: { jobInputType: "uri_folder", mode: "ro_mount", uri: "azureml://datastores/x/paths/y" }, t: { jobInputType: "folder", uri: "https://a/b" } },
        },
        "fake-modes",
      ),
    ).toEqual([
      "properties.inputs.d.mode: expected one of ReadOnlyMount, ReadWriteMount, Download, Direct, EvalMount, EvalDownload",
      'properties.inputs.t.jobInputType: unknown "folder"',
      'body.properties.inputs.t.jobInputType: expected a JobInput type the REST model knows, got "folder"',
    ]);
    // Checked against the SDK's generated REST model too: invented or misspelt fields, wrong types, read-only fields.
    expect(
      await refused({ environmentId: `${WORKSPACE_ID}/environments/flo-env/versions/1`, enviromentVariables: { A: "1" }, resources: { instanceCount: "2" }, status: "Running" }, "fake-model"),
    ).toEqual([
      "body.properties.enviromentVariables: not a property of CommandJob",
      'body.properties.resources.instanceCount: expected a number, got "2"',
      "body.properties.status: read-only in CommandJob (set by the service)",
    ]);
    expect((await put({ environmentId: `${WORKSPACE_ID}/environments/flo-env/versions/1` }, "fake-good")).status).toBe(201);
    const codeVersion = await compute().client.sendRequest(
      createPipelineRequest({
        url: `${fake.url}${WORKSPACE_ID}/codes/flo-code/versions/1?api-version=2022-10-01`,
        method: "PUT",
        body: JSON.stringify({ properties: { codeURI: "https://acct.blob.core.windows.net/flo/code/x/" } }),
        headers: createHttpHeaders({ "content-type": "application/json" }),
      }),
    );
    expect({ status: codeVersion.status, message: (JSON.parse(codeVersion.bodyAsText ?? "{}") as { error: { message: string } }).error.message }).toEqual({
      status: 400,
      message: "body.properties.codeURI: not a property of CodeVersionProperties",
    });
  });

  test("experiment name: per federation by default, or fixed, or computed", () => {
    expect(compute().buildJobBody(siloRequest()).properties.experimentName).toBe("flo-fraud");
    expect(compute({ experimentName: "federated" }).buildJobBody(siloRequest()).properties.experimentName).toBe("federated");
    expect(compute({ experimentName: (id) => `fl_${id}` }).buildJobBody(siloRequest()).properties.experimentName).toBe("fl_fraud");
  });

  test("jobs.list and jobs.get of the SDK keep the output uri the raw PUT sent", async () => {
    const silo = compute();
    const request = siloRequest();
    await silo.submit(request);
    const listed = [];
    for await (const job of silo.client.jobs.list(RESOURCE_GROUP, WORKSPACE)) listed.push(job);
    const mine = listed.find((job) => job.name === request.jobName);
    expect((mine?.properties as { outputs?: Record<string, { uri?: string }> }).outputs?.model_update?.uri).toBe(exchangeOutputUri("floexchange", "fraud", request.round, "eu"));
  });

  test("an azureml:// outputUri in the request is honoured instead of the exchange path", async () => {
    const request = siloRequest({ outputUri: "azureml://datastores/other/paths/custom/place/" });
    const status = await compute().submit(request);
    expect(status.outputUri).toBe("azureml://datastores/other/paths/custom/place/");
  });
});

describe("status", () => {
  test("walks NotStarted -> Queued -> Running -> Completed", async () => {
    const silo = compute();
    const request = siloRequest();
    await silo.submit(request);
    const seen: string[] = [];
    seen.push((await silo.status(request.jobName)).state);
    fake.advanceJob(WORKSPACE, request.jobName); // Queued
    seen.push((await silo.status(request.jobName)).state);
    fake.advanceJob(WORKSPACE, request.jobName); // Running
    seen.push((await silo.status(request.jobName)).state);
    fake.setJobStatus(WORKSPACE, request.jobName, "Finalizing");
    seen.push((await silo.status(request.jobName)).state);
    fake.setJobStatus(WORKSPACE, request.jobName, "Completed");
    const done = await silo.status(request.jobName);
    seen.push(done.state);
    expect(seen).toEqual(["queued", "queued", "running", "running", "completed"]);
    expect(done.error).toBeUndefined();
    expect(done.outputUri).toBe(exchangeOutputUri("floexchange", "fraud", request.round, "eu"));
  });

  test("a failed job reports failed with the workspace and the Studio link", async () => {
    const silo = compute();
    const request = siloRequest();
    await silo.submit(request);
    fake.setJobStatus(WORKSPACE, request.jobName, "Failed");
    const failed = await silo.status(request.jobName);
    expect(failed.state).toBe("failed");
    expect(failed.rawStatus).toBe("Failed");
    expect(failed.error).toBe(`Azure ML job ${request.jobName} in workspace ${WORKSPACE} ended with status Failed; logs: https://ml.azure.com/runs/${request.jobName}?wsid=${WORKSPACE_ID}`);
  });

  test("an unknown job is a typed not-found error", async () => {
    const error = await compute()
      .status("flo-fraud-r999-nowhere")
      .catch((e) => e);
    expect(error).toBeInstanceOf(AzureMlJobNotFoundError);
    expect(error.statusCode).toBe(404);
  });
});

describe("cancel", () => {
  test("runs the cancel long-running operation (202 + Location, polled to 200)", async () => {
    const silo = compute();
    const request = siloRequest();
    await silo.submit(request);
    fake.advanceJob(WORKSPACE, request.jobName);
    fake.advanceJob(WORKSPACE, request.jobName);
    await silo.cancel(request.jobName);
    expect(fake.requestsTo("POST", `/jobs/${request.jobName}/cancel`).map((r) => r.status)).toEqual([202]);
    const polls = fake.requests.filter((r) => r.path.startsWith("/fakeOperations/cancel/"));
    expect(polls.map((r) => r.status)).toEqual([202, 200]);
    expect((await silo.status(request.jobName)).state).toBe("canceled");
  });

  test("an abort while waiting for the cancel operation stops the wait", async () => {
    const silo = compute({ cancelPollIntervalMs: 60_000 });
    const request = siloRequest();
    await silo.submit(request);
    fake.advanceJob(WORKSPACE, request.jobName);
    const controller = new AbortController();
    const started = performance.now();
    const cancelling = silo.cancel(request.jobName, { signal: controller.signal });
    // Abort once the cancel request has been accepted, i.e. while waiting to poll it.
    const abortWhenPosted = setInterval(() => {
      if (fake.requestsTo("POST", `/jobs/${request.jobName}/cancel`).length > 0) {
        clearInterval(abortWhenPosted);
        controller.abort();
      }
    }, 5);
    await expect(cancelling).rejects.toMatchObject({ name: "AbortError" });
    expect(performance.now() - started).toBeLessThan(5000);
    expect(fake.requestsTo("POST", `/jobs/${request.jobName}/cancel`)).toHaveLength(1);
  });

  test("cancelling a finished job sends no cancel request", async () => {
    const silo = compute();
    const request = siloRequest();
    await silo.submit(request);
    fake.setJobStatus(WORKSPACE, request.jobName, "Completed");
    await silo.cancel(request.jobName);
    expect(fake.requestsTo("POST", `/jobs/${request.jobName}/cancel`)).toHaveLength(0);
    // A job that was never created has nothing to cancel either.
    await silo.cancel("flo-fraud-r404-eu");
    expect(fake.requestsTo("POST", "/jobs/flo-fraud-r404-eu/cancel")).toHaveLength(0);
    expect(fake.requestsTo("GET", "/jobs/flo-fraud-r404-eu").map((r) => r.status)).toEqual([404]);
  });
});

describe("throttling and errors", () => {
  test("429 with Retry-After is retried after the advertised delay", async () => {
    const request = siloRequest();
    fake.injectFault({ method: "PUT", pathIncludes: `/jobs/${request.jobName}`, status: 429, retryAfterSeconds: 1 });
    const status = await compute().submit(request);
    expect(status.state).toBe("queued");
    const puts = fake.requestsTo("PUT", `/jobs/${request.jobName}`);
    expect(puts.map((r) => r.status)).toEqual([429, 201]);
    const waited = puts[1].at - puts[0].at;
    expect(waited).toBeGreaterThanOrEqual(950);
    expect(waited).toBeLessThan(3000);
  });

  test("429 without Retry-After is retried with backoff too (the SDK alone would give up at once)", async () => {
    const request = siloRequest();
    await compute().submit(request);
    fake.injectFault({ method: "GET", pathIncludes: `/jobs/${request.jobName}`, status: 429, times: 2 });
    const status = await compute().status(request.jobName);
    expect(status.state).toBe("queued");
    const gets = fake.requestsTo("GET", `/jobs/${request.jobName}`).slice(-3);
    expect(gets.map((r) => r.status)).toEqual([429, 429, 200]);
    // retryDelayInMs 20, doubled per retry, +-20% jitter: at least 16 ms, then at least 32 ms.
    expect(gets[1].at - gets[0].at).toBeGreaterThanOrEqual(15);
    expect(gets[2].at - gets[1].at).toBeGreaterThanOrEqual(30);
  });

  test("transient 5xx on GET is retried by the pipeline", async () => {
    const request = siloRequest();
    await compute().submit(request);
    fake.injectFault({ method: "GET", pathIncludes: `/jobs/${request.jobName}`, status: 503, times: 2 });
    const status = await compute().status(request.jobName);
    expect(status.state).toBe("queued");
    expect(
      fake
        .requestsTo("GET", `/jobs/${request.jobName}`)
        .slice(-3)
        .map((r) => r.status),
    ).toEqual([503, 503, 200]);
  });

  test("throttling beyond the retry budget surfaces a transient typed error with status and ARM code", async () => {
    const request = siloRequest();
    fake.injectFault({ method: "PUT", pathIncludes: `/jobs/${request.jobName}`, status: 429, retryAfterSeconds: 0, times: 5 });
    const error = await compute()
      .submit(request)
      .catch((e) => e);
    expect(error).toBeInstanceOf(AzureMlRequestError);
    expect(error.statusCode).toBe(429);
    expect(error.code).toBe("TooManyRequests");
    expect(error.transient).toBe(true);
    expect(fake.requestsTo("PUT", `/jobs/${request.jobName}`)).toHaveLength(3); // 1 + maxRetries 2
    expect(error.message).toBe(
      `Azure ML submit of job ${request.jobName} failed in workspace ${WORKSPACE} (resource group ${RESOURCE_GROUP}, subscription ${SUBSCRIPTION}): HTTP 429 TooManyRequests: Injected 429`,
    );
  });

  test("403 becomes an authorization error naming the workspace and the missing role, without retries", async () => {
    const request = siloRequest();
    fake.injectFault({ method: "GET", pathIncludes: `/jobs/${request.jobName}`, status: 403 });
    const error = await compute()
      .submit(request)
      .catch((e) => e);
    expect(error).toBeInstanceOf(AzureMlAuthorizationError);
    expect(error.workspace).toBe(WORKSPACE);
    expect(error.requiredRole).toBe("AzureML Data Scientist");
    expect(error.scope).toBe(WORKSPACE_ID);
    expect(error.statusCode).toBe(403);
    expect(error.code).toBe("AuthorizationFailed");
    expect(error.transient).toBe(false);
    expect(error.message).toContain(`Azure ML denied submit of job ${request.jobName} in workspace ${WORKSPACE}`);
    expect(error.message).toContain(`Fix: the orchestrator's identity needs the "AzureML Data Scientist" role on the workspace (scope ${WORKSPACE_ID}).`);
    expect(fake.requestsTo("GET", `/jobs/${request.jobName}`)).toHaveLength(1);
    expect(fake.requestsTo("PUT", `/jobs/${request.jobName}`)).toHaveLength(0);
  });

  test("a 400 from the service keeps ARM's field details in the typed error", async () => {
    const request = siloRequest();
    fake.injectFault({ method: "PUT", pathIncludes: `/jobs/${request.jobName}`, status: 400, code: "UserError", message: "Request is invalid and/or missing fields." });
    const error = await compute()
      .submit(request)
      .catch((e) => e);
    expect(error).toBeInstanceOf(AzureMlRequestError);
    expect(error).not.toBeInstanceOf(AzureMlAuthorizationError);
    expect(error.statusCode).toBe(400);
    expect(error.code).toBe("UserError");
    expect(error.transient).toBe(false);
  });

  test("403 on the PUT itself is an authorization error too", async () => {
    const request = siloRequest();
    fake.injectFault({ method: "PUT", pathIncludes: `/jobs/${request.jobName}`, status: 403 });
    const error = await compute()
      .submit(request)
      .catch((e) => e);
    expect(error).toBeInstanceOf(AzureMlAuthorizationError);
    expect(error.message).toContain("jobs/write");
  });

  test("an aborted signal stops the call", async () => {
    const controller = new AbortController();
    controller.abort();
    await expect(compute().status("flo-fraud-r1-eu", { signal: controller.signal })).rejects.toMatchObject({ name: "AbortError" });
  });
});

describe("pure helpers", () => {
  test("every Azure ML job status maps to a flo state, case-insensitively", () => {
    const expected: Record<string, string> = {
      NotStarted: "queued",
      Starting: "queued",
      Provisioning: "queued",
      Preparing: "queued",
      Queued: "queued",
      Paused: "queued",
      Unknown: "queued",
      Running: "running",
      Finalizing: "running",
      CancelRequested: "running",
      NotResponding: "running",
      Completed: "completed",
      Failed: "failed",
      Canceled: "canceled",
    };
    expect([...AZURE_ML_JOB_STATUSES].sort()).toEqual(Object.keys(expected).sort());
    for (const status of AZURE_ML_JOB_STATUSES) {
      expect([status, jobStateFromAzureMlStatus(status)]).toEqual([status, expected[status]]);
      expect(jobStateFromAzureMlStatus(status.toLowerCase())).toBe(expected[status]);
      expect(jobStateFromAzureMlStatus(status.toUpperCase())).toBe(expected[status]);
    }
    expect(jobStateFromAzureMlStatus("cancelled")).toBe("canceled");
    expect(jobStateFromAzureMlStatus(undefined)).toBe("queued");
    expect(jobStateFromAzureMlStatus("SomethingNew")).toBe("running");
  });

  test("ARM validation details are kept in the error message", () => {
    const body = JSON.stringify({
      error: {
        code: "UserError",
        message: "Request is invalid and/or missing fields.",
        details: [{ message: "properties.inputs.global_model.uri: required" }, { message: "properties.outputs.model_update.mode: required" }],
      },
    });
    const error = toAzureMlError(
      { statusCode: 400, bodyText: body },
      { coordinates: { subscriptionId: "s", resourceGroup: "rg", workspace: "ws" }, operation: "submit", requiredRole: "AzureML Data Scientist", jobName: "flo-f-r1-s" },
    );
    expect(error.message).toBe(
      "Azure ML submit of job flo-f-r1-s failed in workspace ws (resource group rg, subscription s): HTTP 400 UserError: Request is invalid and/or missing fields. " +
        "(properties.inputs.global_model.uri: required; properties.outputs.model_update.mode: required)",
    );
  });

  test("ISO durations for limits.timeout", () => {
    expect(isoDurationFromSeconds(5400)).toBe("PT1H30M");
    expect(isoDurationFromSeconds(45)).toBe("PT45S");
    expect(isoDurationFromSeconds(90061)).toBe("PT25H1M1S");
    expect(() => isoDurationFromSeconds(1.5)).toThrow(AzureMlConfigError);
  });
});
