/**
 * The host loop of the embedded Durable runtime: instances, episodes, activities, timers,
 * sub-orchestrations, the programmatic management API, persistence and restart recovery.
 *
 * One episode at a time per instance; instances run independently; activities run concurrently
 * (bounded). The .NET-side decisions are made by `replay.ts`; this module only moves messages.
 */
import { randomUUID } from "crypto";
import { cpus } from "os";
import { Clock, CancelTimer, RealClock, VirtualClock } from "../clock";
import { Invoker, TypedData, triggerBinding } from "../invoke";
import { EventType, events, FailureDetails, HistoryEvent, ParentRef, toJsonText } from "./history";
import { DEFAULT_LONG_TIMER_INTERVAL_MS, DEFAULT_MAX_SHORT_TIMER_MS, NewWork, OrchestratorStateWire, replayDotNetSide, ReplayResult } from "./replay";
import { toApiHistoryEvents } from "./historyView";
import { ActivityWorkItem, DurableStore, InboxMessage, InMemoryDurableStore, InstanceRecord, RuntimeStatus, TERMINAL_STATUSES } from "./store";
import { InstanceAlreadyExistsError, InstanceFinishedError, InstanceNotFoundError, OrchestratorNotFoundError, WaitTimeoutError } from "./errors";

export interface DurableEngineOptions {
  invoker: Invoker;
  store?: DurableStore;
  clock?: Clock;
  taskHubName?: string;
  /** Like the host's maxConcurrentActivityFunctions (default 10 x CPU cores). */
  maxConcurrentActivities?: number;
  maxShortTimerMs?: number;
  longTimerIntervalMs?: number;
  logger?: (level: "info" | "warn" | "error", message: string) => void;
  /** Real-time delay before retrying work that failed on a storage error (default 1000 ms). */
  retryAfterErrorMs?: number;
}

/** The status body of the Durable HTTP API (also what the programmatic API returns). */
export interface OrchestrationStatus {
  name: string;
  instanceId: string;
  runtimeStatus: RuntimeStatus;
  input: unknown;
  customStatus: unknown;
  output: unknown;
  createdTime: string;
  lastUpdatedTime: string;
  /** With showHistory: the extension's reshaped view (see historyView.ts), not raw events. */
  historyEvents?: Array<Record<string, unknown>>;
}

export interface StatusQuery {
  createdTimeFrom?: Date;
  createdTimeTo?: Date;
  runtimeStatus?: RuntimeStatus[];
  instanceIdPrefix?: string;
}

export interface StartOptions {
  instanceId?: string;
  input?: unknown;
}

const OUT_OF_PROC_MARKER = "$OutOfProcData$:";
/** Default delay before retrying an episode or an activity-result write that failed (storage hiccup). */
const DEFAULT_RETRY_AFTER_ERROR_MS = 1000;

interface MessageWriter {
  queue: Array<{ message: InboxMessage; resolve: () => void; reject: (err: unknown) => void }>;
  running: boolean;
}

interface LiveInstance {
  record: InstanceRecord;
  /** Events of the current execution, as replayed (IsPlayed already true). */
  history: HistoryEvent[];
  /** False for a finished instance recovered without its history (`loadHistory` reads it when asked). */
  historyLoaded: boolean;
  consumed: Set<string>;
  episodeSequence: number;
  inbox: InboxMessage[];
  timerCancels: Map<string, CancelTimer>;
  running: boolean;
  rerun: boolean;
}

function newExecutionId(): string {
  return randomUUID().replace(/-/g, "");
}

/** .NET TimeSpan text ("d.hh:mm:ss") for the trigger payload. */
function timeSpanText(ms: number): string {
  const totalSeconds = Math.floor(ms / 1000);
  const days = Math.floor(totalSeconds / 86400);
  const pad = (n: number): string => String(n).padStart(2, "0");
  const rest = `${pad(Math.floor((totalSeconds % 86400) / 3600))}:${pad(Math.floor((totalSeconds % 3600) / 60))}:${pad(totalSeconds % 60)}`;
  return days > 0 ? `${days}.${rest}` : rest;
}

function parseJsonText(text: string | null | undefined): unknown {
  if (text === null || text === undefined) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** An activity's return value as the extension records it (TaskCompleted.Result JSON text). */
function decodeReturnValue(data: TypedData | undefined): unknown {
  if (!data) return null;
  if (typeof data.string === "string") return data.string;
  if (typeof data.json === "string") return JSON.parse(data.json);
  if (typeof data.int === "number") return data.int;
  if (typeof data.double === "number") return data.double;
  if (data.bytes) return Buffer.from(data.bytes as Uint8Array).toString("base64");
  return null;
}

function secondsPrecision(iso: string): string {
  return `${iso.slice(0, 19)}Z`;
}

export class DurableEngine {
  readonly taskHubName: string;
  readonly clock: Clock;
  private readonly store: DurableStore;
  private readonly invoker: Invoker;
  private readonly live = new Map<string, LiveInstance>();
  private readonly active = new Set<Promise<unknown>>();
  private readonly activityQueue: ActivityWorkItem[] = [];
  private readonly messageWriters = new Map<string, MessageWriter>();
  private runningActivities = 0;
  /** Ids of activity work items queued or running in this process. */
  private readonly activeWorkIds = new Set<string>();
  private readonly maxConcurrentActivities: number;
  private readonly retryAfterErrorMs: number;
  private readonly maxShortTimerMs: number;
  private readonly longTimerIntervalMs: number;
  /** Registered names by lower-case name: the extension looks functions up ignoring case (FunctionName equality). */
  private readonly orchestrators: Map<string, string>;
  private readonly activities: Map<string, string>;
  private readonly listeners = new Set<(record: InstanceRecord) => void>();
  private readonly log: NonNullable<DurableEngineOptions["logger"]>;
  private stopped = false;
  /**
   * True while `recover` rebuilds the instances: no episode or activity runs until it is done, so
   * recovery never races live work (an activity's result completing a child whose parent recovery
   * is notifying at the same moment).
   */
  private recovering = false;
  private unregisterSettle: (() => void) | undefined;
  private messageSequence = 0;

  private constructor(options: DurableEngineOptions) {
    this.invoker = options.invoker;
    this.store = options.store ?? new InMemoryDurableStore();
    this.clock = options.clock ?? new RealClock();
    this.taskHubName = options.taskHubName ?? "FloTaskHub";
    this.maxConcurrentActivities = options.maxConcurrentActivities ?? 10 * Math.max(1, cpus().length);
    this.maxShortTimerMs = options.maxShortTimerMs ?? DEFAULT_MAX_SHORT_TIMER_MS;
    this.retryAfterErrorMs = options.retryAfterErrorMs ?? DEFAULT_RETRY_AFTER_ERROR_MS;
    this.longTimerIntervalMs = options.longTimerIntervalMs ?? DEFAULT_LONG_TIMER_INTERVAL_MS;
    this.log = options.logger ?? ((level, message) => (level === "info" ? undefined : console.error(`[durable] ${message}`)));
    this.orchestrators = new Map();
    this.activities = new Map();
    for (const [name, fn] of options.invoker.registry.functions) {
      const type = triggerBinding(fn.metadata).type.toLowerCase();
      if (type === "orchestrationtrigger") this.orchestrators.set(name.toLowerCase(), name);
      else if (type === "activitytrigger") this.activities.set(name.toLowerCase(), name);
      else if (type === "entitytrigger") this.log("warn", `Function '${name}' is a Durable entity: entities are not supported by flo's local runtime; calls to it will fail the calling orchestration`);
    }
    if (this.clock instanceof VirtualClock) this.unregisterSettle = this.clock.onSettle(() => this.whenIdle());
  }

  /** Create an engine on a store and resume whatever the store holds (restart recovery). */
  static async start(options: DurableEngineOptions): Promise<DurableEngine> {
    const engine = new DurableEngine(options);
    await engine.recover();
    return engine;
  }

  isOrchestrator(name: string): boolean {
    return this.orchestrators.has(name.toLowerCase());
  }

  /** The registered spelling of an orchestrator or activity name (callers may use any case). */
  private registeredName(name: string, kind: "orchestrator" | "activity"): string {
    return (kind === "activity" ? this.activities : this.orchestrators).get(name.toLowerCase()) ?? name;
  }

  // ------------------------------------------------------------------ management API

  async startNew(name: string, options: StartOptions = {}): Promise<string> {
    if (!this.orchestrators.has(name.toLowerCase())) throw new OrchestratorNotFoundError(name, [...this.orchestrators.values()]);
    const instanceId = options.instanceId ?? randomUUID().replace(/-/g, "");
    if (!instanceId || instanceId.startsWith("@")) throw new RangeError(`Invalid instance id '${instanceId}': must be non-empty and must not start with '@'`);
    const existing = this.live.get(instanceId);
    if (existing && !TERMINAL_STATUSES.has(existing.record.runtimeStatus)) {
      throw new InstanceAlreadyExistsError(instanceId, existing.record.runtimeStatus);
    }
    await this.createInstance(name, instanceId, options.input === undefined ? null : toJsonText(options.input), null);
    return instanceId;
  }

  async raiseEvent(instanceId: string, eventName: string, data?: unknown): Promise<void> {
    const live = this.requireLive(instanceId);
    if (TERMINAL_STATUSES.has(live.record.runtimeStatus)) throw new InstanceFinishedError(instanceId, live.record.runtimeStatus);
    const now = this.clock.now();
    const input = data === undefined ? null : toJsonText(data);
    await this.deliver({ id: `event:${randomUUID()}`, instanceId, event: events.eventRaised(now, eventName, input), enqueuedAt: now.toISOString() });
  }

  async terminate(instanceId: string, reason?: string): Promise<void> {
    const live = this.requireLive(instanceId);
    if (TERMINAL_STATUSES.has(live.record.runtimeStatus)) throw new InstanceFinishedError(instanceId, live.record.runtimeStatus);
    const now = this.clock.now();
    await this.deliver({ id: `terminate:${randomUUID()}`, instanceId, event: events.executionTerminated(now, reason ?? null), enqueuedAt: now.toISOString() });
  }

  getStatus(instanceId: string, options: { showHistory?: boolean; showHistoryOutput?: boolean; showInput?: boolean } = {}): OrchestrationStatus | undefined {
    const live = this.live.get(instanceId);
    if (!live) return undefined;
    return this.toStatus(live, options);
  }

  list(query: StatusQuery = {}, options: { showInput?: boolean } = {}): OrchestrationStatus[] {
    return [...this.live.values()]
      .filter((l) => matches(l.record, query))
      .sort((a, b) => a.record.createdTime.localeCompare(b.record.createdTime) || a.record.instanceId.localeCompare(b.record.instanceId))
      .map((l) => this.toStatus(l, { showInput: options.showInput }));
  }

  /** Delete an instance's state and history. Returns the number of instances deleted (0 or 1). */
  async purge(instanceId: string): Promise<number> {
    const live = this.live.get(instanceId);
    if (!live) return 0;
    for (const cancel of live.timerCancels.values()) cancel();
    this.live.delete(instanceId);
    await this.store.purgeInstance(instanceId);
    return 1;
  }

  async purgeBy(query: StatusQuery): Promise<number> {
    let deleted = 0;
    for (const l of [...this.live.values()]) if (matches(l.record, query)) deleted += await this.purge(l.record.instanceId);
    return deleted;
  }

  /** Resolve with the first status satisfying `predicate` (checked now and after every change). */
  waitForStatus(instanceId: string, predicate: (status: OrchestrationStatus) => boolean, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<OrchestrationStatus> {
    const timeoutMs = options.timeoutMs ?? 30_000;
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const status = this.getStatus(instanceId);
        if (status && predicate(status)) {
          cleanup();
          resolve(status);
          return true;
        }
        return false;
      };
      const listener = (record: InstanceRecord): void => {
        if (record.instanceId === instanceId) check();
      };
      const onAbort = (): void => {
        cleanup();
        reject(options.signal?.reason ?? new Error("aborted"));
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new WaitTimeoutError(instanceId, timeoutMs, this.getStatus(instanceId)?.runtimeStatus));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.listeners.delete(listener);
        options.signal?.removeEventListener("abort", onAbort);
      };
      if (options.signal?.aborted) return onAbort();
      options.signal?.addEventListener("abort", onAbort);
      this.listeners.add(listener);
      check();
    });
  }

  /** Resolves once no episode or activity is running or runnable (future timers don't count). */
  async whenIdle(): Promise<void> {
    while (this.active.size > 0) await Promise.allSettled([...this.active]);
  }

  /** Stop dispatching, disarm timers and wait for in-flight work. The store stays open. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const live of this.live.values()) {
      for (const cancel of live.timerCancels.values()) cancel();
      live.timerCancels.clear();
    }
    this.unregisterSettle?.();
    await this.whenIdle();
  }

  /** Raw history of the current execution (for tests and diagnostics); see `loadHistory` for a finished instance after a restart. */
  history(instanceId: string): HistoryEvent[] {
    const live = this.requireLive(instanceId);
    if (!live.historyLoaded) throw new RangeError(`the history of '${instanceId}' (${live.record.runtimeStatus} before this engine started) is not loaded: await loadHistory('${instanceId}') first`);
    return live.history.map((e) => ({ ...e }));
  }

  /** Reads the history of a finished instance that recovery left in the store (no-op otherwise). */
  async loadHistory(instanceId: string): Promise<void> {
    const live = this.live.get(instanceId);
    if (!live || live.historyLoaded) return;
    const episodes = (await this.store.loadHistory(instanceId)).filter((e) => e.executionId === live.record.executionId).sort((a, b) => a.sequence - b.sequence);
    if (this.live.get(instanceId) !== live || live.historyLoaded) return;
    live.history = episodes.flatMap((e) => e.events.map((ev) => ({ ...ev, IsPlayed: true })));
    live.historyLoaded = true;
  }

  // ------------------------------------------------------------------ instances

  private requireLive(instanceId: string): LiveInstance {
    const live = this.live.get(instanceId);
    if (!live) throw new InstanceNotFoundError(instanceId);
    return live;
  }

  private toStatus(live: LiveInstance, options: { showHistory?: boolean; showHistoryOutput?: boolean; showInput?: boolean }): OrchestrationStatus {
    const r = live.record;
    const status: OrchestrationStatus = {
      name: r.name,
      instanceId: r.instanceId,
      runtimeStatus: r.runtimeStatus,
      input: options.showInput === false ? null : parseJsonText(r.input),
      customStatus: parseJsonText(r.customStatus),
      output: parseJsonText(r.output),
      createdTime: secondsPrecision(r.createdTime),
      lastUpdatedTime: secondsPrecision(r.lastUpdatedTime),
    };
    if (options.showHistory && r.runtimeStatus !== "Pending") {
      if (!live.historyLoaded) throw new RangeError(`the history of '${r.instanceId}' is not loaded: await loadHistory('${r.instanceId}') first`);
      status.historyEvents = toApiHistoryEvents(live.history, { showHistoryOutput: options.showHistoryOutput, showInput: options.showInput });
    }
    return status;
  }

  private async createInstance(name: string, instanceId: string, input: string | null, parent: ParentRef | null): Promise<void> {
    const previous = this.live.get(instanceId);
    if (previous) {
      for (const cancel of previous.timerCancels.values()) cancel();
      await this.store.purgeInstance(instanceId);
    }
    const now = this.clock.now().toISOString();
    const record: InstanceRecord = {
      instanceId,
      name,
      executionId: newExecutionId(),
      runtimeStatus: "Pending",
      input,
      output: null,
      customStatus: null,
      createdTime: now,
      lastUpdatedTime: now,
      parent,
      failure: null,
      generation: 0,
    };
    const live: LiveInstance = {
      record,
      history: [],
      historyLoaded: true,
      consumed: new Set(),
      episodeSequence: 0,
      inbox: [],
      timerCancels: new Map(),
      running: false,
      rerun: false,
    };
    this.live.set(instanceId, live);
    await this.store.putInstance(record);
    await this.deliver(this.startMessage(record));
    this.notify(record);
  }

  private startMessage(record: InstanceRecord): InboxMessage {
    const now = this.clock.now();
    return {
      id: `${record.instanceId}:${record.executionId}:start`,
      instanceId: record.instanceId,
      executionId: record.executionId,
      event: events.executionStarted(now, {
        instanceId: record.instanceId,
        executionId: record.executionId,
        name: record.name,
        input: record.input,
        parent: record.parent,
        generation: record.generation,
      }),
      enqueuedAt: now.toISOString(),
    };
  }

  /**
   * Persist a message. Messages for an instance that arrive while a write for it is in flight are
   * written together in the next batch (one table transaction), e.g. a fan-out's activity results.
   */
  private persistMessage(message: InboxMessage): Promise<void> {
    return new Promise((resolve, reject) => {
      let writer = this.messageWriters.get(message.instanceId);
      if (!writer) {
        writer = { queue: [], running: false };
        this.messageWriters.set(message.instanceId, writer);
      }
      writer.queue.push({ message, resolve, reject });
      if (!writer.running) void this.drainMessageWriter(message.instanceId, writer);
    });
  }

  private async drainMessageWriter(instanceId: string, writer: MessageWriter): Promise<void> {
    writer.running = true;
    try {
      while (writer.queue.length > 0) {
        const batch = writer.queue.splice(0, 100);
        try {
          await this.store.putMessages(
            instanceId,
            batch.map((b) => b.message),
          );
          for (const b of batch) b.resolve();
        } catch (err) {
          for (const b of batch) b.reject(err);
        }
      }
    } finally {
      writer.running = false;
      if (this.messageWriters.get(instanceId) === writer) this.messageWriters.delete(instanceId);
    }
  }

  /** Persist a message, add it to the live inbox and wake the instance (or arm its timer). */
  private async deliver(message: InboxMessage): Promise<void> {
    await this.persistMessage(message);
    const live = this.live.get(message.instanceId);
    if (!live) return;
    if (!live.inbox.some((m) => m.id === message.id)) live.inbox.push(message);
    if (message.fireAt) this.armTimer(live, message);
    else this.schedule(message.instanceId);
  }

  private armTimer(live: LiveInstance, message: InboxMessage): void {
    if (this.stopped || live.timerCancels.has(message.id)) return;
    const fireAt = new Date(message.fireAt!);
    const cancel = this.clock.setTimer(fireAt, () => {
      live.timerCancels.delete(message.id);
      // A clock that fires early would leave the message "not yet due" with no timer armed.
      if (this.clock.now().getTime() < fireAt.getTime()) return this.armTimer(live, message);
      this.schedule(live.record.instanceId);
    });
    live.timerCancels.set(message.id, cancel);
  }

  private notify(record: InstanceRecord): void {
    for (const listener of [...this.listeners]) listener(record);
  }

  // ------------------------------------------------------------------ episodes

  private schedule(instanceId: string): void {
    // While recovering, every instance is scheduled once recovery ends.
    if (this.stopped || this.recovering) return;
    const live = this.live.get(instanceId);
    if (!live) return;
    if (live.running) {
      live.rerun = true;
      return;
    }
    live.running = true;
    const run = (async () => {
      try {
        do {
          live.rerun = false;
          while (!this.stopped && this.live.get(instanceId) === live && (await this.runEpisode(live))) {
            /* keep going while messages are due */
          }
        } while (live.rerun && !this.stopped);
      } catch (err) {
        // Usually a storage error: the messages are still in the inbox, so try again later.
        this.log("error", `episode of '${instanceId}' failed (retrying in ${this.retryAfterErrorMs} ms): ${(err as Error)?.stack ?? String(err)}`);
        this.retryLater(() => void this.repairThenSchedule(live));
      } finally {
        live.running = false;
      }
    })();
    this.track(run);
  }

  /**
   * A commit failed part-way (history appended, later writes not): persist the in-memory record
   * again and re-create the work its history implies, as a restart would, then run the instance.
   * Storage that is still down fails the repair too: it is tried again until it succeeds (an
   * instance left between continueAsNew and its next start would otherwise wait for a restart).
   */
  private async repairThenSchedule(live: LiveInstance): Promise<void> {
    const instanceId = live.record.instanceId;
    if (this.live.get(instanceId) !== live) return;
    try {
      await this.store.putInstance(live.record);
      await this.recoverDerivedWork(live, new Set(this.activeWorkIds));
    } catch (err) {
      this.log("error", `repairing '${instanceId}' failed (retrying in ${this.retryAfterErrorMs} ms): ${(err as Error)?.message ?? String(err)}`);
      this.retryLater(() => void this.repairThenSchedule(live));
      return;
    }
    this.schedule(instanceId);
  }

  /** Real-time retry that doesn't keep the process alive or count as engine work. */
  private retryLater(action: () => void): void {
    if (this.stopped) return;
    setTimeout(() => {
      if (!this.stopped) action();
    }, this.retryAfterErrorMs).unref();
  }

  private track(promise: Promise<unknown>): void {
    this.active.add(promise);
    void promise.finally(() => this.active.delete(promise));
  }

  private dueMessages(live: LiveInstance): InboxMessage[] {
    const nowMs = this.clock.now().getTime();
    const visibleAt = (m: InboxMessage): number => (m.fireAt ? Date.parse(m.fireAt) : Date.parse(m.enqueuedAt));
    return live.inbox
      .map((m, index) => ({ m, index }))
      .filter(({ m }) => !m.fireAt || Date.parse(m.fireAt) <= nowMs)
      .sort((a, b) => visibleAt(a.m) - visibleAt(b.m) || a.index - b.index)
      .map(({ m }) => m);
  }

  /** Run one episode if messages are due. Returns false when there was nothing to do. */
  private async runEpisode(live: LiveInstance): Promise<boolean> {
    const due = this.dueMessages(live);
    if (due.length === 0) return false;
    const record = live.record;
    const dropped: InboxMessage[] = [];
    const applied: InboxMessage[] = [];
    for (const m of due) {
      const stale = m.executionId !== undefined && m.executionId !== record.executionId;
      if (live.consumed.has(m.id) || stale || TERMINAL_STATUSES.has(record.runtimeStatus)) dropped.push(m);
      else applied.push(m);
    }
    if (applied.length === 0) {
      await this.removeMessages(live, dropped);
      return true;
    }
    const now = this.clock.now();
    const terminate = applied.find((m) => m.event.EventType === EventType.ExecutionTerminated);
    if (terminate) {
      await this.finishTerminated(live, terminate, [...applied, ...dropped], now);
      return true;
    }
    const started = live.history.some((e) => e.EventType === EventType.ExecutionStarted);
    const startMessage = applied.find((m) => m.event.EventType === EventType.ExecutionStarted);
    if (!started && !startMessage) {
      // Events for an execution that hasn't started yet wait for its start message.
      await this.removeMessages(live, dropped);
      return dropped.length > 0;
    }
    const incoming = [...(startMessage ? [startMessage.event] : []), ...applied.filter((m) => m !== startMessage).map((m) => m.event)];
    const newEvents: HistoryEvent[] = [events.orchestratorStarted(now), ...incoming.map((e) => ({ ...e, IsPlayed: false }))];
    const fullHistory = [...live.history, ...newEvents];
    const { state, invocationError } = await this.invokeOrchestrator(record, fullHistory, started);
    const result = replayDotNetSide({
      orchestrationName: record.name,
      instanceId: record.instanceId,
      executionId: record.executionId,
      parentInstanceId: record.parent?.instanceId ?? null,
      history: fullHistory,
      state,
      invocationError,
      functionExists: (name, kind) => (kind === "activity" ? this.activities : this.orchestrators).has(name.toLowerCase()),
      maxShortTimerMs: this.maxShortTimerMs,
      longTimerIntervalMs: this.longTimerIntervalMs,
    });
    const oversized = customStatusSizeError(state);
    if (oversized) {
      // OutOfProcOrchestrationShim sets the custom status before it schedules the episode's actions, and
      // MessagePayloadDataConverter throws past 16 KB: the instance fails, nothing is scheduled, the status is not kept.
      const message = `Orchestrator function '${record.name}' failed: ${oversized}`;
      const failedResult: ReplayResult = { ...result, newWork: [], outcome: { kind: "failed", message, failure: { ErrorType: "ArgumentException", ErrorMessage: message } } };
      await this.commitEpisode(live, { newEvents, result: failedResult, state: { ...state!, customStatus: undefined }, consumed: [...applied, ...dropped], now });
      return true;
    }
    await this.commitEpisode(live, { newEvents, result, state, consumed: [...applied, ...dropped], now });
    return true;
  }

  private async invokeOrchestrator(record: InstanceRecord, history: HistoryEvent[], replaying: boolean): Promise<{ state?: OrchestratorStateWire; invocationError?: string }> {
    const payload = {
      history,
      input: parseJsonText(record.input),
      instanceId: record.instanceId,
      isReplaying: replaying,
      parentInstanceId: record.parent?.instanceId ?? null,
      upperSchemaVersion: 1,
      upperSchemaVersionNew: 2,
      longRunningTimerIntervalDuration: timeSpanText(this.longTimerIntervalMs),
      maximumShortTimerDuration: timeSpanText(this.maxShortTimerMs),
      defaultHttpAsyncRequestSleepTimeMillseconds: 30000,
    };
    try {
      const response = await this.invoker.invoke(this.registeredName(record.name, "orchestrator"), { string: JSON.stringify(payload) });
      const value = decodeReturnValue(response.returnValue);
      const state = (typeof value === "string" ? JSON.parse(value) : value) as OrchestratorStateWire;
      return { state };
    } catch (err) {
      const message = (err as Error)?.message ?? String(err);
      const markerAt = message.indexOf(OUT_OF_PROC_MARKER);
      if (markerAt >= 0) {
        try {
          return { state: JSON.parse(message.slice(markerAt + OUT_OF_PROC_MARKER.length)) as OrchestratorStateWire };
        } catch {
          /* fall through: treat as a plain failure */
        }
      }
      return { invocationError: message };
    }
  }

  /** Persists one episode: its new history, the work it scheduled, the state it set, the messages it consumed. */
  private async commitEpisode(
    live: LiveInstance,
    episode: { newEvents: HistoryEvent[]; result: ReplayResult; state: OrchestratorStateWire | undefined; consumed: InboxMessage[]; now: Date },
  ): Promise<void> {
    const { newEvents, result, state, consumed, now } = episode;
    const before = live.record;
    const nowIso = now.toISOString();
    const appended = [...newEvents];
    for (const work of result.newWork) appended.push(scheduledEvent(now, work));
    appended.push(events.orchestratorCompleted(now));
    const record: InstanceRecord = { ...before, runtimeStatus: "Running", lastUpdatedTime: nowIso };
    if (state && state.customStatus !== undefined) record.customStatus = toJsonText(state.customStatus);
    const outcome = result.outcome;
    let continueAs: InstanceRecord | undefined;
    if (outcome.kind === "completed") {
      appended.push(events.executionCompleted(now, "Completed", outcome.output));
      Object.assign(record, { runtimeStatus: "Completed", output: outcome.output });
    } else if (outcome.kind === "failed") {
      const output = toJsonText(outcome.message);
      appended.push(events.executionCompleted(now, "Failed", output, outcome.failure));
      Object.assign(record, { runtimeStatus: "Failed", output, failure: outcome.failure });
    } else if (outcome.kind === "continuedAsNew") {
      appended.push(events.executionCompleted(now, "ContinuedAsNew", outcome.input));
      if (result.unconsumedEvents.length > 0) {
        this.log("info", `continueAsNew of '${before.instanceId}' dropped unconsumed events: ${result.unconsumedEvents.join(", ")}`);
      }
      continueAs = {
        ...record,
        runtimeStatus: "ContinuedAsNew",
        executionId: newExecutionId(),
        input: outcome.input,
        output: null,
        generation: before.generation + 1,
      };
    }
    const after = continueAs ?? record;
    const consumedIds = consumed.map((m) => m.id);
    // 1. append-then-mark: the history (with the consumed message ids) is the commit point.
    await this.store.appendEpisode({
      instanceId: before.instanceId,
      executionId: before.executionId,
      sequence: live.episodeSequence++,
      events: appended,
      consumedMessageIds: consumedIds,
      instanceAfter: after,
    });
    for (const id of consumedIds) live.consumed.add(id);
    live.record = after;
    live.history = continueAs ? [] : [...live.history, ...appended.map((e) => ({ ...e, IsPlayed: true }))];
    await this.store.putInstance(after);
    // 2. dispatch the work the replay decided (idempotent ids), unless the execution is over.
    if (outcome.kind === "running") await this.dispatchAll(before, result.newWork, now);
    if (outcome.kind === "completed" || outcome.kind === "failed") await this.notifyParent(after);
    if (continueAs) await this.deliver(this.startMessage(continueAs));
    // 3. mark the messages handled.
    await this.removeMessages(live, consumed);
    if (continueAs) {
      await this.store.deleteHistory(before.instanceId, before.executionId);
      // The old execution's messages are deleted and its ids can't recur (stale ones are dropped by execution id).
      live.consumed = new Set();
    }
    this.notify(after);
  }

  private async finishTerminated(live: LiveInstance, terminate: InboxMessage, consumed: InboxMessage[], now: Date): Promise<void> {
    const reason = (terminate.event.Input as string | null | undefined) ?? null;
    const output = toJsonText(reason);
    // DTFx turns ExecutionTerminated into ExecutionCompleted(Terminated) with the reason as result.
    const appended = [events.orchestratorStarted(now), { ...terminate.event, IsPlayed: false }, events.executionCompleted(now, "Terminated", output), events.orchestratorCompleted(now)];
    const after: InstanceRecord = { ...live.record, runtimeStatus: "Terminated", output, lastUpdatedTime: now.toISOString() };
    await this.store.appendEpisode({
      instanceId: after.instanceId,
      executionId: after.executionId,
      sequence: live.episodeSequence++,
      events: appended,
      consumedMessageIds: consumed.map((m) => m.id),
      instanceAfter: after,
    });
    for (const m of consumed) live.consumed.add(m.id);
    live.record = after;
    live.history = [...live.history, ...appended.map((e) => ({ ...e, IsPlayed: true }))];
    await this.store.putInstance(after);
    await this.notifyParent(after);
    for (const cancel of live.timerCancels.values()) cancel();
    live.timerCancels.clear();
    await this.removeMessages(live, live.inbox.slice());
    this.notify(after);
  }

  /** Delete handled messages; an activity's work item is done once its result message is handled. */
  private async removeMessages(live: LiveInstance, messages: InboxMessage[]): Promise<void> {
    if (messages.length === 0) return;
    const ids = new Set(messages.map((m) => m.id));
    await this.store.deleteMessages(live.record.instanceId, [...ids]);
    const finishedWork = [...ids].filter((id) => id.endsWith(":result") && id.includes(":task:")).map((id) => id.slice(0, -":result".length));
    if (finishedWork.length > 0) await this.store.deleteWorkItems(finishedWork);
    live.inbox = live.inbox.filter((m) => !ids.has(m.id));
    for (const id of ids) {
      live.timerCancels.get(id)?.();
      live.timerCancels.delete(id);
    }
  }

  /** Persist and start the episode's new work: writes in parallel chunks, activities enqueued in id order. */
  private async dispatchAll(record: InstanceRecord, work: NewWork[], now: Date): Promise<void> {
    const base = `${record.instanceId}:${record.executionId}`;
    const items: ActivityWorkItem[] = [];
    const timers: InboxMessage[] = [];
    for (const w of work) {
      if (w.kind === "activity") {
        items.push({ id: `${base}:task:${w.id}`, instanceId: record.instanceId, executionId: record.executionId, taskScheduledId: w.id, name: w.name, input: w.input });
      } else if (w.kind === "timer") {
        const fireAt = w.fireAt.toISOString();
        timers.push({
          id: `${base}:timer:${w.id}`,
          instanceId: record.instanceId,
          executionId: record.executionId,
          event: events.timerFired(w.fireAt, w.id, fireAt),
          enqueuedAt: now.toISOString(),
          fireAt,
        });
      }
    }
    if (items.length > 0) await this.store.putWorkItems(items);
    for (const item of items) this.enqueueActivity(item);
    await inChunks(timers, (timer) => this.deliver(timer));
    for (const w of work) if (w.kind === "subOrchestration") await this.startChild(record, w, now);
  }

  private async startChild(parent: InstanceRecord, work: Extract<NewWork, { kind: "subOrchestration" }>, now: Date): Promise<void> {
    const existing = this.live.get(work.instanceId);
    const parentRef: ParentRef = { instanceId: parent.instanceId, executionId: parent.executionId, taskScheduledId: work.id, name: parent.name };
    const earlier = existing?.record.parent;
    if (existing && earlier?.instanceId === parent.instanceId && earlier.executionId === parent.executionId && earlier.taskScheduledId === work.id) {
      // This very creation, dispatched again: the host died after persisting the child but before the
      // parent's episode was committed (DTFx commits both atomically, so the real host never sees it).
      // The child is the one the parent asked for: keep it, and answer the parent if it already ended.
      if (TERMINAL_STATUSES.has(existing.record.runtimeStatus)) await this.notifyParent(existing.record);
      return;
    }
    if (existing && !TERMINAL_STATUSES.has(existing.record.runtimeStatus)) {
      const reason = `An Orchestration instance with the status ${existing.record.runtimeStatus} already exists.`;
      await this.deliver(this.parentMessage(parentRef, events.subOrchestrationFailed(now, work.id, reason, ""), now));
      return;
    }
    await this.createInstance(work.name, work.instanceId, work.input, parentRef);
  }

  private parentMessage(parent: ParentRef, event: HistoryEvent, now: Date): InboxMessage {
    return {
      id: `${parent.instanceId}:${parent.executionId}:sub:${parent.taskScheduledId}:result`,
      instanceId: parent.instanceId,
      executionId: parent.executionId,
      event,
      enqueuedAt: now.toISOString(),
    };
  }

  private async notifyParent(child: InstanceRecord): Promise<void> {
    const parent = child.parent;
    if (!parent || !this.live.has(parent.instanceId)) return;
    const now = this.clock.now();
    let event: HistoryEvent;
    if (child.runtimeStatus === "Completed") {
      event = events.subOrchestrationCompleted(now, parent.taskScheduledId, child.output ?? "null");
    } else {
      // DTFx sends SubOrchestrationInstanceFailed for Failed and Terminated children, Reason = the child's
      // result. No FailureDetails: the extension runs DTFx in its default (serialized exception) mode.
      const reason = String(parseJsonText(child.output));
      const details = child.failure ? `${child.failure.ErrorType}: ${child.failure.ErrorMessage}${child.failure.StackTrace ? `\n${child.failure.StackTrace}` : ""}` : reason;
      event = events.subOrchestrationFailed(now, parent.taskScheduledId, reason, details);
    }
    await this.deliver(this.parentMessage(parent, event, now));
  }

  // ------------------------------------------------------------------ activities

  private enqueueActivity(item: ActivityWorkItem): void {
    if (this.activeWorkIds.has(item.id)) return;
    this.activeWorkIds.add(item.id);
    this.activityQueue.push(item);
    this.pumpActivities();
  }

  private pumpActivities(): void {
    while (!this.stopped && !this.recovering && this.runningActivities < this.maxConcurrentActivities && this.activityQueue.length > 0) {
      const item = this.activityQueue.shift()!;
      this.runningActivities++;
      const run = this.executeActivity(item)
        .catch((err) => {
          // The result could not be stored: run the activity again later (at-least-once, like the host).
          this.log("error", `activity work item ${item.id} failed to complete (retrying in ${this.retryAfterErrorMs} ms): ${(err as Error)?.stack ?? String(err)}`);
          this.retryLater(() => this.enqueueActivity(item));
        })
        .finally(() => {
          this.activeWorkIds.delete(item.id);
          this.runningActivities--;
          this.pumpActivities();
        });
      this.track(run);
    }
  }

  private async executeActivity(item: ActivityWorkItem): Promise<void> {
    const live = this.live.get(item.instanceId);
    if (!live || live.record.executionId !== item.executionId || TERMINAL_STATUSES.has(live.record.runtimeStatus)) {
      await this.store.deleteWorkItems([item.id]);
      return;
    }
    let event: HistoryEvent;
    try {
      const response = await this.invoker.invoke(this.registeredName(item.name, "activity"), item.input === null ? {} : { string: item.input });
      event = events.taskCompleted(this.clock.now(), item.taskScheduledId, toJsonText(decodeReturnValue(response.returnValue)));
    } catch (err) {
      const message = (err as Error)?.message ?? String(err);
      // The extension's Details carry the serialized exception; the JS SDK shows "<Reason> \n <Details>".
      event = events.taskFailed(this.clock.now(), item.taskScheduledId, `Activity function '${item.name}' failed: ${message}`, errorDetails(err));
    }
    const now = this.clock.now();
    // The work item is deleted by the episode that applies this result (recovery skips items whose result exists).
    await this.deliver({ id: `${item.id}:result`, instanceId: item.instanceId, executionId: item.executionId, event, enqueuedAt: now.toISOString() });
  }

  // ------------------------------------------------------------------ restart recovery

  private async recover(): Promise<void> {
    this.recovering = true;
    try {
      await this.rebuildFromStore();
    } finally {
      this.recovering = false;
    }
    for (const live of this.live.values()) this.schedule(live.record.instanceId);
    this.pumpActivities();
  }

  private async rebuildFromStore(): Promise<void> {
    // A finished instance needs no history to be recovered: it is read when someone asks for it.
    const snapshot = await this.store.loadAll({ skipHistoryOf: (record) => TERMINAL_STATUSES.has(record.runtimeStatus) });
    const historySkipped = new Set(snapshot.historySkipped ?? []);
    const episodesByInstance = new Map<string, typeof snapshot.episodes>();
    for (const e of snapshot.episodes) {
      const list = episodesByInstance.get(e.instanceId) ?? [];
      list.push(e);
      episodesByInstance.set(e.instanceId, list);
    }
    const recordsById = new Map(snapshot.instances.map((r) => [r.instanceId, r]));
    // An episode whose instance record was never written (crash) still defines the instance.
    for (const [instanceId, list] of episodesByInstance) if (!recordsById.has(instanceId)) recordsById.set(instanceId, list[list.length - 1].instanceAfter);
    for (const [instanceId, stored] of recordsById) {
      const list = (episodesByInstance.get(instanceId) ?? []).sort((a, b) => a.sequence - b.sequence);
      const last = list[list.length - 1];
      let record = stored;
      if (last && last.instanceAfter.lastUpdatedTime >= stored.lastUpdatedTime && last.instanceAfter.executionId !== undefined) {
        const sameState = last.instanceAfter.executionId === stored.executionId && last.instanceAfter.runtimeStatus === stored.runtimeStatus;
        if (!sameState) record = last.instanceAfter;
      }
      const consumed = new Set<string>();
      for (const e of list) for (const id of e.consumedMessageIds) consumed.add(id);
      const history = list.filter((e) => e.executionId === record.executionId).flatMap((e) => e.events.map((ev) => ({ ...ev, IsPlayed: true })));
      this.live.set(instanceId, {
        record,
        history,
        historyLoaded: !historySkipped.has(instanceId),
        consumed,
        episodeSequence: last ? last.sequence + 1 : 0,
        inbox: snapshot.inbox.filter((m) => m.instanceId === instanceId).sort((a, b) => a.enqueuedAt.localeCompare(b.enqueuedAt)),
        timerCancels: new Map(),
        running: false,
        rerun: false,
      });
      if (record !== stored) await this.store.putInstance(record);
      // Finish what a crash interrupted: drop messages already applied, then histories of past executions.
      const live = this.live.get(instanceId)!;
      const applied = live.inbox.filter((m) => consumed.has(m.id));
      if (applied.length > 0) await this.removeMessages(live, applied);
      for (const executionId of new Set(list.map((e) => e.executionId))) {
        if (executionId !== record.executionId) await this.store.deleteHistory(instanceId, executionId);
      }
    }
    const pendingResults = new Set(snapshot.inbox.map((m) => m.id));
    for (const item of snapshot.workItems) {
      const live = this.live.get(item.instanceId);
      if (!live || pendingResults.has(`${item.id}:result`) || live.consumed.has(`${item.id}:result`)) {
        await this.store.deleteWorkItems([item.id]);
        continue;
      }
      this.enqueueActivity(item);
    }
    for (const live of this.live.values()) await this.recoverDerivedWork(live, new Set(snapshot.workItems.map((w) => w.id)));
    for (const live of this.live.values()) for (const m of live.inbox) if (m.fireAt) this.armTimer(live, m);
  }

  /** Re-create work implied by the history but missing from the store (crash between steps). */
  private async recoverDerivedWork(live: LiveInstance, workItemIds: Set<string>): Promise<void> {
    const record = live.record;
    if (TERMINAL_STATUSES.has(record.runtimeStatus)) {
      const parent = record.parent ? this.live.get(record.parent.instanceId) : undefined;
      if (parent && record.parent && parent.record.executionId === record.parent.executionId && !TERMINAL_STATUSES.has(parent.record.runtimeStatus)) {
        const messageId = `${record.parent.instanceId}:${record.parent.executionId}:sub:${record.parent.taskScheduledId}:result`;
        if (!parent.consumed.has(messageId) && !parent.inbox.some((m) => m.id === messageId)) await this.notifyParent(record);
      }
      return;
    }
    const now = this.clock.now();
    const base = `${record.instanceId}:${record.executionId}`;
    const started = live.history.some((e) => e.EventType === EventType.ExecutionStarted);
    if (!started && !live.inbox.some((m) => m.event.EventType === EventType.ExecutionStarted && m.executionId === record.executionId)) {
      const start = this.startMessage(record);
      await this.store.putMessages(record.instanceId, [start]);
      live.inbox.push(start);
    }
    const done = new Set<number>();
    const inboxIds = new Set(live.inbox.map((m) => m.id));
    for (const e of [...live.history, ...live.inbox.filter((m) => m.executionId === record.executionId).map((m) => m.event)]) {
      if (typeof e.TaskScheduledId === "number") done.add(e.TaskScheduledId);
      if (typeof e.TimerId === "number") done.add(e.TimerId);
    }
    for (const e of live.history) {
      if (done.has(e.EventId)) continue;
      if (e.EventType === EventType.TaskScheduled) {
        const id = `${base}:task:${e.EventId}`;
        if (workItemIds.has(id) || inboxIds.has(`${id}:result`)) continue;
        const item: ActivityWorkItem = {
          id,
          instanceId: record.instanceId,
          executionId: record.executionId,
          taskScheduledId: e.EventId,
          name: String(e.Name),
          input: (e.Input as string | null) ?? null,
        };
        await this.store.putWorkItems([item]);
        this.enqueueActivity(item);
      } else if (e.EventType === EventType.TimerCreated) {
        const id = `${base}:timer:${e.EventId}`;
        if (inboxIds.has(id)) continue;
        const fireAt = String(e.FireAt);
        const message: InboxMessage = {
          id,
          instanceId: record.instanceId,
          executionId: record.executionId,
          event: events.timerFired(new Date(fireAt), e.EventId, fireAt),
          enqueuedAt: now.toISOString(),
          fireAt,
        };
        await this.store.putMessages(record.instanceId, [message]);
        live.inbox.push(message);
      } else if (e.EventType === EventType.SubOrchestrationInstanceCreated) {
        const childId = String(e.InstanceId);
        if (!this.live.has(childId)) {
          const parentRef: ParentRef = { instanceId: record.instanceId, executionId: record.executionId, taskScheduledId: e.EventId, name: record.name };
          await this.createInstance(String(e.Name), childId, (e.Input as string | null) ?? null, parentRef);
        }
      }
    }
  }
}

/** Run `write` over `values`, at most `width` at a time (stores are I/O bound). */
async function inChunks<T>(values: T[], write: (value: T) => Promise<void>, width = 32): Promise<void> {
  for (let i = 0; i < values.length; i += width) await Promise.all(values.slice(i, i + width).map(write));
}

function scheduledEvent(now: Date, work: NewWork): HistoryEvent {
  switch (work.kind) {
    case "activity":
      return events.taskScheduled(now, work.id, work.name, work.input);
    case "timer":
      return events.timerCreated(now, work.id, work.fireAt);
    case "subOrchestration":
      return events.subOrchestrationCreated(now, work.id, work.name, work.instanceId, work.input);
  }
}

function matches(record: InstanceRecord, query: StatusQuery): boolean {
  const created = Date.parse(record.createdTime);
  if (query.createdTimeFrom && created < query.createdTimeFrom.getTime()) return false;
  if (query.createdTimeTo && created > query.createdTimeTo.getTime()) return false;
  if (query.runtimeStatus && query.runtimeStatus.length > 0 && !query.runtimeStatus.includes(record.runtimeStatus)) return false;
  if (query.instanceIdPrefix && !record.instanceId.startsWith(query.instanceIdPrefix)) return false;
  return true;
}

export type { FailureDetails };

/** The extension's custom-status limit: 16 KB of UTF-16 JSON, counted in whole KB (MessagePayloadDataConverter). */
export const MAX_CUSTOM_STATUS_KB = 16;

/**
 * The error the extension raises for an oversized custom status, or undefined. It measures the JSON's
 * UTF-16 bytes (a JS string's length x 2) and truncates to whole KB, so up to 17,407 bytes pass.
 */
export function customStatusSizeError(state: { customStatus?: unknown } | undefined): string | undefined {
  if (!state || state.customStatus === undefined || state.customStatus === null) return undefined;
  const sizeKb = Math.floor((toJsonText(state.customStatus).length * 2) / 1024);
  if (sizeKb <= MAX_CUSTOM_STATUS_KB) return undefined;
  return `The UTF-16 size of the JSON-serialized payload must not exceed ${MAX_CUSTOM_STATUS_KB} KB. The current payload size is ${sizeKb} KB.`;
}

/** What the extension puts in a failure's Details: the exception with its stack (never empty). */
function errorDetails(err: unknown): string {
  if (err instanceof Error || (typeof err === "object" && err !== null && "message" in err)) {
    const e = err as Error;
    return e.stack && e.stack.length > 0 ? e.stack : `${e.name ?? "Error"}: ${e.message}`;
  }
  return String(err);
}
