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

export interface TimerTriggerInfo {
  functionName: string;
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
    out.push({ functionName: name, schedule, runOnStartup: binding.runOnStartup === true, useMonitor, durableClientInputs: durableClientBindings(fn.metadata) });
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
    this.cancels.set(trigger.functionName, this.options.clock.setTimer(at, () => this.track(this.fire(trigger, at, false))));
  }

  private async fire(trigger: TimerTriggerInfo, occurrence: Date, isPastDue: boolean): Promise<void> {
    if (this.stopped) return;
    this.cancels.delete(trigger.functionName);
    const shown = this.statuses.get(trigger.functionName);
    const extraInputs: Record<string, TypedData> = {};
    if (trigger.durableClientInputs.length > 0 && this.options.clientBindingData) {
      const payload = JSON.stringify(this.options.clientBindingData());
      for (const name of trigger.durableClientInputs) extraInputs[name] = { string: payload };
    }
    try {
      await this.options.invoker.invoke(trigger.functionName, { json: timerPayload(shown, isPastDue) }, extraInputs);
      this.options.onInvoked?.(trigger.functionName, isPastDue);
    } catch (err) {
      // Like the host: a failed timer invocation is logged; the schedule continues.
      this.options.onError?.(trigger.functionName, err);
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
