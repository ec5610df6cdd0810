/**
 * The `azureml` SiloCompute: one Azure ML command job per silo and round, in the silo's workspace.
 *
 * The @azure/arm-machinelearning 2.1.1 client supplies auth, retry (408/429/5xx with backoff that
 * honours Retry-After), user agent and the cancel long-running operation. The job PUT is sent raw
 * through `client.sendRequest` because the SDK's serializer drops `uri`/`mode` of uri_folder inputs and
 * outputs (Azure/azure-sdk-for-js#29328).
 */
import { AzureMachineLearningWorkspaces, type JobBase } from "@azure/arm-machinelearning";
import type { TokenCredential } from "@azure/core-auth";
import {
  createHttpHeaders,
  createPipelineRequest,
  retryPolicy,
  type HttpClient,
  type PipelinePolicy,
  type PipelineRetryOptions,
  type RetryStrategy,
  type TlsSettings,
} from "@azure/core-rest-pipeline";
import {
  DEFAULT_JOB_KIND,
  FLO_TAGS,
  floJobTags,
  isJobKind,
  JOB_NAME_PATTERN,
  jobKindContract,
  type CallOptions,
  type JobKind,
  type JobInput,
  type OpenOutputOptions,
  type SiloCompute,
  type SiloJobRequest,
  type SiloJobStatus,
} from "../siloCompute";
import type { ByteSource } from "../../models/bytes";
import { MODEL_FILE } from "../../models/storeLayout";
import { jobStateFromAzureMlStatus } from "./status";
import { AzureMlConfigError, AzureMlJobConflictError, AzureMlJobNotFoundError, AzureMlRequestError, DATA_SCIENTIST_ROLE, toAzureMlError, type WorkspaceCoordinates } from "./errors";
import { parseAssetReference, resolveAssetId, type AssetKind } from "./assets";
import { CODE_ASSET_NAME, registerUploadedCode, uploadedCodeDigest } from "./code";
import { openSiloOutputFile, openSiloOutputFolder, probeExchangeRead, type BlobAccessOptions, type BlobFolderLocation, type SiloOutputFolder } from "./outputs";

export * from "./errors";
export * from "./assets";

/** Federation ids and silo names become datastore path segments. */
const PATH_SEGMENT = /^[a-zA-Z0-9][a-zA-Z0-9._-]{0,254}$/;
const DEFAULT_ENDPOINT = "https://management.azure.com";
export const DEFAULT_AZURE_ML_API_VERSION = "2022-10-01";

export type AzureMlJobIdentity = { identityType: "AMLToken" } | { identityType: "Managed"; clientId?: string; objectId?: string; resourceId?: string } | { identityType: "UserIdentity" };

export interface AzureMlSiloComputeOptions {
  subscriptionId: string;
  resourceGroup: string;
  /** The silo's Azure ML workspace. */
  workspace: string;
  /** Compute cluster name in the workspace, or a full ARM compute id. */
  computeName: string;
  /** The orchestrator's identity (see lib/azure/credentials.ts). */
  credential: TokenCredential;
  /** Datastore in the silo's workspace where jobs write `model_update` (the silo's exchange container). */
  exchangeDatastore: string;
  /** ARM endpoint; default https://management.azure.com (a loopback fake in tests). */
  endpoint?: string;
  /** TLS settings of the ARM client, e.g. `{ca}` to trust a test certificate. */
  tlsOptions?: TlsSettings;
  /** ARM api-version for every call; default 2022-10-01 (the SDK's models). */
  apiVersion?: string;
  /** Pipeline retry for 408/429/5xx; Retry-After is honoured. Default: the SDK's (3 retries, 1 s base, 64 s cap). */
  retryOptions?: PipelineRetryOptions;
  /** Replace the HTTP transport (tests). */
  httpClient?: HttpClient;
  /** Experiment of a federation's jobs: a fixed name, or one per federation; default `flo-<federationId>`. */
  experimentName?: string | ((federationId: string) => string);
  /** Code asset id (`…/codes/<name>/versions/<v>` or `azureml:<name>:<v>`); default: the request's `code`. */
  codeId?: string;
  /** Environment id; default: the request's `environment`. One of the two is required. */
  environmentId?: string;
  /** Identity the job runs as (data access to the global model and the exchange datastore). Default: the compute's managed identity. */
  identity?: AzureMlJobIdentity;
  instanceCount?: number;
  instanceType?: string;
  environmentVariables?: Record<string, string>;
  /** Poll interval of the cancel long-running operation; default 2000 ms. */
  cancelPollIntervalMs?: number;
  /** How outputs are read from blob storage (credential, endpoint overrides). */
  blob?: BlobAccessOptions;
}

/**
 * The datastore URI of a silo's output folder for one round and job kind (in the silo's own
 * exchange datastore): `<silo>/` for training, `<silo>_<kind>/` for other kinds, as in job names.
 */
export function exchangeOutputUri(exchangeDatastore: string, federationId: string, round: number, silo: string, kind: JobKind = DEFAULT_JOB_KIND): string {
  const folder = kind === DEFAULT_JOB_KIND ? silo : `${silo}_${String(kind)}`;
  return `azureml://datastores/${exchangeDatastore}/paths/flo/${federationId}/r${round}/${folder}/`;
}

/** ISO 8601 duration (`PT2H30M`) of a positive whole number of seconds, as Azure ML's `limits.timeout` wants. */
export function isoDurationFromSeconds(seconds: number): string {
  if (!Number.isInteger(seconds) || seconds <= 0) {
    throw new AzureMlConfigError("timeoutSeconds", "a positive whole number of seconds", String(seconds));
  }
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  const rest = seconds % 60;
  return `PT${hours ? `${hours}H` : ""}${minutes ? `${minutes}M` : ""}${rest ? `${rest}S` : ""}`;
}

export function assertValidJobName(jobName: string): void {
  // Azure ML's rule is not enforced by the SDK: a bad name would be sent URL-encoded.
  if (typeof jobName !== "string" || !JOB_NAME_PATTERN.test(jobName)) {
    throw new AzureMlConfigError("jobName", "an Azure ML job name matching ^[a-zA-Z0-9][a-zA-Z0-9\\-_]{0,254}$", JSON.stringify(jobName));
  }
}

const ASSET_URI = /^(azureml|https|wasbs|abfss):\/\//i;
/** Plain http only for a loopback store (the embedded runtime's Azurite against a fake ARM); Azure ML itself mounts https only. */
const LOOPBACK_HTTP_URI = /^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\//i;

/** The spec's input modes as REST `InputDeliveryMode` values. */
export const INPUT_MODE_TO_REST = { ro_mount: "ReadOnlyMount", download: "Download", direct: "Direct" } as const;

function jobInputToRest(name: string, input: JobInput): Record<string, unknown> {
  if (input.kind === "literal") {
    if (typeof input.value !== "string") {
      throw new AzureMlConfigError(`inputs.${name}.value`, "a string (Azure ML literal inputs are strings)", typeof input.value);
    }
    return { jobInputType: "literal", value: input.value };
  }
  if (input.kind === "folder") {
    if (typeof input.uri !== "string" || !(ASSET_URI.test(input.uri) || LOOPBACK_HTTP_URI.test(input.uri))) {
      throw new AzureMlConfigError(`inputs.${name}.uri`, "an azureml://, https://, wasbs:// or abfss:// folder URI the Azure ML job can mount", JSON.stringify(input.uri));
    }
    return { jobInputType: "uri_folder", mode: "ReadOnlyMount", uri: input.uri };
  }
  if (input.kind === "asset") {
    // By now `path` is a storage URI or a data version's `azureml:/subscriptions/...` id (resolvedJobBody).
    if (typeof input.path !== "string" || !(ASSET_URI.test(input.path) || input.path.startsWith("azureml:/subscriptions/"))) {
      throw new AzureMlConfigError(`inputs.${name}.path`, "an azureml://, https:// URI or a resolved data asset id", JSON.stringify(input.path));
    }
    const mode = INPUT_MODE_TO_REST[input.mode];
    if (!mode) throw new AzureMlConfigError(`inputs.${name}.mode`, Object.keys(INPUT_MODE_TO_REST).join(", "), JSON.stringify(input.mode));
    return { jobInputType: input.type, mode, uri: input.path };
  }
  throw new AzureMlConfigError(`inputs.${name}.kind`, '"literal", "folder" or "asset"', JSON.stringify((input as { kind?: unknown }).kind));
}

export interface CommandJobContext {
  computeId: string;
  experimentName: string;
  environmentId: string;
  codeId?: string;
  identity: AzureMlJobIdentity;
  outputUri: string;
  instanceCount?: number;
  instanceType?: string;
  environmentVariables?: Record<string, string>;
}

/** The variable `python -m flo_secagg mask-run` sets to the private folder the user's command writes its plain output to. */
export const PLAIN_OUTPUT_VARIABLE = "FLO_SECAGG_PLAIN_OUTPUT";

/** One shell word: single-quoted, with embedded single quotes closed, escaped and reopened. */
function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * A secure training job's command on Azure ML: the Python package shipped in the code folder runs
 * the user's command unchanged except that its `${{outputs.model_update}}` becomes a private
 * temporary folder, then masks that folder's model and metrics into the real output; the plain
 * files never reach the output (the silo's exchange datastore).
 */
export function maskedTrainingCommand(request: Pick<SiloJobRequest, "command" | "kind" | "secureAggregation">): string {
  const masking = request.secureAggregation!;
  const output = `\${{outputs.${jobKindContract(request.kind).output}}}`;
  if (!request.command.includes(output)) {
    throw new AzureMlConfigError("command", `a command that writes its output to ${output} (secure aggregation masks that folder)`, JSON.stringify(request.command));
  }
  const userCommand = request.command.split(output).join(`"$${PLAIN_OUTPUT_VARIABLE}"`);
  return [
    "python -m flo_secagg mask-run",
    `--session \${{inputs.${masking.sessionInput}}}/${masking.sessionFile}`,
    `--key \${{inputs.${masking.keyInput}}}`,
    `--global \${{inputs.global_model}}/${MODEL_FILE}`,
    `--output ${output}`,
    ...(masking.publishMetrics ? ["--publish-metrics"] : []),
    "--",
    shellQuote(userCommand),
  ].join(" ");
}

function extraOutputsToRest(outputs: Record<string, string> = {}): Record<string, unknown> {
  const rest: Record<string, unknown> = {};
  for (const [name, uri] of Object.entries(outputs)) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) throw new AzureMlConfigError(`extraOutputs.${name}`, "an output name of letters, digits and '_'", JSON.stringify(name));
    if (typeof uri !== "string" || !uri.startsWith("azureml://datastores/")) {
      throw new AzureMlConfigError(`extraOutputs.${name}`, "an azureml://datastores/<name>/paths/<folder>/ URI", JSON.stringify(uri));
    }
    rest[name] = { jobOutputType: "uri_folder", mode: "ReadWriteMount", uri };
  }
  return rest;
}

/**
 * The REST body (`{properties: CommandJob}`) of a silo job. Pure: validates the request and returns
 * the JSON exactly as it goes on the wire.
 */
export function buildCommandJobBody(request: SiloJobRequest, context: CommandJobContext): { properties: Record<string, unknown> } {
  assertValidJobName(request.jobName);
  if (!PATH_SEGMENT.test(request.federationId)) {
    throw new AzureMlConfigError("federationId", "letters, digits, '.', '_' or '-' (it becomes a datastore path segment)", JSON.stringify(request.federationId));
  }
  if (!PATH_SEGMENT.test(request.silo)) {
    throw new AzureMlConfigError("silo", "letters, digits, '.', '_' or '-' (it becomes a datastore path segment)", JSON.stringify(request.silo));
  }
  if (!Number.isInteger(request.round) || request.round < 0) {
    throw new AzureMlConfigError("round", "a non-negative integer", String(request.round));
  }
  if (typeof request.command !== "string" || request.command.trim() === "") {
    throw new AzureMlConfigError("command", "a non-empty command line", JSON.stringify(request.command));
  }
  const tags: Record<string, string> = {};
  for (const [key, value] of Object.entries(request.tags ?? {})) {
    if (key.includes(".")) {
      throw new AzureMlConfigError(`tags.${key}`, "a tag key without dots (Event Grid filters use dots as path separators)", JSON.stringify(key));
    }
    if (typeof value !== "string") throw new AzureMlConfigError(`tags.${key}`, "a string value", typeof value);
    tags[key] = value;
  }
  // flo's correlation tags always win over caller-supplied ones of the same name.
  Object.assign(tags, floJobTags(request));

  const inputs: Record<string, unknown> = {};
  for (const [name, input] of Object.entries(request.inputs)) {
    if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(name)) {
      throw new AzureMlConfigError(`inputs.${name}`, "an input name of letters, digits and '_' (not starting with a digit)", JSON.stringify(name));
    }
    inputs[name] = jobInputToRest(name, input);
  }
  if (!context.outputUri.startsWith("azureml://")) {
    throw new AzureMlConfigError("outputUri", "an azureml:// datastore URI", JSON.stringify(context.outputUri));
  }

  const properties: Record<string, unknown> = {
    jobType: "Command",
    displayName: request.jobName,
    experimentName: context.experimentName,
    description: `flo federation ${request.federationId}, round ${request.round}, silo ${request.silo}`,
    tags,
    properties: { floFederation: request.federationId, floRound: String(request.round), floSilo: request.silo },
    computeId: context.computeId,
    environmentId: context.environmentId,
    command: request.secureAggregation ? maskedTrainingCommand(request) : request.command,
    inputs,
    outputs: {
      [jobKindContract(request.kind).output]: { jobOutputType: "uri_folder", mode: "ReadWriteMount", uri: context.outputUri },
      ...extraOutputsToRest(request.extraOutputs),
    },
    limits: { jobLimitsType: "Command", timeout: isoDurationFromSeconds(request.timeoutSeconds) },
    identity: context.identity,
    resources: {
      instanceCount: context.instanceCount ?? 1,
      ...(context.instanceType ? { instanceType: context.instanceType } : {}),
    },
  };
  if (context.codeId) properties.codeId = context.codeId;
  if (context.environmentVariables && Object.keys(context.environmentVariables).length > 0) {
    properties.environmentVariables = { ...context.environmentVariables };
  }
  return { properties };
}

interface JobProperties {
  status?: string;
  tags?: Record<string, string | null>;
  outputs?: Record<string, { uri?: string } | null>;
  services?: Record<string, { endpoint?: string } | null>;
}

function jobProperties(job: JobBase | Record<string, unknown>): JobProperties {
  return (job as { properties?: unknown }).properties ?? {};
}

const DEFAULT_CANCEL_POLL_INTERVAL_MS = 2000;

function abortableDelay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortError(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function abortError(signal: AbortSignal): Error {
  const error = new Error(`The operation was aborted${signal.reason ? `: ${String(signal.reason)}` : ""}`);
  error.name = "AbortError";
  return error;
}

const RETRY_AFTER_HEADERS = ["retry-after", "retry-after-ms", "x-ms-retry-after-ms"];

/**
 * The SDK's default retry honours Retry-After on 429/503 and backs off exponentially on 408/5xx, but
 * a 429 that carries no Retry-After matches neither and is returned at once (observed against the
 * fake). This policy retries exactly that case with the same exponential backoff settings.
 */
export function throttlingWithoutRetryAfterPolicy(options: PipelineRetryOptions): PipelinePolicy {
  const baseDelay = options.retryDelayInMs ?? 1000;
  const maxDelay = options.maxRetryDelayInMs ?? 64_000;
  const strategy: RetryStrategy = {
    name: "throttlingWithoutRetryAfter",
    retry({ retryCount, response }) {
      if (response?.status !== 429 || RETRY_AFTER_HEADERS.some((header) => response.headers.has(header))) {
        return { skipStrategy: true };
      }
      const exponential = Math.min(maxDelay, baseDelay * 2 ** retryCount);
      return { retryAfterInMs: Math.round(exponential * (0.8 + Math.random() * 0.4)) };
    },
  };
  const inner = retryPolicy([strategy], { maxRetries: options.maxRetries ?? 3 });
  return { name: "floThrottlingWithoutRetryAfterPolicy", sendRequest: (request, next) => inner.sendRequest(request, next) };
}

export class AzureMlSiloCompute implements SiloCompute {
  readonly client: AzureMachineLearningWorkspaces;
  private readonly endpoint: string;
  private readonly apiVersion: string;
  private readonly coordinates: WorkspaceCoordinates;
  private readonly resolvedAssets = new Map<string, Promise<string>>();

  constructor(private readonly options: AzureMlSiloComputeOptions) {
    for (const key of ["subscriptionId", "resourceGroup", "workspace", "computeName", "exchangeDatastore"] as const) {
      const value = options[key];
      if (typeof value !== "string" || value.trim() === "") {
        throw new AzureMlConfigError(key, "a non-empty string", JSON.stringify(value));
      }
    }
    if (!options.credential || typeof options.credential.getToken !== "function") {
      throw new AzureMlConfigError("credential", "a TokenCredential", typeof options.credential);
    }
    this.endpoint = (options.endpoint ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
    this.apiVersion = options.apiVersion ?? DEFAULT_AZURE_ML_API_VERSION;
    this.coordinates = {
      subscriptionId: options.subscriptionId,
      resourceGroup: options.resourceGroup,
      workspace: options.workspace,
    };
    this.client = new AzureMachineLearningWorkspaces(options.credential, options.subscriptionId, {
      endpoint: this.endpoint,
      ...(options.apiVersion ? { apiVersion: options.apiVersion } : {}),
      ...(options.tlsOptions ? { tlsOptions: options.tlsOptions } : {}),
      ...(options.retryOptions ? { retryOptions: options.retryOptions } : {}),
      ...(options.httpClient ? { httpClient: options.httpClient } : {}),
      userAgentOptions: { userAgentPrefix: "flo" },
    });
    this.client.pipeline.addPolicy(throttlingWithoutRetryAfterPolicy(options.retryOptions ?? {}), { phase: "Retry" });
  }

  /** ARM id of the compute the jobs run on. */
  get computeId(): string {
    const { computeName } = this.options;
    if (computeName.startsWith("/")) return computeName;
    return `${this.workspaceId}/computes/${computeName}`;
  }

  get workspaceId(): string {
    const { subscriptionId, resourceGroup, workspace } = this.coordinates;
    return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${workspace}`;
  }

  /** Where this compute puts a request's output folder: the request's own azureml:// URI, else the exchange datastore. */
  outputUriFor(request: Pick<SiloJobRequest, "federationId" | "round" | "silo" | "kind" | "outputUri">): string {
    if (typeof request.outputUri === "string" && request.outputUri.startsWith("azureml://")) return request.outputUri;
    return exchangeOutputUri(this.options.exchangeDatastore, request.federationId, request.round, request.silo, request.kind);
  }

  experimentNameFor(federationId: string): string {
    const option = this.options.experimentName;
    if (typeof option === "string") return option;
    return option ? option(federationId) : `flo-${federationId}`;
  }

  /**
   * The body of a request, with every asset reference (environment, code, data inputs given as
   * `azureml:` references) turned into an id by `idOf`. Data asset inputs become
   * `azureml:/subscriptions/.../data/<name>/versions/<v>`, the form Azure ML's REST examples use.
   */
  private bodyWith(request: SiloJobRequest, idOf: (kind: AssetKind, reference: string, field: string) => string): { properties: Record<string, unknown> } {
    const environment = this.options.environmentId ?? request.environment;
    if (!environment) {
      throw new AzureMlConfigError("training.environment", "an Azure ML environment id (options.environmentId or the request's environment)", "nothing");
    }
    const code = this.options.codeId ?? request.code;
    const inputs: Record<string, JobInput> = {};
    for (const [name, input] of Object.entries(request.inputs)) {
      const isAssetReference = input.kind === "asset" && input.path.startsWith("azureml:") && !input.path.startsWith("azureml://");
      inputs[name] = isAssetReference ? { ...input, path: `azureml:${idOf("data", input.path, `silos.${request.silo}.inputs.${name}.path`)}` } : input;
    }
    return buildCommandJobBody(
      { ...request, inputs },
      {
        computeId: this.computeId,
        experimentName: this.experimentNameFor(request.federationId),
        environmentId: idOf("environments", environment, "training.environment"),
        codeId: code === undefined ? undefined : idOf("codes", code, "training.code"),
        identity: this.options.identity ?? { identityType: "Managed" },
        outputUri: this.outputUriFor(request),
        instanceCount: this.options.instanceCount,
        instanceType: this.options.instanceType,
        environmentVariables: this.options.environmentVariables,
      },
    );
  }

  /**
   * The exact body `submit` PUTs, for inspection and tests, when no reference needs a lookup
   * (`@latest`, data assets are checked in the workspace by `submit` only).
   */
  buildJobBody(request: SiloJobRequest): { properties: Record<string, unknown> } {
    return this.bodyWith(request, (kind, reference, field) => this.versionIdOf(kind, reference, field));
  }

  /**
   * The body `submit` PUTs: validated first without any call (bad references and fields fail
   * before anything is sent), then with every reference resolved in the silo's workspace. Errors
   * of a missing asset name the silo, the workspace and the asset.
   */
  async resolvedJobBody(request: SiloJobRequest, options: CallOptions = {}): Promise<{ properties: Record<string, unknown> }> {
    const resolved = new Map<string, string>();
    for (const { kind, reference, field } of this.assetReferences(request)) {
      resolved.set(`${kind} ${reference}`, await this.resolveCached(kind, reference, field, request.silo, options.signal));
    }
    return this.bodyWith(request, (kind, reference) => resolved.get(`${kind} ${reference}`)!);
  }

  /** Validates a request without any call and lists the asset references its body needs resolved. */
  private assetReferences(request: SiloJobRequest): { kind: AssetKind; reference: string; field: string }[] {
    const references: { kind: AssetKind; reference: string; field: string }[] = [];
    this.bodyWith(request, (kind, reference, field) => {
      references.push({ kind, reference, field });
      if (kind === "codes" && uploadedCodeDigest(reference)) return `${this.workspaceId}/codes/${CODE_ASSET_NAME}/versions/pending`;
      const parsed = parseAssetReference(kind, reference, this.workspaceId, field);
      return parsed.form === "latest" ? `${this.workspaceId}/${kind}/${parsed.name}/versions/latest` : parsed.id;
    });
    return references;
  }

  private resolveCached(kind: AssetKind, reference: string, field: string, silo: string, signal?: AbortSignal): Promise<string> {
    // Versions are immutable, so a resolved id stays right; `@latest` is pinned for this instance's lifetime.
    const key = `${kind} ${reference}`;
    let resolved = this.resolvedAssets.get(key);
    if (!resolved) {
      resolved =
        kind === "codes" && uploadedCodeDigest(reference)
          ? registerUploadedCode(this.client, this.coordinates, reference, { signal })
          : resolveAssetId(this.client, this.coordinates, { kind, reference, field, silo, signal });
      this.resolvedAssets.set(key, resolved);
      resolved.catch(() => this.resolvedAssets.delete(key));
    }
    return resolved;
  }

  private versionIdOf(kind: AssetKind, reference: string, field: string): string {
    if (kind === "codes" && uploadedCodeDigest(reference)) {
      throw new AzureMlConfigError(field, "a registered code version (submit registers the uploaded folder in the silo's workspace)", JSON.stringify(reference));
    }
    const parsed = parseAssetReference(kind, reference, this.workspaceId, field);
    if (parsed.form === "latest") throw new AzureMlConfigError(field, "a resolved version (submit resolves it in the silo's workspace)", JSON.stringify(reference));
    return parsed.id;
  }

  async submit(request: SiloJobRequest, options: CallOptions = {}): Promise<SiloJobStatus> {
    // Bad fields and references fail before any call; lookups run only once the job is known to be new.
    this.assetReferences(request);
    const existing = await this.getJobIfExists(request.jobName, "submit", options);
    if (existing) return this.statusOfExisting(existing, request);
    const body = await this.resolvedJobBody(request, options);

    const url =
      `${this.endpoint}/subscriptions/${encodeURIComponent(this.coordinates.subscriptionId)}` +
      `/resourceGroups/${encodeURIComponent(this.coordinates.resourceGroup)}` +
      `/providers/Microsoft.MachineLearningServices/workspaces/${encodeURIComponent(this.coordinates.workspace)}` +
      `/jobs/${encodeURIComponent(request.jobName)}?api-version=${encodeURIComponent(this.apiVersion)}`;
    const pipelineRequest = createPipelineRequest({
      url,
      method: "PUT",
      body: JSON.stringify(body),
      headers: createHttpHeaders({ "content-type": "application/json", accept: "application/json" }),
      abortSignal: options.signal,
    });
    let response;
    try {
      response = await this.client.sendRequest(pipelineRequest);
    } catch (error) {
      throw toAzureMlError(error, { coordinates: this.coordinates, operation: "submit", requiredRole: DATA_SCIENTIST_ROLE, jobName: request.jobName });
    }
    if (response.status === 200 || response.status === 201) {
      return this.toStatus(parseJson(response.bodyAsText ?? undefined, request.jobName), request.jobName, this.outputUriFor(request));
    }
    if (response.status === 400 || response.status === 409) {
      // Another submitter may have created it between our GET and PUT; Azure ML then answers 400
      // UserError "A job with this name already exists". Adopt that job instead of failing the submit.
      const raced = await this.getJobIfExists(request.jobName, "submit", options);
      if (raced) return this.statusOfExisting(raced, request);
    }
    throw toAzureMlError(
      { statusCode: response.status, bodyText: response.bodyAsText ?? "" },
      { coordinates: this.coordinates, operation: "submit", requiredRole: DATA_SCIENTIST_ROLE, jobName: request.jobName },
    );
  }

  async status(jobName: string, options: CallOptions = {}): Promise<SiloJobStatus> {
    assertValidJobName(jobName);
    const job = await this.getJobIfExists(jobName, "status", options);
    if (!job) {
      throw new AzureMlJobNotFoundError(this.coordinates, jobName);
    }
    return this.toStatus(job, jobName);
  }

  /**
   * Cancels a job and waits for Azure ML to accept the cancellation (the cancel LRO). A finished job
   * is left as is, and a job that was never created has nothing to cancel (like the local compute).
   */
  async cancel(jobName: string, options: CallOptions = {}): Promise<void> {
    assertValidJobName(jobName);
    const job = await this.getJobIfExists(jobName, "cancel", options);
    if (!job) return;
    const state = jobStateFromAzureMlStatus(jobProperties(job).status);
    if (state === "completed" || state === "failed" || state === "canceled") return;
    try {
      const poller = await this.client.jobs.beginCancel(this.coordinates.resourceGroup, this.coordinates.workspace, jobName, {
        abortSignal: options.signal,
      });
      // Polled here rather than with pollUntilDone, whose loop leaves a timer running after the
      // operation is done and cannot be interrupted by the signal while waiting.
      while (!poller.isDone()) {
        await abortableDelay(this.options.cancelPollIntervalMs ?? DEFAULT_CANCEL_POLL_INTERVAL_MS, options.signal);
        await poller.poll({ abortSignal: options.signal });
      }
    } catch (error) {
      throw toAzureMlError(error, { coordinates: this.coordinates, operation: "cancel", requiredRole: DATA_SCIENTIST_ROLE, jobName });
    }
  }

  /**
   * Opens a completed job's `model_update` folder (an azureml:// datastore URI, e.g. `status.outputUri`)
   * for reading: resolves the datastore to its blob container and reads with the orchestrator's
   * credential (read-only access to the silo's exchange container is all it needs).
   */
  openOutput(outputUri: string, options?: OpenOutputOptions & { kind?: "train" }): Promise<Extract<SiloOutputFolder, { kind: "train" }>>;
  openOutput(outputUri: string, options: OpenOutputOptions): Promise<SiloOutputFolder>;
  async openOutput(outputUri: string, options: OpenOutputOptions = {}): Promise<SiloOutputFolder> {
    return openSiloOutputFolder(this.client, this.coordinates, outputUri, {
      ...this.options.blob,
      credential: this.options.blob?.credential ?? this.options.credential,
      signal: options.signal,
      kind: options.kind,
    });
  }

  /** One file of a completed job's output folder (a secure job's masked update, shares or reveal). */
  openOutputFile(outputUri: string, file: string, options: CallOptions = {}): Promise<ByteSource> {
    return openSiloOutputFile(this.client, this.coordinates, outputUri, file, {
      ...this.options.blob,
      credential: this.options.blob?.credential ?? this.options.credential,
      signal: options.signal,
    });
  }

  /** The silo's workspace. */
  get workspaceCoordinates(): WorkspaceCoordinates {
    return { ...this.coordinates };
  }

  get exchangeDatastore(): string {
    return this.options.exchangeDatastore;
  }

  /** Resolves an asset reference in this workspace (cached like submit's lookups). */
  resolveAsset(kind: AssetKind, reference: string, options: { field: string; silo: string; signal?: AbortSignal }): Promise<string> {
    return this.resolveCached(kind, reference, options.field, options.silo, options.signal);
  }

  /** Lists flo's folder of the exchange container with the orchestrator's blob credential (a read probe). */
  probeExchangeRead(options: CallOptions = {}): Promise<BlobFolderLocation> {
    return probeExchangeRead(this.client, this.coordinates, this.options.exchangeDatastore, {
      ...this.options.blob,
      credential: this.options.blob?.credential ?? this.options.credential,
      signal: options.signal,
    });
  }

  private async getJobIfExists(jobName: string, operation: string, options: CallOptions): Promise<JobBase | undefined> {
    try {
      return await this.client.jobs.get(this.coordinates.resourceGroup, this.coordinates.workspace, jobName, {
        abortSignal: options.signal,
      });
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw toAzureMlError(error, { coordinates: this.coordinates, operation, requiredRole: DATA_SCIENTIST_ROLE, jobName });
    }
  }

  /** An existing job is ours only if its flo tags match the request; anything else is a name collision. */
  private statusOfExisting(job: JobBase, request: SiloJobRequest): SiloJobStatus {
    const tags = jobProperties(job).tags ?? {};
    const expected: Record<string, string> = {
      [FLO_TAGS.federation]: request.federationId,
      [FLO_TAGS.round]: String(request.round),
      [FLO_TAGS.silo]: request.silo,
      [FLO_TAGS.kind]: request.kind ?? DEFAULT_JOB_KIND,
    };
    // Jobs submitted before kinds existed have no kind tag: they are training jobs.
    const actual: Record<string, string | null | undefined> = { ...tags, [FLO_TAGS.kind]: tags[FLO_TAGS.kind] ?? DEFAULT_JOB_KIND };
    for (const [key, value] of Object.entries(expected)) {
      if (actual[key] !== value) {
        throw new AzureMlJobConflictError({ coordinates: this.coordinates, jobName: request.jobName, tag: key, expected: value, got: tags[key] ?? undefined });
      }
    }
    return this.toStatus(job, request.jobName, this.outputUriFor(request));
  }

  private toStatus(job: JobBase | Record<string, unknown>, jobName: string, expectedOutputUri?: string): SiloJobStatus {
    const properties = jobProperties(job);
    const rawStatus = properties.status ?? "NotStarted";
    const state = jobStateFromAzureMlStatus(rawStatus);
    const name = (job as { name?: string }).name ?? jobName;
    // The job's own kind tag names its output (jobs submitted before kinds existed are training jobs).
    const kindTag = properties.tags?.[FLO_TAGS.kind];
    const outputUri = properties.outputs?.[jobKindContract(isJobKind(kindTag) ? kindTag : undefined).output]?.uri ?? expectedOutputUri;
    const logUri = properties.services?.Studio?.endpoint ?? undefined;
    const status: SiloJobStatus = { jobName: name, state, rawStatus };
    if (outputUri) status.outputUri = outputUri;
    if (logUri) status.logUri = logUri;
    if (state === "failed" || state === "canceled") {
      status.error = `Azure ML job ${name} in workspace ${this.coordinates.workspace} ended with status ${rawStatus}` + (logUri ? `; logs: ${logUri}` : "");
    }
    return status;
  }
}

function parseJson(text: string | undefined, jobName: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(text ?? "");
    if (typeof value === "object" && value !== null) return value as Record<string, unknown>;
  } catch {
    // fall through to the error below
  }
  throw new AzureMlRequestError(`Azure ML returned an unreadable job body for ${jobName}: ${String(text).slice(0, 200)}`, {
    statusCode: 200,
    code: "InvalidResponseBody",
  });
}
