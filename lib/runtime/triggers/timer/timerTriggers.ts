/**
 * Runs the app's `timerTrigger` functions on a `Clock` (real or virtual), like the host's
 * TimerListener: one invocation at a time per function, the next occurrence computed after each
 * invocation finishes (occurrences missed while a handler runs are skipped), status persisted after
 * each invocation so a restart can detect a missed occurrence (isPastDue).
 */
import type { Clock, CancelTimer } from "../../clock";
import type { FunctionRegistry } from "../../functionsCore";
import type { Invoker, TypedData } from "../../invoke";
import { triggerBinding, durableClientBindings } from "../../invoke";
import { resolveAppSettingExpression } from "../../settings";
import { decideStartup, parseTimerSchedule, timerPayload, type ScheduleStatus, type TimerSchedule } from "./schedule";
import type { TimerStatusStore } from "./statusStore";

/** Function-level retry (`retry` in TimerFunctionOptions), as registered in the metadata's retryOptions. */
export interface TimerRetryPolicy {
  strategy: "fixedDelay" | "exponentialBackoff";
  /** Retries after the first attempt; -1 = unlimited. */
  maxRetryCount: number;
  delayMs: number;
  minimumMs: number;
  maximumMs: number;
}

function durationMs(value: unknown): number {
  if (typeof value === "number") return value;
  if (value && typeof value === "object") {
    const d = value as { seconds?: number | string; nanos?: number };
    return Number(d.seconds ?? 0) * 1000 + Math.round((d.nanos ?? 0) / 1e6);
  }
  return 0;
}

/** Reads the registration's retryOptions (`{retryStrategy, maxRetryCount, delayInterval | minimumInterval + maximumInterval}`). */
export function parseRetryOptions(raw: unknown, functionName: string): TimerRetryPolicy | undefined {
  if (!raw || typeof raw !== "object") return undefined;
  const r = raw as Record<string, unknown>;
  const rawStrategy = r.retryStrategy ?? r.strategy ?? "";
  const strategy = typeof rawStrategy === "string" ? rawStrategy : "";
  if (strategy !== "fixedDelay" && strategy !== "exponentialBackoff") {
    throw new Error(`Timer function "${functionName}": retry.strategy: expected "fixedDelay" or "exponentialBackoff", got ${JSON.stringify(rawStrategy)}`);
  }
  const maxRetryCount = Number(r.maxRetryCount);
  if (!Number.isInteger(maxRetryCount) || maxRetryCount < -1) {
    throw new Error(`Timer function "${functionName}": retry.maxRetryCount: expected an integer >= -1, got ${JSON.stringify(r.maxRetryCount)}`);
  }
  return { strategy, maxRetryCount, delayMs: durationMs(r.delayInterval), minimumMs: durationMs(r.minimumInterval), maximumMs: durationMs(r.maximumInterval) };
}

/** Delay before retry number `retry` (1-based): fixed, or minimum doubled per retry up to the maximum. */
export function retryDelayMs(policy: TimerRetryPolicy, retry: number): number {
  if (policy.strategy === "fixedDelay") return policy.delayMs;
  return Math.min(policy.maximumMs, policy.minimumMs * 2 ** (retry - 1));
}

export interface TimerTriggerInfo {
  functionName: string;
  retry?: TimerRetryPolicy;
  schedule: TimerSchedule;
  runOnStartup: boolean;
  /** Whether status is persisted and past-due occurrences are detected (host: on for intervals >= 1 min). */
  useMonitor: boolean;
  durableClientInputs: string[];
}

export interface TimerTriggersOptions {
  registry: FunctionRegistry;
  invoker: Invoker;
  clock: Clock;
  store: TimerStatusStore;
  settings: Record<string, string | undefined>;
  clientBindingData?: () => unknown;
  onError?: (functionName: string, error: unknown) => void;
  onInvoked?: (functionName: string, isPastDue: boolean) => void;
}

/** Reads every timer registration (schedules resolved against `%setting%` expressions and parsed). */
export function collectTimerTriggers(registry: FunctionRegistry, settings: Record<string, string | undefined>): TimerTriggerInfo[] {
  const out: TimerTriggerInfo[] = [];
  for (const [name, fn] of registry.functions) {
    let trigger;
    try {
      trigger = triggerBinding(fn.metadata);
    } catch {
      continue;
    }
    if (trigger.type.toLowerCase() !== "timertrigger") continue;
    const binding = trigger.binding as { schedule?: unknown; runOnStartup?: unknown; useMonitor?: unknown };
    if (typeof binding.schedule !== "string") {
      throw new Error(`Timer function "${name}": schedule: expected a string, got ${typeof binding.schedule}`);
    }
    const expression = resolveAppSettingExpression(binding.schedule, settings, `${name}.schedule`);
    const timeZone = settings.WEBSITE_TIME_ZONE;
    const schedule = parseTimerSchedule(expression, name, { timeZone: timeZone && timeZone.includes("/") ? timeZone : undefined });
    const useMonitor = binding.useMonitor === undefined ? schedule.intervalNear(new Date()) >= 60_000 : binding.useMonitor === true;
    out.push({
      functionName: name,
      schedule,
      runOnStartup: binding.runOnStartup === true,
      useMonitor,
      durableClientInputs: durableClientBindings(fn.metadata),
      retry: parseRetryOptions(fn.metadata.retryOptions, name),
    });
  }
  return out;
}

export class TimerTriggers {
  readonly triggers: TimerTriggerInfo[];
  private readonly cancels = new Map<string, CancelTimer>();
  private readonly running = new Set<Promise<void>>();
  private readonly statuses = new Map<string, ScheduleStatus>();
  private stopped = false;

  constructor(private readonly options: TimerTriggersOptions) {
    this.triggers = collectTimerTriggers(options.registry, options.settings);
  }

  /** Runs startup decisions (past-due / runOnStartup invocations complete before this resolves) and arms timers. */
  async start(): Promise<void> {
    for (const trigger of this.triggers) {
      const now = this.options.clock.now();
      const recorded = trigger.useMonitor ? await this.options.store.get(trigger.functionName) : undefined;
      const decision = decideStartup(trigger.schedule, recorded, now, trigger.runOnStartup);
      this.statuses.set(trigger.functionName, decision.status);
      if (trigger.useMonitor && !recorded) await this.options.store.set(trigger.functionName, decision.status);
      if (decision.invokeNow) await this.track(this.fire(trigger, decision.occurrence, decision.isPastDue));
      else this.arm(trigger, new Date(decision.status.Next));
    }
  }

  /** The status a function's next invocation will see (for tests / diagnostics). */
  status(functionName: string): ScheduleStatus | undefined {
    const s = this.statuses.get(functionName);
    return s ? { ...s } : undefined;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const cancel of this.cancels.values()) cancel();
    this.cancels.clear();
    await Promise.allSettled([...this.running]);
  }

  private track(p: Promise<void>): Promise<void> {
    this.running.add(p);
    return p.finally(() => this.running.delete(p));
  }

  private arm(trigger: TimerTriggerInfo, at: Date): void {
    if (this.stopped) return;
    this.cancels.set(
      trigger.functionName,
      this.options.clock.setTimer(at, () => this.track(this.fire(trigger, at, false))),
    );
  }

  /**
   * One attempt of an occurrence. With a retry policy, a failed attempt arms a retry on the clock
   * (not awaited here: a VirtualClock fires it on a later advance) and the schedule resumes after the
   * last attempt, like the host's function-level retries.
   */
  private async fire(trigger: TimerTriggerInfo, occurrence: Date, isPastDue: boolean, attempt = 0): Promise<void> {
    if (this.stopped) return;
    this.cancels.delete(trigger.functionName);
    const shown = this.statuses.get(trigger.functionName);
    const extraInputs: Record<string, TypedData> = {};
    if (trigger.durableClientInputs.length > 0 && this.options.clientBindingData) {
      const payload = JSON.stringify(this.options.clientBindingData());
      for (const name of trigger.durableClientInputs) extraInputs[name] = { string: payload };
    }
    const retryContext = trigger.retry ? { retryCount: attempt, maxRetryCount: trigger.retry.maxRetryCount } : undefined;
    try {
      await this.options.invoker.invoke(trigger.functionName, { json: timerPayload(shown, isPastDue) }, extraInputs, retryContext ? { retryContext } : undefined);
      this.options.onInvoked?.(trigger.functionName, isPastDue);
    } catch (err) {
      // Like the host: a failed timer invocation is logged; the schedule continues.
      this.options.onError?.(trigger.functionName, err);
      const retry = trigger.retry;
      if (retry && !this.stopped && (retry.maxRetryCount === -1 || attempt < retry.maxRetryCount)) {
        const at = new Date(this.options.clock.now().getTime() + retryDelayMs(retry, attempt + 1));
        this.cancels.set(
          trigger.functionName,
          this.options.clock.setTimer(at, () => this.track(this.fire(trigger, occurrence, isPastDue, attempt + 1))),
        );
        return;
      }
    }
    const now = this.options.clock.now();
    const next = trigger.schedule.next(now);
    const status: ScheduleStatus = { Last: occurrence.toISOString(), Next: next.toISOString(), LastUpdated: now.toISOString() };
    this.statuses.set(trigger.functionName, status);
    if (trigger.useMonitor) {
      try {
        await this.options.store.set(trigger.functionName, status);
      } catch (err) {
        this.options.onError?.(trigger.functionName, err);
      }
    }
    this.arm(trigger, next);
  }
}
