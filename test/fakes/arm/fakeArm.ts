/**
 * A loopback HTTPS fake of the Azure ML ARM routes flo uses (jobs PUT/GET/list/cancel LRO, datastores
 * get), for driving the real @azure/arm-machinelearning client. It records every request, validates
 * job PUT bodies against the REST job shape (so the SDK's dropped-uri bug would be caught) and job and
 * code version PUT bodies against the SDK's generated REST models (./sdkModels.ts), lets the
 * test walk jobs through statuses, injects faults (429 + Retry-After, 403, 5xx), and can "complete"
 * a job by writing the contract outputs to the output's datastore container (Azurite).
 */
import { randomUUID } from "node:crypto";
import { createServer, type Server } from "node:https";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import type { AccessToken, TokenCredential } from "@azure/core-auth";
import { KnownInputDeliveryMode, KnownJobInputType, KnownOutputDeliveryMode, KnownJobOutputType } from "@azure/arm-machinelearning";
import { generateTestCertificate, type TestCertificate } from "./cert";
import { codeVersionBodyModelProblems, jobBodyModelProblems } from "./sdkModels";
import { runStatusChangedEvent, type AzureMlEventGridEvent } from "../../../lib/compute/azureml/events";
import { isJobKind, jobKindContract } from "../../../lib/compute/siloCompute";

export interface RecordedRequest {
  method: string;
  /** Path without the query string. */
  path: string;
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  rawBody: string;
  body?: unknown;
  /** ms since the fake started (performance clock). */
  at: number;
  /** Status the fake answered. */
  status?: number;
}

export interface FaultInjection {
  method?: string;
  /** Matches when the request path contains this text. */
  pathIncludes?: string;
  status: number;
  /** How many matching requests get the fault; default 1. */
  times?: number;
  /** Sent as `Retry-After` (seconds). */
  retryAfterSeconds?: number;
  code?: string;
  message?: string;
  /** Let this many matching requests through before the fault applies; default 0. */
  skip?: number;
  /** The request takes effect and only its answer is the fault (a service that committed, then failed to answer). */
  afterHandling?: boolean;
}

export interface FakeDatastore {
  datastoreType: "AzureBlob" | "AzureDataLakeGen2" | "AzureFile";
  accountName: string;
  containerName?: string;
  filesystem?: string;
  endpoint?: string;
  protocol?: string;
}

export type FakeAssetKind = "codes" | "environments" | "data";

/** A compute of a fake workspace (`properties` of the ARM ComputeResource). */
export interface FakeCompute {
  computeType?: "AmlCompute";
  /** ARM provisioning state; a usable cluster is `Succeeded`. */
  provisioningState?: string;
  minNodeCount?: number;
  maxNodeCount?: number;
}

export interface FakeJob {
  workspaceKey: string;
  /** ARM id of the workspace (the events' topic). */
  workspaceId: string;
  name: string;
  /** The PUT body's `properties`, plus `status` and `services` as the service adds them. */
  properties: Record<string, unknown>;
  createdAt: string;
}

/** Where "completed" jobs' outputs are written: a blob service reachable with shared key (Azurite). */
export interface FakeArmBlobTarget {
  /** Blob service URL of a datastore's account (e.g. Azurite's path-style account URL). */
  serviceUrlFor(accountName: string): string;
  credential: StorageSharedKeyCredential;
  /** Extra pipeline options for the writer (e.g. `{tlsOptions: {ca}}` for HTTPS Azurite). */
  pipelineOptions?: Record<string, unknown>;
}

/**
 * What a fake silo's job produced: the training contract's outputs, the files of the output folder
 * of the job's kind (`floKind` tag: `model_update` for training, `reveal` for unmasking), or a failure.
 */
export type FakeTrainingResult = { model: Uint8Array; metrics: unknown } | { files: Record<string, Uint8Array> } | { fail: string };

export interface FakeArmOptions {
  certificate?: TestCertificate;
  blob?: FakeArmBlobTarget;
  /** How many cancel-operation polls answer 202 before 200; default 1. */
  cancelPollsBeforeDone?: number;
  /**
   * Called on every job status change with the RunStatusChanged event Event Grid would deliver for it
   * (e.g. put it on the job-events queue). Failures are kept in `publishErrors`.
   */
  publishEvent?: (event: AzureMlEventGridEvent) => void | Promise<void>;
  /**
   * Runs jobs by themselves, like a real workspace: after the PUT the job goes Queued, Running, then
   * `train(job)` decides: outputs are written and the job Completes, or it Fails. Without it, the test
   * drives statuses (setJobStatus / advanceJob / completeJob).
   */
  autoRun?: { train: (job: FakeJob) => FakeTrainingResult | Promise<FakeTrainingResult>; stepDelayMs?: number };
}

const WORKSPACE_ROUTE = /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.MachineLearningServices\/workspaces\/([^/]+)(\/.*)?$/i;
/*
 * The enums come from @azure/arm-machinelearning 2.1.1, generated from the Azure ML REST API
 * 2022-10-01 (specification/machinelearningservices/resource-manager/Microsoft.MachineLearningServices/
 * stable/2022-10-01/mfe.json: JobInputType, InputDeliveryMode, JobOutputType, OutputDeliveryMode), so
 * the fake does not share flo's own lists.
 */
const ASSET_INPUT_TYPES: string[] = Object.values(KnownJobInputType).filter((type: string) => type !== "literal");
const INPUT_MODES: string[] = Object.values(KnownInputDeliveryMode);
const OUTPUT_TYPES: string[] = Object.values(KnownJobOutputType);
const OUTPUT_MODES: string[] = Object.values(KnownOutputDeliveryMode);
const STATUS_WALK = ["NotStarted", "Queued", "Running"] as const;

/** Validation as the Azure ML service does it for a command job PUT: returns problems, empty when valid. */
export function validateJobPutBody(body: unknown): string[] {
  const problems: string[] = [];
  if (typeof body !== "object" || body === null) return ["body: expected a JSON object"];
  const properties = (body as { properties?: unknown }).properties;
  if (typeof properties !== "object" || properties === null) return ["properties: required"];
  const p = properties as Record<string, unknown>;
  if (p.jobType !== "Command") problems.push(`properties.jobType: expected "Command", got ${JSON.stringify(p.jobType)}`);
  for (const field of ["command", "environmentId", "computeId"]) {
    if (typeof p[field] !== "string" || p[field] === "") problems.push(`properties.${field}: required string`);
  }
  for (const field of ["tags", "properties", "environmentVariables"]) {
    const value = p[field];
    if (value === undefined) continue;
    if (typeof value !== "object" || value === null) problems.push(`properties.${field}: expected an object`);
    else for (const [k, v] of Object.entries(value)) if (typeof v !== "string") problems.push(`properties.${field}.${k}: expected a string`);
  }
  const inputs = (p.inputs ?? {}) as Record<string, Record<string, unknown> | null>;
  for (const [name, input] of Object.entries(inputs)) {
    if (!input) continue;
    const type = input.jobInputType;
    if (type === "literal") {
      if (typeof input.value !== "string") problems.push(`properties.inputs.${name}.value: required string`);
    } else if (typeof type === "string" && ASSET_INPUT_TYPES.includes(type)) {
      if (typeof input.uri !== "string" || input.uri === "") problems.push(`properties.inputs.${name}.uri: required`);
      if (typeof input.mode !== "string" || !INPUT_MODES.includes(input.mode)) problems.push(`properties.inputs.${name}.mode: expected one of ${INPUT_MODES.join(", ")}`);
    } else problems.push(`properties.inputs.${name}.jobInputType: unknown ${JSON.stringify(type)}`);
  }
  const outputs = (p.outputs ?? {}) as Record<string, Record<string, unknown> | null>;
  for (const [name, output] of Object.entries(outputs)) {
    if (!output) continue;
    if (typeof output.jobOutputType !== "string" || !OUTPUT_TYPES.includes(output.jobOutputType)) {
      problems.push(`properties.outputs.${name}.jobOutputType: unknown ${JSON.stringify(output.jobOutputType)}`);
      continue;
    }
    // flo always places outputs explicitly; the real service would default a missing uri, the fake insists.
    if (typeof output.uri !== "string" || output.uri === "") problems.push(`properties.outputs.${name}.uri: required`);
    if (typeof output.mode !== "string" || !OUTPUT_MODES.includes(output.mode)) problems.push(`properties.outputs.${name}.mode: expected one of ${OUTPUT_MODES.join(", ")}`);
  }
  const limits = p.limits as Record<string, unknown> | undefined;
  if (limits !== undefined) {
    if (limits.jobLimitsType !== "Command") problems.push(`properties.limits.jobLimitsType: expected "Command"`);
    if (limits.timeout !== undefined && (typeof limits.timeout !== "string" || !/^P(?:\d+D)?(?:T(?:\d+H)?(?:\d+M)?(?:\d+(?:\.\d+)?S)?)?$/.test(limits.timeout) || limits.timeout === "PT")) {
      problems.push(`properties.limits.timeout: expected an ISO 8601 duration, got ${JSON.stringify(limits.timeout)}`);
    }
  }
  const identity = p.identity as Record<string, unknown> | undefined;
  if (identity !== undefined && !["AMLToken", "Managed", "UserIdentity"].includes(identity.identityType as string)) {
    problems.push(`properties.identity.identityType: unknown ${JSON.stringify(identity.identityType)}`);
  }
  return problems;
}

/** A TokenCredential for the fake ARM: any bearer token is accepted; calls are counted. */
export class StubArmCredential implements TokenCredential {
  calls = 0;
  async getToken(): Promise<AccessToken> {
    this.calls += 1;
    return { token: "fake-arm-token", expiresOnTimestamp: Date.now() + 3600_000 };
  }
}

export class FakeArm {
  readonly requests: RecordedRequest[] = [];
  readonly jobs = new Map<string, FakeJob>();
  private readonly datastores = new Map<string, FakeDatastore>();
  /** `<workspace>/<kind>/<name>` -> version -> version properties. */
  private readonly assets = new Map<string, Map<string, Record<string, unknown>>>();
  private readonly computes = new Map<string, FakeCompute>();
  private readonly faults: (FaultInjection & { remaining: number; skipped: number })[] = [];
  /** `<workspace>/<model name>` -> the model container and its versions (version -> properties). */
  private readonly models = new Map<string, { properties: Record<string, unknown>; versions: Map<string, Record<string, unknown>> }>();
  private readonly cancelOperations = new Map<string, { jobKey: string; polls: number }>();
  private readonly started = performance.now();
  /** Errors thrown by `publishEvent` or `autoRun` (a test should assert this stays empty). */
  readonly publishErrors: unknown[] = [];
  /** Every event handed to `publishEvent`, in order. */
  readonly publishedEvents: AzureMlEventGridEvent[] = [];
  private readonly pending = new Set<Promise<void>>();

  private constructor(
    private readonly server: Server,
    readonly url: string,
    readonly certificate: TestCertificate,
    private readonly ownsCertificate: boolean,
    private readonly options: FakeArmOptions,
  ) {}

  /** Starts the fake on 127.0.0.1 (a free port) with a fresh self-signed certificate unless one is given. */
  static async start(options: FakeArmOptions = {}): Promise<FakeArm> {
    const certificate = options.certificate ?? generateTestCertificate();
    let fake: FakeArm | undefined;
    const server = createServer({ key: certificate.key, cert: certificate.cert }, (req, res) => {
      void fake!.handle(req, res).catch((error) => {
        res.statusCode = 500;
        res.end(JSON.stringify({ error: { code: "FakeArmBug", message: String(error?.stack ?? error) } }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as AddressInfo;
    fake = new FakeArm(server, `https://127.0.0.1:${port}`, certificate, options.certificate === undefined, options);
    return fake;
  }

  /** The CA to trust in clients: `tlsOptions: {ca: fake.ca}`. */
  get ca(): string {
    return this.certificate.cert;
  }

  /** Waits for auto-run jobs and event publishing in flight. */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  async close(): Promise<void> {
    await this.settle();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.ownsCertificate) this.certificate.dispose();
  }

  addDatastore(workspace: string, name: string, datastore: FakeDatastore): void {
    this.datastores.set(`${workspace.toLowerCase()}/${name.toLowerCase()}`, datastore);
  }

  /** Registers an asset version (environment, code or data) in a workspace; versions are immutable. */
  addAssetVersion(workspace: string, kind: FakeAssetKind, name: string, version: string, properties: Record<string, unknown> = {}): void {
    const key = `${workspace.toLowerCase()}/${kind}/${name}`;
    const versions = this.assets.get(key) ?? new Map<string, Record<string, unknown>>();
    versions.set(version, properties);
    this.assets.set(key, versions);
  }

  /** Versions of an asset in registration order (the last one is `latestVersion`). */
  assetVersions(workspace: string, kind: FakeAssetKind, name: string): string[] {
    return [...(this.assets.get(`${workspace.toLowerCase()}/${kind}/${name}`)?.keys() ?? [])];
  }

  addCompute(workspace: string, name: string, compute: FakeCompute = {}): void {
    this.computes.set(`${workspace.toLowerCase()}/${name.toLowerCase()}`, { computeType: "AmlCompute", provisioningState: "Succeeded", minNodeCount: 0, maxNodeCount: 4, ...compute });
  }

  /**
   * Why Azure ML would refuse an asset id of a job body, or undefined when it names a registered
   * version: the REST API takes a version's ARM id (or a registry URI, not modelled here), never a
   * label or the CLI's `azureml:name:version` shorthand, which the CLI/SDK resolve client-side.
   */
  private assetIdProblem(field: string, kind: FakeAssetKind, id: unknown): string | undefined {
    if (typeof id !== "string") return undefined;
    if (id.startsWith("azureml://registries/")) return undefined;
    const match = new RegExp(`^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.MachineLearningServices/workspaces/([^/]+)/${kind}/([^/@]+)/versions/([^/@]+)$`, "i").exec(id);
    if (!match) return `properties.${field}: ${JSON.stringify(id)} is not a valid ARM id of a ${kind} version (labels and azureml: shorthands are resolved by clients)`;
    const [, workspace, name, version] = match;
    if (!this.assets.get(`${workspace.toLowerCase()}/${kind}/${name}`)?.has(version)) {
      return `properties.${field}: Could not find asset with ID: ${id}`;
    }
    return undefined;
  }

  injectFault(fault: FaultInjection): void {
    this.faults.push({ ...fault, remaining: fault.times ?? 1, skipped: 0 });
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  /** Requests matching a method and a path fragment, in arrival order. */
  requestsTo(method: string, pathIncludes: string): RecordedRequest[] {
    return this.requests.filter((r) => r.method === method && r.path.includes(pathIncludes));
  }

  job(workspace: string, name: string): FakeJob {
    const job = this.jobs.get(jobKey(workspace, name));
    if (!job) throw new Error(`fake ARM: no job ${name} in workspace ${workspace}`);
    return job;
  }

  setJobStatus(workspace: string, name: string, status: string): void {
    this.transition(this.job(workspace, name), status);
  }

  /** Sets a job's status and publishes the RunStatusChanged event Azure ML would raise. */
  private transition(job: FakeJob, status: string): void {
    if (job.properties.status === status) return;
    job.properties.status = status;
    const publish = this.options.publishEvent;
    if (!publish) return;
    const event = runStatusChangedEvent({
      workspaceId: job.workspaceId,
      jobName: job.name,
      experimentName: typeof job.properties.experimentName === "string" ? job.properties.experimentName : "Default",
      tags: (job.properties.tags ?? {}) as Record<string, string>,
      properties: (job.properties.properties ?? {}) as Record<string, string>,
      status: status as never,
    });
    this.publishedEvents.push(event);
    this.track(Promise.resolve().then(() => publish(event)));
  }

  private track(work: Promise<unknown>): void {
    const tracked: Promise<void> = work.then(
      () => undefined,
      (error) => {
        this.publishErrors.push(error);
      },
    );
    this.pending.add(tracked);
    void tracked.finally(() => this.pending.delete(tracked));
  }

  private async autoRun(job: FakeJob): Promise<void> {
    const { train, stepDelayMs = 5 } = this.options.autoRun!;
    const pause = () => new Promise((resolve) => setTimeout(resolve, stepDelayMs));
    for (const status of ["Queued", "Running"]) {
      await pause();
      if (job.properties.status === "CancelRequested" || job.properties.status === "Canceled") return;
      this.transition(job, status);
    }
    const result = await train(job);
    if (job.properties.status === "CancelRequested" || job.properties.status === "Canceled") return;
    if ("fail" in result) {
      job.properties.error = { code: "UserError", message: result.fail };
      this.transition(job, "Failed");
      return;
    }
    await this.writeOutputs(job, result);
    this.transition(job, "Completed");
  }

  /** Moves a job one step along NotStarted -> Queued -> Running; returns the new status. */
  advanceJob(workspace: string, name: string): string {
    const job = this.job(workspace, name);
    const index = STATUS_WALK.indexOf(job.properties.status as (typeof STATUS_WALK)[number]);
    const next = STATUS_WALK[Math.min(index + 1, STATUS_WALK.length - 1)];
    this.transition(job, next);
    return next;
  }

  /**
   * Completes a job the way a contract-following trainer would: writes `model.safetensors` and
   * `metrics.json` to the `model_update` output's datastore folder, then sets status Completed.
   */
  async completeJob(workspace: string, name: string, outputs: { model: Uint8Array; metrics: unknown }): Promise<string> {
    const job = this.job(workspace, name);
    const uri = await this.writeOutputs(job, outputs);
    this.transition(job, "Completed");
    return uri;
  }

  private async writeOutputs(job: FakeJob, outputs: { model: Uint8Array; metrics: unknown } | { files: Record<string, Uint8Array> }): Promise<string> {
    const workspace = job.workspaceKey;
    const name = job.name;
    const kind = (job.properties.tags as Record<string, string> | undefined)?.floKind;
    const outputName = isJobKind(kind) ? jobKindContract(kind).output : "model_update";
    const output = (job.properties.outputs as Record<string, { uri?: string }> | undefined)?.[outputName];
    if (!output?.uri) throw new Error(`fake ARM: job ${name} has no ${outputName} output uri`);
    const match = /^azureml:\/\/datastores\/([^/]+)\/paths\/(.*)$/.exec(output.uri);
    if (!match) throw new Error(`fake ARM: unsupported output uri ${output.uri}`);
    const datastore = this.datastores.get(`${workspace.toLowerCase()}/${match[1].toLowerCase()}`);
    if (!datastore) throw new Error(`fake ARM: no datastore ${match[1]} in workspace ${workspace}`);
    const blob = this.options.blob;
    if (!blob) throw new Error("fake ARM: started without a blob target; cannot write outputs");
    const service = new BlobServiceClient(blob.serviceUrlFor(datastore.accountName), blob.credential, blob.pipelineOptions);
    const container = service.getContainerClient(datastore.containerName ?? datastore.filesystem!);
    await container.createIfNotExists();
    const prefix = match[2].endsWith("/") ? match[2] : `${match[2]}/`;
    const files = "files" in outputs ? outputs.files : { "model.safetensors": outputs.model, "metrics.json": Buffer.from(JSON.stringify(outputs.metrics)) };
    for (const [file, bytes] of Object.entries(files)) await container.getBlockBlobClient(`${prefix}${file}`).uploadData(Buffer.from(bytes));
    return output.uri;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const rawBody = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url ?? "/", this.url);
    const record: RecordedRequest = {
      method: req.method ?? "GET",
      path: url.pathname,
      query: Object.fromEntries(url.searchParams.entries()),
      headers: { ...req.headers },
      rawBody,
      at: performance.now() - this.started,
    };
    if (rawBody) {
      try {
        record.body = JSON.parse(rawBody);
      } catch {
        record.body = undefined;
      }
    }
    this.requests.push(record);
    let lostAnswer: { status: number; body: unknown } | undefined;
    const send = (status: number, body?: unknown, headers: Record<string, string> = {}) => {
      if (lostAnswer) ({ status, body } = lostAnswer);
      record.status = status;
      res.writeHead(status, { "content-type": "application/json", "x-ms-request-id": randomUUID(), ...headers });
      res.end(body === undefined ? "" : JSON.stringify(body));
    };
    const error = (status: number, code: string, message: string, headers: Record<string, string> = {}) => send(status, { error: { code, message } }, headers);

    if (!/^Bearer \S+/.test(String(req.headers.authorization ?? ""))) {
      return error(401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing.");
    }
    const matching = this.faults.find((f) => f.remaining > 0 && (!f.method || f.method === record.method) && (!f.pathIncludes || record.path.includes(f.pathIncludes)));
    const fault = matching && matching.skipped < (matching.skip ?? 0) ? ((matching.skipped += 1), undefined) : matching;
    if (fault) {
      fault.remaining -= 1;
      const headers: Record<string, string> = fault.retryAfterSeconds !== undefined ? { "retry-after": String(fault.retryAfterSeconds) } : {};
      const code = fault.code ?? (fault.status === 429 ? "TooManyRequests" : fault.status === 403 ? "AuthorizationFailed" : "InternalServerError");
      const message =
        fault.message ??
        (fault.status === 403
          ? "The client 'f10f' with object id 'f10f' does not have authorization to perform action 'Microsoft.MachineLearningServices/workspaces/jobs/write' over scope '...' or the scope is invalid."
          : `Injected ${fault.status}`);
      if (!fault.afterHandling) return error(fault.status, code, message, headers);
      lostAnswer = { status: fault.status, body: { error: { code, message } } };
    }

    const operation = /^\/fakeOperations\/cancel\/([^/]+)$/.exec(record.path);
    if (operation) return this.pollCancel(operation[1], send, error);

    const route = WORKSPACE_ROUTE.exec(record.path);
    if (!route) return error(404, "NoRoute", `fake ARM has no route for ${record.method} ${record.path}`);
    if (!record.query["api-version"]) return error(400, "MissingApiVersionParameter", "The api-version query parameter is required.");
    const [, subscriptionId, resourceGroup, workspace, rest = ""] = route;
    const workspaceKey = workspace.toLowerCase();
    const workspaceId = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${workspace}`;

    if (rest === "/jobs" && record.method === "GET") {
      const value = [...this.jobs.values()].filter((j) => j.workspaceKey === workspaceKey).map((j) => this.jobResource(j, workspaceId));
      return send(200, { value });
    }
    const jobRoute = /^\/jobs\/([^/]+)(\/cancel)?$/.exec(rest);
    if (jobRoute) {
      const name = decodeURIComponent(jobRoute[1]);
      if (!/^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$/.test(name)) return error(400, "UserError", `Invalid job name ${name}`);
      const key = jobKey(workspace, name);
      const job = this.jobs.get(key);
      if (jobRoute[2] === "/cancel") {
        if (record.method !== "POST") return error(405, "MethodNotAllowed", "cancel is POST");
        if (!job) return error(404, "UserError", `Job ${name} not found.`);
        this.transition(job, "CancelRequested");
        const operationId = randomUUID();
        this.cancelOperations.set(operationId, { jobKey: key, polls: 0 });
        return send(202, undefined, {
          location: `${this.url}/fakeOperations/cancel/${operationId}?api-version=${record.query["api-version"]}`,
          "retry-after": "0",
        });
      }
      if (record.method === "GET") {
        if (!job) return error(404, "UserError", `Could not find job with id ${name}.`);
        return send(200, this.jobResource(job, workspaceId));
      }
      if (record.method === "PUT") {
        // What Azure ML answers (a 400, not a 409) when a job name is taken and the body differs.
        if (job) {
          return error(
            400,
            "UserError",
            "A job with this name already exists. If you are trying to create a new job, use a different name. If you are trying to update an existing job, the existing job's Settings, Inputs, Outputs, Jobs, InputBindings, OutputBindings cannot be changed. Only description, tags, displayName, properties, and isArchived can be updated.",
          );
        }
        const problems = [...validateJobPutBody(record.body), ...(await jobBodyModelProblems(record.body))];
        const jobProperties = (record.body as { properties?: Record<string, unknown> } | undefined)?.properties ?? {};
        for (const problem of [
          this.assetIdProblem("environmentId", "environments", jobProperties.environmentId),
          this.assetIdProblem("codeId", "codes", jobProperties.codeId),
          ...Object.entries((jobProperties.inputs ?? {}) as Record<string, { uri?: unknown } | null>).map(([name, input]) =>
            typeof input?.uri === "string" && input.uri.startsWith("azureml:/subscriptions/") ? this.assetIdProblem(`inputs.${name}.uri`, "data", input.uri.slice("azureml:".length)) : undefined,
          ),
        ]) {
          if (problem) problems.push(problem);
        }
        if (problems.length > 0) {
          return send(400, {
            error: { code: "UserError", message: "Request is invalid and/or missing fields.", details: problems.map((message) => ({ code: "InvalidField", message })) },
          });
        }
        const properties: Record<string, unknown> = { ...(record.body as { properties: Record<string, unknown> }).properties, status: "NotStarted" };
        properties.services = { Studio: { endpoint: `https://ml.azure.com/runs/${name}?wsid=${workspaceId}`, jobServiceType: "Studio" } };
        const created: FakeJob = { workspaceKey, workspaceId, name, properties, createdAt: new Date().toISOString() };
        this.jobs.set(key, created);
        if (this.options.autoRun) this.track(this.autoRun(created));
        return send(201, this.jobResource(created, workspaceId));
      }
      return error(405, "MethodNotAllowed", `${record.method} not supported on jobs`);
    }
    if (rest === "" && record.method === "GET") {
      return send(200, { id: workspaceId, name: workspace, type: "Microsoft.MachineLearningServices/workspaces", properties: { provisioningState: "Succeeded" } });
    }
    const computeRoute = /^\/computes\/([^/]+)$/.exec(rest);
    if (computeRoute && record.method === "GET") {
      const name = decodeURIComponent(computeRoute[1]);
      const compute = this.computes.get(`${workspaceKey}/${name.toLowerCase()}`);
      if (!compute)
        return error(404, "ResourceNotFound", `The Resource 'Microsoft.MachineLearningServices/workspaces/${workspace}/computes/${name}' under resource group '${resourceGroup}' was not found.`);
      return send(200, {
        id: `${workspaceId}/computes/${name}`,
        name,
        type: "Microsoft.MachineLearningServices/workspaces/computes",
        properties: {
          computeType: compute.computeType,
          provisioningState: compute.provisioningState,
          properties: { scaleSettings: { minNodeCount: compute.minNodeCount, maxNodeCount: compute.maxNodeCount } },
        },
      });
    }
    const assetRoute = /^\/(codes|environments|data)\/([^/]+)(?:\/versions\/([^/]+))?$/.exec(rest);
    if (assetRoute) {
      const kind = assetRoute[1] as FakeAssetKind;
      const name = decodeURIComponent(assetRoute[2]);
      const version = assetRoute[3] === undefined ? undefined : decodeURIComponent(assetRoute[3]);
      const key = `${workspaceKey}/${kind}/${name}`;
      const versions = this.assets.get(key);
      const resourceType = `Microsoft.MachineLearningServices/workspaces/${kind}`;
      if (version === undefined && record.method === "GET") {
        if (!versions) return error(404, "UserError", `Could not find ${kind} container ${name} in workspace ${workspace}.`);
        const all = [...versions.keys()];
        return send(200, { id: `${workspaceId}/${kind}/${name}`, name, type: resourceType, properties: { latestVersion: all[all.length - 1], nextVersion: String(all.length + 1) } });
      }
      if (version !== undefined && record.method === "GET") {
        const properties = versions?.get(version);
        if (!properties) return error(404, "UserError", `Could not find asset with ID: ${workspaceId}/${kind}/${name}/versions/${version}`);
        return send(200, { id: `${workspaceId}/${kind}/${name}/versions/${version}`, name: version, type: `${resourceType}/versions`, properties });
      }
      if (version !== undefined && record.method === "PUT" && kind === "codes") {
        const properties = (record.body as { properties?: Record<string, unknown> } | undefined)?.properties;
        const modelProblems = await codeVersionBodyModelProblems(record.body);
        if (modelProblems.length > 0) return error(400, "UserError", modelProblems.join("; "));
        if (typeof properties?.codeUri !== "string") return error(400, "UserError", "properties.codeUri: required string");
        const existing = versions?.get(version);
        // Asset versions are immutable: the same content is accepted again, a different one refused.
        if (existing && existing.codeUri !== properties.codeUri) return error(409, "UserError", `Code ${name}:${version} already exists with a different codeUri.`);
        if (!existing) this.addAssetVersion(workspace, "codes", name, version, properties);
        return send(existing ? 200 : 201, { id: `${workspaceId}/codes/${name}/versions/${version}`, name: version, type: `${resourceType}/versions`, properties });
      }
      return error(405, "MethodNotAllowed", `${record.method} not supported on ${kind}`);
    }
    const modelRoute = /^\/models\/([^/]+)(\/versions)?(?:\/([^/]+))?$/.exec(rest);
    if (modelRoute)
      return this.handleModel(
        { record, workspaceKey, workspaceId, name: decodeURIComponent(modelRoute[1]), versions: Boolean(modelRoute[2]), version: modelRoute[3] && decodeURIComponent(modelRoute[3]) },
        send,
        error,
      );
    const datastoreRoute = /^\/datastores\/([^/]+)$/.exec(rest);
    if (datastoreRoute && record.method === "GET") {
      const name = decodeURIComponent(datastoreRoute[1]);
      const datastore = this.datastores.get(`${workspaceKey}/${name.toLowerCase()}`);
      if (!datastore) return error(404, "UserError", `Datastore ${name} not found.`);
      return send(200, {
        id: `${workspaceId}/datastores/${name}`,
        name,
        type: "Microsoft.MachineLearningServices/workspaces/datastores",
        properties: { ...datastore, credentials: { credentialsType: "None" }, isDefault: false, tags: {} },
      });
    }
    return error(404, "NoRoute", `fake ARM has no route for ${record.method} ${record.path}`);
  }

  /** The model versions of a workspace's model, by version, with their properties (for assertions). */
  modelVersions(workspace: string, name: string): Map<string, Record<string, unknown>> {
    return new Map(this.models.get(`${workspace.toLowerCase()}/${name}`)?.versions ?? []);
  }

  /**
   * Model containers and versions as the REST API of api-version 2022-10-01 has them
   * (azure-rest-api-specs, specification/machinelearningservices/resource-manager/
   * Microsoft.MachineLearningServices/stable/2022-10-01/mfe.json, paths .../workspaces/{workspaceName}/models/{name},
   * .../models/{name}/versions and .../models/{name}/versions/{version}): a container PUT creates or
   * updates (latestVersion and nextVersion are the service's, read-only); a version PUT needs its
   * container and `properties.modelUri`; a version's modelUri and modelType never change (a PUT that
   * would change them is a 409 conflict), its description and tags may; the version list filters
   * by `tags` (comma-separated `name` or `name=value`) and answers `{value, nextLink?}`.
   */
  private handleModel(
    args: { record: RecordedRequest; workspaceKey: string; workspaceId: string; name: string; versions: boolean; version?: string },
    send: (status: number, body?: unknown) => void,
    error: (status: number, code: string, message: string) => void,
  ): void {
    const { record, workspaceKey, workspaceId, name, version } = args;
    const key = `${workspaceKey}/${name}`;
    const model = this.models.get(key);
    const containerId = `${workspaceId}/models/${name}`;
    const integerVersions = () => [...(model?.versions.keys() ?? [])].filter((v) => /^\d+$/.test(v)).map(Number);
    const containerBody = () => {
      const numbers = integerVersions();
      const latest = numbers.length ? String(Math.max(...numbers)) : undefined;
      return {
        id: containerId,
        name,
        type: "Microsoft.MachineLearningServices/workspaces/models",
        properties: { ...model!.properties, isArchived: false, ...(latest ? { latestVersion: latest } : {}), nextVersion: String((numbers.length ? Math.max(...numbers) : 0) + 1) },
      };
    };
    const versionBody = (v: string, properties: Record<string, unknown>) => ({
      id: `${containerId}/versions/${v}`,
      name: v,
      type: "Microsoft.MachineLearningServices/workspaces/models/versions",
      properties,
    });
    const body = (record.body as { properties?: Record<string, unknown> } | undefined)?.properties;

    if (!args.versions) {
      if (record.method === "GET") return model ? send(200, containerBody()) : error(404, "UserError", `Could not find model container ${name} in workspace ${workspaceId}.`);
      if (record.method === "PUT") {
        if (!body) return error(400, "UserError", "properties: required");
        const created = !model;
        this.models.set(key, { properties: { description: body.description, tags: body.tags ?? {} }, versions: model?.versions ?? new Map() });
        return send(created ? 201 : 200, containerBody.call(this));
      }
      return error(405, "MethodNotAllowed", `${record.method} not supported on models`);
    }
    if (version === undefined) {
      if (record.method !== "GET") return error(405, "MethodNotAllowed", `${record.method} not supported on model versions`);
      if (!model) return error(404, "UserError", `Could not find model container ${name} in workspace ${workspaceId}.`);
      const filters = (record.query.tags ?? "")
        .split(",")
        .filter(Boolean)
        .map((f) => f.split("="));
      const value = [...model.versions]
        .filter(([, p]) => filters.every(([tag, wanted]) => tag in ((p.tags as Record<string, string>) ?? {}) && (wanted === undefined || (p.tags as Record<string, string>)[tag] === wanted)))
        .map(([v, p]) => versionBody(v, p));
      return send(200, { value });
    }
    if (record.method === "GET") {
      const properties = model?.versions.get(version);
      return properties ? send(200, versionBody(version, properties)) : error(404, "UserError", `Could not find asset with ID: ${containerId}/versions/${version}`);
    }
    if (record.method !== "PUT") return error(405, "MethodNotAllowed", `${record.method} not supported on a model version`);
    if (!model) return error(404, "UserError", `Could not find model container ${name} in workspace ${workspaceId}.`);
    if (typeof body?.modelUri !== "string" || body.modelUri === "") return error(400, "UserError", "properties.modelUri: required non-empty string");
    const modelType = body.modelType ?? "custom_model";
    if (typeof modelType !== "string" || !["custom_model", "mlflow_model", "triton_model"].includes(modelType)) {
      return error(400, "UserError", `properties.modelType: unknown model type ${JSON.stringify(modelType)}`);
    }
    const existing = model.versions.get(version);
    if (existing && (existing.modelUri !== body.modelUri || existing.modelType !== modelType)) {
      return error(409, "UserError", `Model ${name}:${version} already exists with a different modelUri or modelType; versions are immutable.`);
    }
    const properties = { ...body, modelType, tags: body.tags ?? {}, properties: { ...((existing?.properties as object) ?? {}), ...((body.properties as object) ?? {}) } };
    model.versions.set(version, properties);
    return send(existing ? 200 : 201, versionBody(version, properties));
  }

  private pollCancel(operationId: string, send: (status: number, body?: unknown, headers?: Record<string, string>) => void, error: (status: number, code: string, message: string) => void): void {
    const operation = this.cancelOperations.get(operationId);
    if (!operation) return error(404, "NotFound", `no operation ${operationId}`);
    operation.polls += 1;
    if (operation.polls <= (this.options.cancelPollsBeforeDone ?? 1)) {
      return send(202, undefined, { "retry-after": "0" });
    }
    const job = this.jobs.get(operation.jobKey);
    if (job) this.transition(job, "Canceled");
    return send(200);
  }

  private jobResource(job: FakeJob, workspaceId: string): Record<string, unknown> {
    return {
      id: `${workspaceId}/jobs/${job.name}`,
      name: job.name,
      type: "Microsoft.MachineLearningServices/workspaces/jobs",
      properties: job.properties,
      systemData: { createdAt: job.createdAt, createdBy: "flo-test", createdByType: "Application" },
    };
  }
}

function jobKey(workspace: string, name: string): string {
  return `${workspace.toLowerCase()}/${name}`;
}
