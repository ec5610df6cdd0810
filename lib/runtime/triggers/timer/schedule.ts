/**
 * Timer trigger schedules as the Functions host accepts them: six-field NCRONTAB
 * `{second} {minute} {hour} {day} {month} {day-of-week}` (five fields = seconds 0), or a constant
 * TimeSpan interval `hh:mm:ss` / `d.hh:mm:ss`. Parsing and next-occurrence math use `cron-parser`.
 * Pure logic.
 */
import { CronExpressionParser } from "cron-parser";

/** A timer schedule that cannot be parsed. */
export class TimerScheduleError extends Error {
  constructor(
    readonly functionName: string,
    readonly schedule: string,
    reason: string,
  ) {
    super(`Timer function "${functionName}": schedule ${JSON.stringify(schedule)} is invalid: ${reason}`);
    this.name = "TimerScheduleError";
  }
}

export interface TimerSchedule {
  readonly expression: string;
  readonly kind: "cron" | "interval";
  /** First occurrence strictly after `after`. */
  next(after: Date): Date;
  /** Smallest gap between two occurrences near `from` (the host turns the monitor off below 1 minute). */
  intervalNear(from: Date): number;
}

const TIMESPAN = /^(?:(\d+)\.)?(\d{1,2}):(\d{2}):(\d{2})$/;

export function parseTimerSchedule(expression: string, functionName: string, options: { timeZone?: string } = {}): TimerSchedule {
  const text = expression.trim();
  const span = TIMESPAN.exec(text);
  if (span) {
    const ms = (((Number(span[1] ?? 0) * 24 + Number(span[2])) * 60 + Number(span[3])) * 60 + Number(span[4])) * 1000;
    if (ms <= 0) throw new TimerScheduleError(functionName, expression, "interval must be positive");
    return {
      expression: text,
      kind: "interval",
      next: (after) => new Date(after.getTime() + ms),
      intervalNear: () => ms,
    };
  }
  const fields = text.split(/\s+/);
  if (fields.length !== 5 && fields.length !== 6) {
    throw new TimerScheduleError(functionName, expression, `expected 6 NCRONTAB fields "{second} {minute} {hour} {day} {month} {day-of-week}", got ${fields.length}`);
  }
  const six = fields.length === 5 ? `0 ${text}` : text;
  const tz = options.timeZone ?? "UTC";
  try {
    CronExpressionParser.parse(six, { tz, currentDate: new Date(0) }).next();
  } catch (err) {
    throw new TimerScheduleError(functionName, expression, (err as Error).message);
  }
  const next = (after: Date): Date => CronExpressionParser.parse(six, { tz, currentDate: after }).next().toDate();
  return {
    expression: six,
    kind: "cron",
    next,
    intervalNear(from) {
      const a = next(from);
      const b = next(a);
      return b.getTime() - a.getTime();
    },
  };
}

/** The persisted schedule status, same fields as the host's `ScheduleStatus` blob. */
export interface ScheduleStatus {
  Last: string;
  Next: string;
  LastUpdated: string;
}

/** .NET `default(DateTime)` as the host writes it when nothing has fired yet. */
export const NEVER = "0001-01-01T00:00:00.000Z";

/** The json TypedData payload of one timer invocation (the worker camel-cases it for the handler). */
export function timerPayload(status: ScheduleStatus | undefined, isPastDue: boolean, adjustForDST = true): string {
  return JSON.stringify({ Schedule: { AdjustForDST: adjustForDST }, ScheduleStatus: status ?? null, IsPastDue: isPastDue });
}

export interface StartupDecision {
  /** Invoke immediately? */
  invokeNow: boolean;
  isPastDue: boolean;
  /** The occurrence the startup invocation stands for (recorded as Last). */
  occurrence: Date;
  /** Status to show the handler / persist before the first scheduled occurrence. */
  status: ScheduleStatus;
}

/**
 * What the host does when a timer listener starts (TimerListener.StartAsync + ScheduleMonitor):
 * a recorded `Next` that has already passed means the host was down at that occurrence, so it fires
 * ONCE with isPastDue = true (missed occurrences are not replayed one by one); otherwise
 * `runOnStartup` fires once with isPastDue = false.
 */
export function decideStartup(schedule: TimerSchedule, recorded: ScheduleStatus | undefined, now: Date, runOnStartup: boolean): StartupDecision {
  if (recorded && Date.parse(recorded.Next) < now.getTime()) {
    return { invokeNow: true, isPastDue: true, occurrence: new Date(recorded.Next), status: recorded };
  }
  const status = recorded ?? { Last: NEVER, Next: schedule.next(now).toISOString(), LastUpdated: now.toISOString() };
  return { invokeNow: runOnStartup, isPastDue: false, occurrence: now, status };
}
