/**
 * Emulation of what the Durable extension (.NET, OutOfProcOrchestrationShim) and DTFx
 * (TaskOrchestrationExecutor, RetryInterceptor) do with the actions a JS orchestrator returns.
 *
 * The JS function is invoked once per episode with the full history; its actions are then
 * replayed *sequentially* against an emulated DTFx context while the history is processed event
 * by event: each top-level action is awaited before the next is invoked, ids come from one
 * counter, scheduled events are checked for determinism, and whatever the code schedules that the
 * history does not confirm is the episode's new work. Pure and synchronous: no I/O, no clock.
 */
import { EventType, HistoryEvent, FailureDetails, toJsonText } from "./history";

export const DEFAULT_MAX_SHORT_TIMER_MS = 6 * 24 * 3600 * 1000;
export const DEFAULT_LONG_TIMER_INTERVAL_MS = 3 * 24 * 3600 * 1000;
/** Default of RetryOptions.MaxRetryInterval in the extension. */
export const DEFAULT_MAX_RETRY_INTERVAL_MS = 6 * 24 * 3600 * 1000;

export interface RetryOptionsWire {
  firstRetryIntervalInMilliseconds: number;
  maxNumberOfAttempts: number;
  backoffCoefficient?: number;
  maxRetryIntervalInMilliseconds?: number;
  retryTimeoutInMilliseconds?: number;
}

/** One entry of `OrchestratorState.actions[0]` as it arrives on the wire (schema >= V2). */
export interface WireAction {
  actionType: ActionType;
  functionName?: string;
  input?: unknown;
  instanceId?: string;
  retryOptions?: RetryOptionsWire;
  fireAt?: string;
  isCanceled?: boolean;
  externalEventName?: string;
  compoundActions?: WireAction[];
  [key: string]: unknown;
}

export interface OrchestratorStateWire {
  isDone: boolean;
  actions: WireAction[][];
  output?: unknown;
  error?: string;
  customStatus?: unknown;
  failureDetails?: unknown;
  schemaVersion?: number;
}

export type NewWork =
  | { kind: "activity"; id: number; name: string; input: string | null }
  | { kind: "timer"; id: number; fireAt: Date }
  | { kind: "subOrchestration"; id: number; name: string; instanceId: string; input: string | null };

export type ReplayOutcome =
  { kind: "running" } | { kind: "completed"; output: string } | { kind: "failed"; message: string; failure: FailureDetails } | { kind: "continuedAsNew"; input: string | null };

export interface ReplayResult {
  newWork: NewWork[];
  outcome: ReplayOutcome;
  /** Ids of scheduled activities / sub-orchestrations / non-cancelled timers still awaited. */
  openTaskIds: number[];
  /** External events delivered but not consumed (dropped by continueAsNew). */
  unconsumedEvents: string[];
}

export interface ReplayRequest {
  orchestrationName: string;
  instanceId: string;
  executionId: string;
  parentInstanceId: string | null;
  history: HistoryEvent[];
  /** The JS result, or undefined when the handler failed without a `$OutOfProcData$` state. */
  state: OrchestratorStateWire | undefined;
  /** The handler's error message when `state` is undefined. */
  invocationError?: string;
  functionExists(name: string, kind: "activity" | "orchestrator"): boolean;
  maxShortTimerMs?: number;
  longTimerIntervalMs?: number;
}

export const enum ActionType {
  CallActivity = 0,
  CallActivityWithRetry = 1,
  CallSubOrchestrator = 2,
  CallSubOrchestratorWithRetry = 3,
  ContinueAsNew = 4,
  CreateTimer = 5,
  WaitForExternalEvent = 6,
  CallEntity = 7,
  CallHttp = 8,
  SignalEntity = 9,
  WhenAny = 11,
  WhenAll = 12,
  LockEntities = 13,
  ReleaseEntities = 14,
}

/** A synchronous stand-in for a .NET Task: continuations run inline when it settles. */
class SimTask {
  state: "pending" | "completed" | "failed" | "canceled" = "pending";
  value: unknown;
  error: string | undefined;
  private continuations: Array<() => void> = [];

  get settled(): boolean {
    return this.state !== "pending";
  }
  complete(value: unknown): void {
    this.settle("completed", value, undefined);
  }
  fail(error: string): void {
    this.settle("failed", undefined, error);
  }
  cancel(): void {
    this.settle("canceled", undefined, "A task was canceled.");
  }
  then(continuation: () => void): void {
    if (this.settled) continuation();
    else this.continuations.push(continuation);
  }
  private settle(state: SimTask["state"], value: unknown, error: string | undefined): void {
    if (this.settled) return;
    this.state = state;
    this.value = value;
    this.error = error;
    const pending = this.continuations;
    this.continuations = [];
    for (const c of pending) c();
  }
}

type PlannedAction = NewWork;

/** Thrown inside the emulated orchestration: fails the instance (open-task rule still applies). */
class ShimFailure extends Error {}
/** Thrown while processing history: DTFx aborts and fails the instance. */
export class NonDeterminismError extends Error {}

const KIND_WORDS: Record<PlannedAction["kind"], string> = { activity: "activity", timer: "timer", subOrchestration: "sub-orchestration" };

export class DotNetReplayer {
  private idCounter = 0;
  private readonly planned = new Map<number, PlannedAction>();
  private readonly openTasks = new Map<number, SimTask>();
  private readonly waiters = new Map<string, SimTask[]>();
  private readonly buffered = new Map<string, Array<string | null>>();
  private now = new Date(0);
  private programDone = false;
  private programFailure: string | undefined;
  private continueAsNewInput: string | null | undefined;
  private continueAsNewRequested = false;
  private readonly maxShortTimerMs: number;
  private readonly longTimerIntervalMs: number;

  constructor(private readonly req: ReplayRequest) {
    this.maxShortTimerMs = req.maxShortTimerMs ?? DEFAULT_MAX_SHORT_TIMER_MS;
    this.longTimerIntervalMs = req.longTimerIntervalMs ?? DEFAULT_LONG_TIMER_INTERVAL_MS;
  }

  run(): ReplayResult {
    const name = this.req.orchestrationName;
    try {
      for (const event of this.req.history) this.processEvent(event);
    } catch (err) {
      if (!(err instanceof NonDeterminismError)) throw err;
      const message = `Non-Deterministic workflow detected: ${err.message}`;
      return {
        newWork: [],
        outcome: { kind: "failed", message, failure: { ErrorType: "NonDeterministicOrchestrationException", ErrorMessage: message } },
        openTaskIds: [],
        unconsumedEvents: [],
      };
    }
    const newWork = [...this.planned.values()].sort((a, b) => a.id - b.id);
    const openTaskIds = [...this.openTasks.keys()].sort((a, b) => a - b);
    const unconsumedEvents = [...this.buffered.entries()].flatMap(([eventName, queue]) => queue.map(() => eventName));
    let outcome: ReplayOutcome = { kind: "running" };
    const state = this.req.state;
    if (this.programFailure !== undefined) {
      outcome = failed(name, this.programFailure, "FunctionFailedException");
    } else if (!state) {
      outcome = failed(name, this.req.invocationError ?? "the orchestrator returned no state", "OrchestrationFailureException");
    } else if (this.programDone) {
      if (state.error !== undefined && state.error !== null) outcome = failed(name, String(state.error), "OrchestrationFailureException");
      else if (state.isDone && this.continueAsNewRequested) outcome = { kind: "continuedAsNew", input: this.continueAsNewInput ?? null };
      else if (state.isDone) outcome = { kind: "completed", output: toJsonText(state.output) };
    }
    // DTFx completes, fails or continues-as-new only when no task is still open.
    if (outcome.kind !== "running" && openTaskIds.length > 0) outcome = { kind: "running" };
    return { newWork, outcome, openTaskIds, unconsumedEvents };
  }

  // ---- history processing (TaskOrchestrationExecutor.ProcessEvent) ----

  private processEvent(event: HistoryEvent): void {
    switch (event.EventType) {
      case EventType.OrchestratorStarted:
        this.now = new Date(event.Timestamp);
        break;
      case EventType.ExecutionStarted:
        this.startProgram();
        break;
      case EventType.TaskScheduled:
        this.confirmScheduled("activity", event.EventId, String(event.Name));
        break;
      case EventType.TimerCreated:
        this.confirmScheduled("timer", event.EventId, "");
        break;
      case EventType.SubOrchestrationInstanceCreated:
        this.confirmScheduled("subOrchestration", event.EventId, String(event.Name));
        break;
      case EventType.TaskCompleted:
      case EventType.SubOrchestrationInstanceCompleted:
        this.takeOpen(event.TaskScheduledId)?.complete(event.Result);
        break;
      case EventType.TaskFailed:
      case EventType.SubOrchestrationInstanceFailed:
        this.takeOpen(event.TaskScheduledId)?.fail(typeof event.Reason === "string" ? event.Reason : "failed");
        break;
      case EventType.TimerFired:
        this.takeOpen(event.TimerId)?.complete(undefined);
        break;
      case EventType.EventRaised:
        this.raiseEvent(String(event.Name), (event.Input as string | null | undefined) ?? null);
        break;
      default:
        break;
    }
  }

  private takeOpen(id: unknown): SimTask | undefined {
    if (typeof id !== "number") return undefined;
    const task = this.openTasks.get(id);
    if (task) this.openTasks.delete(id);
    return task;
  }

  private confirmScheduled(kind: PlannedAction["kind"], id: number, name: string): void {
    const action = this.planned.get(id);
    const what = kind === "timer" ? `a timer task with sequence ID ${id}` : `a ${KIND_WORDS[kind]} task with sequence ID ${id} and name '${name}'`;
    const tail = "Was a change made to the orchestrator code after this instance had already started running?";
    if (!action) {
      throw new NonDeterminismError(`A previous execution of this orchestration scheduled ${what}, but the current replay execution hasn't (yet?) scheduled this task. ${tail}`);
    }
    const actionName = action.kind === "timer" ? "" : action.name;
    if (action.kind !== kind || actionName !== name) {
      const found = action.kind === "timer" ? "a timer" : `${KIND_WORDS[action.kind]} '${actionName}'`;
      throw new NonDeterminismError(
        `A previous execution of this orchestration scheduled ${what}, but the current replay execution hasn't (yet?) scheduled this task (found ${found} instead). ${tail}`,
      );
    }
    this.planned.delete(id);
  }

  private raiseEvent(name: string, input: string | null): void {
    const stack = this.waiters.get(name);
    if (stack && stack.length > 0) {
      const newest = stack.pop()!;
      if (stack.length === 0) this.waiters.delete(name);
      newest.complete(input);
      return;
    }
    const queue = this.buffered.get(name) ?? [];
    queue.push(input);
    this.buffered.set(name, queue);
  }

  // ---- the shim: sequential action replay (ProcessAsyncActionsV2) ----

  private startProgram(): void {
    const state = this.req.state;
    if (!state) {
      this.programDone = true;
      return;
    }
    const actions = Array.isArray(state.actions) && Array.isArray(state.actions[0]) ? state.actions[0] : [];
    const step = (index: number): void => {
      if (this.programFailure !== undefined) return;
      if (index >= actions.length) {
        this.programDone = true;
        return;
      }
      let task: SimTask;
      try {
        task = this.invokeAction(actions[index]);
      } catch (err) {
        if (err instanceof ShimFailure) {
          this.programFailure = err.message;
          return;
        }
        throw err;
      }
      // Failures were already handled by the JS code; the shim only waits for completion.
      task.then(() => step(index + 1));
    };
    step(0);
  }

  private invokeAction(action: WireAction): SimTask {
    switch (action.actionType) {
      case ActionType.CallActivity:
        return this.scheduleActivity(action);
      case ActionType.CallActivityWithRetry:
        return this.withRetry(requireRetry(action), () => this.scheduleActivity(action));
      case ActionType.CallSubOrchestrator:
        return this.scheduleSubOrchestration(action);
      case ActionType.CallSubOrchestratorWithRetry:
        return this.withRetry(requireRetry(action), () => this.scheduleSubOrchestration(action));
      case ActionType.ContinueAsNew: {
        this.continueAsNewRequested = true;
        this.continueAsNewInput = action.input === undefined ? null : toJsonText(action.input);
        const done = new SimTask();
        done.complete(undefined);
        return done;
      }
      case ActionType.CreateTimer:
        return this.createDurableTimer(new Date(String(action.fireAt)), action.isCanceled === true);
      case ActionType.WaitForExternalEvent:
        return this.waitForExternalEvent(String(action.externalEventName));
      case ActionType.WhenAll:
        return whenAll((action.compoundActions ?? []).map((child) => this.invokeAction(child)));
      case ActionType.WhenAny:
        return whenAny((action.compoundActions ?? []).map((child) => this.invokeAction(child)));
      case ActionType.CallEntity:
      case ActionType.SignalEntity:
      case ActionType.LockEntities:
      case ActionType.ReleaseEntities:
        throw new ShimFailure("Durable entities are not supported by flo's local runtime (callEntity/signalEntity/lock).");
      case ActionType.CallHttp:
        throw new ShimFailure("callHttp is not supported by flo's local runtime.");
      default:
        throw new ShimFailure(`Unknown action type ${String(action.actionType)} in the orchestrator's actions.`);
    }
  }

  private nextId(): number {
    return this.idCounter++;
  }

  private scheduleActivity(action: WireAction): SimTask {
    const name = String(action.functionName);
    if (!this.req.functionExists(name, "activity")) {
      throw new ShimFailure(`The function '${name}' doesn't exist, is disabled, or is not an activity function.`);
    }
    const id = this.nextId();
    this.planned.set(id, { kind: "activity", id, name, input: activityInputText(action.input) });
    return this.open(id);
  }

  private scheduleSubOrchestration(action: WireAction): SimTask {
    const name = String(action.functionName);
    if (!this.req.functionExists(name, "orchestrator")) {
      throw new ShimFailure(`The function '${name}' doesn't exist, is disabled, or is not an orchestrator function.`);
    }
    const explicitId = typeof action.instanceId === "string" && action.instanceId !== "" ? action.instanceId : undefined;
    if (explicitId && (explicitId.toLowerCase() === this.req.instanceId.toLowerCase() || explicitId.toLowerCase() === this.req.parentInstanceId?.toLowerCase())) {
      throw new ShimFailure("The instance ID of a sub-orchestration must be different than the instance ID of a parent orchestration.");
    }
    const id = this.nextId();
    // DTFx's default child id: "<executionId>:<task id>".
    const instanceId = explicitId ?? `${this.req.executionId}:${id}`;
    this.planned.set(id, { kind: "subOrchestration", id, name, instanceId, input: action.input === undefined ? null : toJsonText(action.input) });
    return this.open(id);
  }

  private open(id: number): SimTask {
    const task = new SimTask();
    this.openTasks.set(id, task);
    return task;
  }

  /** DTFx `CreateTimer`: a cancelled timer is still created but is never an open task. */
  private innerTimer(fireAt: Date, canceled: boolean): SimTask {
    const id = this.nextId();
    this.planned.set(id, { kind: "timer", id, fireAt });
    if (canceled) {
      const task = new SimTask();
      task.cancel();
      return task;
    }
    return this.open(id);
  }

  /** The extension's `CreateTimer`, including its long-timer loop (3-day steps past 6 days). */
  private createDurableTimer(fireAt: Date, canceled: boolean): SimTask {
    if (fireAt.getTime() - this.now.getTime() <= this.maxShortTimerMs) return this.innerTimer(fireAt, canceled);
    const result = new SimTask();
    let intervalFireAt = new Date(this.now.getTime() + this.longTimerIntervalMs);
    const loop = (): void => {
      if (!(this.now.getTime() < fireAt.getTime()) || canceled) {
        if (canceled) result.cancel();
        else result.complete(undefined);
        return;
      }
      const timer = this.innerTimer(intervalFireAt, canceled);
      timer.then(() => {
        if (timer.state === "canceled") {
          result.cancel();
          return;
        }
        const remaining = fireAt.getTime() - this.now.getTime();
        if (remaining <= 0) {
          result.complete(undefined);
          return;
        }
        intervalFireAt = new Date(this.now.getTime() + Math.min(remaining, this.longTimerIntervalMs));
        loop();
      });
    };
    loop();
    return result;
  }

  private waitForExternalEvent(name: string): SimTask {
    const task = new SimTask();
    const queue = this.buffered.get(name);
    if (queue && queue.length > 0) {
      const input = queue.shift()!;
      if (queue.length === 0) this.buffered.delete(name);
      task.complete(input);
      return task;
    }
    const stack = this.waiters.get(name) ?? [];
    stack.push(task);
    this.waiters.set(name, stack);
    return task;
  }

  /** DTFx RetryInterceptor: a timer after every failure, including the last one. */
  private withRetry(options: RetryOptionsWire, attempt: () => SimTask): SimTask {
    const result = new SimTask();
    const firstAttempt = this.now.getTime();
    const maxAttempts = options.maxNumberOfAttempts;
    let lastError = "failed";
    const run = (retryCount: number): void => {
      if (retryCount >= maxAttempts) {
        result.fail(lastError);
        return;
      }
      const task = attempt();
      task.then(() => {
        if (task.state === "completed") {
          result.complete(task.value);
          return;
        }
        lastError = task.error ?? lastError;
        const delay = nextRetryDelayMs(options, retryCount, firstAttempt, this.now.getTime());
        if (delay === 0) {
          result.fail(lastError);
          return;
        }
        const timer = this.innerTimer(new Date(this.now.getTime() + delay), false);
        timer.then(() => run(retryCount + 1));
      });
    };
    run(0);
    return result;
  }
}

/** RetryInterceptor.ComputeNextDelay (0 = stop retrying). */
export function nextRetryDelayMs(options: RetryOptionsWire, attempt: number, firstAttemptMs: number, nowMs: number): number {
  const timeout = options.retryTimeoutInMilliseconds;
  const expiration = timeout && timeout > 0 ? firstAttemptMs + timeout : Number.POSITIVE_INFINITY;
  if (!(nowMs < expiration)) return 0;
  const backoff = options.backoffCoefficient && options.backoffCoefficient > 0 ? options.backoffCoefficient : 1;
  const maxInterval = options.maxRetryIntervalInMilliseconds && options.maxRetryIntervalInMilliseconds > 0 ? options.maxRetryIntervalInMilliseconds : DEFAULT_MAX_RETRY_INTERVAL_MS;
  const next = options.firstRetryIntervalInMilliseconds * Math.pow(backoff, attempt);
  return next < maxInterval ? next : maxInterval;
}

function requireRetry(action: WireAction): RetryOptionsWire {
  const options = action.retryOptions;
  if (!options || typeof options.firstRetryIntervalInMilliseconds !== "number" || typeof options.maxNumberOfAttempts !== "number") {
    throw new ShimFailure(`retryOptions of '${String(action.functionName)}' must have numeric firstRetryIntervalInMilliseconds and maxNumberOfAttempts`);
  }
  return options;
}

/** The activity input as the worker receives it (TypedData string; the worker JSON-parses it). */
function activityInputText(input: unknown): string | null {
  if (input === undefined) return null;
  return typeof input === "string" ? input : toJsonText(input);
}

function whenAll(children: SimTask[]): SimTask {
  const result = new SimTask();
  if (children.length === 0) {
    result.complete([]);
    return result;
  }
  let remaining = children.length;
  for (const child of children) {
    child.then(() => {
      remaining--;
      if (remaining > 0) return;
      const failedChild = children.find((c) => c.state === "failed");
      if (failedChild) result.fail(failedChild.error ?? "failed");
      else if (children.some((c) => c.state === "canceled")) result.cancel();
      else result.complete(children.map((c) => c.value));
    });
  }
  return result;
}

function whenAny(children: SimTask[]): SimTask {
  const result = new SimTask();
  for (const child of children) child.then(() => result.complete(child));
  return result;
}

function failed(orchestrationName: string, error: string, errorType: string): ReplayOutcome {
  const message = `Orchestrator function '${orchestrationName}' failed: ${error}`;
  return { kind: "failed", message, failure: { ErrorType: errorType, ErrorMessage: message } };
}

export function replayDotNetSide(request: ReplayRequest): ReplayResult {
  return new DotNetReplayer(request).run();
}
