/** Error family of the embedded Durable runtime. */
export class DurableRuntimeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

export class InstanceNotFoundError extends DurableRuntimeError {
  constructor(readonly instanceId: string) {
    super(`No orchestration instance with id '${instanceId}' exists`);
  }
}

export class InstanceAlreadyExistsError extends DurableRuntimeError {
  constructor(
    readonly instanceId: string,
    readonly status: string,
  ) {
    super(`An orchestration instance with id '${instanceId}' already exists with status ${status}; only Completed, Failed or Terminated instances can be restarted`);
  }
}

export class OrchestratorNotFoundError extends DurableRuntimeError {
  constructor(
    readonly functionName: string,
    available: string[],
  ) {
    super(`The function '${functionName}' doesn't exist, is disabled, or is not an orchestrator function. Registered orchestrators: ${available.join(", ") || "none"}`);
  }
}

export class InstanceFinishedError extends DurableRuntimeError {
  constructor(
    readonly instanceId: string,
    readonly status: string,
  ) {
    super(`Orchestration instance '${instanceId}' is already ${status}`);
  }
}

export class WaitTimeoutError extends DurableRuntimeError {
  constructor(
    readonly instanceId: string,
    timeoutMs: number,
    lastStatus: string | undefined,
  ) {
    super(`Timed out after ${timeoutMs} ms waiting for instance '${instanceId}' (last status: ${lastStatus ?? "not found"})`);
  }
}
