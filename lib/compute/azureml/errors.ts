/**
 * Errors of the azureml compute, one family: configuration mistakes (caught before any call),
 * authorization failures (naming the workspace and the role the orchestrator's identity lacks), and
 * other ARM/storage failures carrying the HTTP status and the ARM error code.
 */

export interface WorkspaceCoordinates {
  subscriptionId: string;
  resourceGroup: string;
  workspace: string;
}

/** Role that lets an identity submit, read and cancel jobs and read datastores in a workspace. */
export const DATA_SCIENTIST_ROLE = "AzureML Data Scientist";
/** Role the orchestrator needs on a silo's exchange container to read job outputs. */
export const STORAGE_BLOB_DATA_READER_ROLE = "Storage Blob Data Reader";

export class AzureMlError extends Error {
  override name = "AzureMlError";
}

/** A bad option or request field, found before anything is sent. */
export class AzureMlConfigError extends AzureMlError {
  override name = "AzureMlConfigError";
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`Invalid Azure ML job setting ${field}: expected ${expected}, got ${got}`);
  }
}

export interface RequestErrorDetails {
  statusCode?: number;
  /** ARM error code, e.g. `AuthorizationFailed`, `UserError`, `TooManyRequests`. */
  code?: string;
  jobName?: string;
  operation?: string;
}

/** Azure ML (or its storage) answered with an error that is not an authorization failure. */
export class AzureMlRequestError extends AzureMlError {
  override name = "AzureMlRequestError";
  readonly statusCode?: number;
  readonly code?: string;
  readonly jobName?: string;
  readonly operation?: string;
  constructor(message: string, details: RequestErrorDetails = {}) {
    super(message);
    this.statusCode = details.statusCode;
    this.code = details.code;
    this.jobName = details.jobName;
    this.operation = details.operation;
  }
  /** Worth retrying later (throttling, timeouts, server errors) once the pipeline's own retries are spent. */
  get transient(): boolean {
    const status = this.statusCode;
    return status === undefined || status === 408 || status === 429 || status >= 500;
  }
}

/** 401/403: the orchestrator's identity may not do this; the message names the workspace and the role to grant. */
export class AzureMlAuthorizationError extends AzureMlRequestError {
  override name = "AzureMlAuthorizationError";
  constructor(message: string, details: RequestErrorDetails & { workspace: string; requiredRole: string; scope: string }) {
    super(message, details);
    this.workspace = details.workspace;
    this.requiredRole = details.requiredRole;
    this.scope = details.scope;
  }
  readonly workspace: string;
  readonly requiredRole: string;
  /** Where the role must be assigned (workspace or container resource id). */
  readonly scope: string;
  override get transient(): boolean {
    return false;
  }
}

export class AzureMlJobNotFoundError extends AzureMlRequestError {
  override name = "AzureMlJobNotFoundError";
  constructor(coordinates: WorkspaceCoordinates, jobName: string) {
    super(`Azure ML job ${jobName} does not exist in workspace ${coordinates.workspace} (resource group ${coordinates.resourceGroup})`, {
      statusCode: 404,
      code: "NotFound",
      jobName,
    });
  }
}

/** A job with this name exists but belongs to another federation/round/silo (or is not flo's). */
export class AzureMlJobConflictError extends AzureMlError {
  override name = "AzureMlJobConflictError";
  readonly jobName: string;
  readonly tag: string;
  readonly expected: string;
  readonly got: string | undefined;
  constructor(details: { coordinates: WorkspaceCoordinates; jobName: string; tag: string; expected: string; got: string | undefined }) {
    const { coordinates, jobName, tag, expected, got } = details;
    super(
      `Azure ML job ${jobName} already exists in workspace ${coordinates.workspace} but is not this silo job: ` +
        `tag ${tag} expected ${JSON.stringify(expected)}, got ${got === undefined ? "no tag" : JSON.stringify(got)}`,
    );
    this.jobName = jobName;
    this.tag = tag;
    this.expected = expected;
    this.got = got;
  }
}

export function workspaceResourceId(coordinates: WorkspaceCoordinates): string {
  return `/subscriptions/${coordinates.subscriptionId}/resourceGroups/${coordinates.resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${coordinates.workspace}`;
}

function armErrorFromBody(bodyText: string | undefined): { code?: string; message?: string } {
  if (!bodyText) return {};
  try {
    const body = JSON.parse(bodyText) as { error?: { code?: unknown; message?: unknown; details?: unknown } };
    const code = typeof body.error?.code === "string" ? body.error.code : undefined;
    let message = typeof body.error?.message === "string" ? body.error.message : undefined;
    // ARM validation errors name the offending fields in `details`; keep them in the message.
    const details = Array.isArray(body.error?.details) ? body.error.details.map((d) => (d as { message?: unknown })?.message).filter((m): m is string => typeof m === "string") : [];
    if (details.length > 0) message = `${message ?? "error"} (${details.join("; ")})`;
    return { code, message };
  } catch {
    return { message: bodyText.slice(0, 300) };
  }
}

/**
 * Turns a RestError from the SDK, or a raw error response, into this family. Abort errors pass
 * through untouched so callers see the cancellation they asked for.
 */
export function toAzureMlError(
  error: unknown,
  context: {
    coordinates: WorkspaceCoordinates;
    /** What was attempted, e.g. "submit". */
    operation: string;
    /** The role the orchestrator's identity needs for it, named in authorization errors. */
    requiredRole: string;
    jobName?: string;
  },
): Error {
  const { coordinates, operation, requiredRole, jobName } = context;
  if (error instanceof AzureMlError) return error;
  const candidate = error as {
    name?: string;
    statusCode?: number;
    code?: string;
    message?: string;
    bodyText?: string;
    response?: { bodyAsText?: string | null };
  };
  if (candidate?.name === "AbortError") return error as Error;
  const statusCode = candidate?.statusCode;
  const fromBody = armErrorFromBody(candidate?.bodyText ?? candidate?.response?.bodyAsText ?? undefined);
  const code = fromBody.code ?? candidate?.code;
  const detail = fromBody.message ?? candidate?.message ?? "no error message";
  const target = jobName ? ` of job ${jobName}` : "";
  const where = `workspace ${coordinates.workspace} (resource group ${coordinates.resourceGroup}, subscription ${coordinates.subscriptionId})`;
  if (statusCode === 401 || statusCode === 403) {
    const scope = workspaceResourceId(coordinates);
    const reason =
      statusCode === 401
        ? "the token was rejected: check that the orchestrator's identity exists in the workspace's tenant"
        : `the orchestrator's identity needs the "${requiredRole}" role on the workspace (scope ${scope})`;
    return new AzureMlAuthorizationError(`Azure ML denied ${operation}${target} in ${where}: HTTP ${statusCode} ${code ?? ""}: ${detail}. Fix: ${reason}.`, {
      statusCode,
      code,
      jobName,
      operation,
      workspace: coordinates.workspace,
      requiredRole,
      scope,
    });
  }
  return new AzureMlRequestError(`Azure ML ${operation}${target} failed in ${where}: ${statusCode === undefined ? "no response" : `HTTP ${statusCode}`}` + `${code ? ` ${code}` : ""}: ${detail}`, {
    statusCode,
    code,
    jobName,
    operation,
  });
}
