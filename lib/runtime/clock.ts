/** Time source for the runtime: real time by default, a virtual clock for tests. */

export type CancelTimer = () => void;

export interface Clock {
  now(): Date;
  /** Call `callback` once `at` is reached (immediately-ish if already past). Returns a canceller. */
  setTimer(at: Date, callback: () => void | Promise<void>): CancelTimer;
}

/** Node's setTimeout caps delays at 2^31-1 ms (~24.8 days); longer timers re-arm in steps. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

export class RealClock implements Clock {
  private readonly nowMs: () => number;

  /** `nowMs` is injectable for tests; it defaults to `Date.now`. */
  constructor(options: { nowMs?: () => number } = {}) {
    this.nowMs = options.nowMs ?? Date.now;
  }

  now(): Date {
    return new Date(this.nowMs());
  }

  /**
   * Never fires early: Node's setTimeout may run ~1 ms before the wall clock reaches the due time,
   * and a consumer that then asks "is it due?" would see "not yet" and never look again.
   */
  setTimer(at: Date, callback: () => void | Promise<void>): CancelTimer {
    let handle: NodeJS.Timeout | undefined;
    let cancelled = false;
    const arm = (): void => {
      const delay = at.getTime() - this.nowMs();
      if (delay > MAX_TIMEOUT_MS) {
        handle = setTimeout(arm, MAX_TIMEOUT_MS);
        return;
      }
      handle = setTimeout(
        () => {
          if (cancelled) return;
          if (this.nowMs() < at.getTime()) return arm();
          void Promise.resolve()
            .then(callback)
            .catch((err) => console.error("timer callback failed:", err));
        },
        Math.max(0, delay),
      );
    };
    arm();
    return () => {
      cancelled = true;
      if (handle) clearTimeout(handle);
    };
  }
}

interface VirtualTimer {
  at: number;
  seq: number;
  callback: () => void | Promise<void>;
}

/**
 * Time moves only when told to. `advance` fires due timers in (time, creation) order, setting
 * `now()` to each timer's due time first, awaiting the callback and then every registered settle
 * hook (e.g. an engine's `whenIdle`), so timers created by the reaction to one timer fire within the
 * same `advance` if they fall inside the window.
 */
export class VirtualClock implements Clock {
  private current: number;
  private timers: VirtualTimer[] = [];
  private sequence = 0;
  private settleHooks: Array<() => Promise<void>> = [];

  constructor(start: Date | string | number = "2025-01-01T00:00:00.000Z") {
    this.current = new Date(start).getTime();
    if (Number.isNaN(this.current)) throw new RangeError(`VirtualClock: invalid start time ${String(start)}`);
  }

  now(): Date {
    return new Date(this.current);
  }

  setTimer(at: Date, callback: () => void | Promise<void>): CancelTimer {
    const timer: VirtualTimer = { at: at.getTime(), seq: this.sequence++, callback };
    this.timers.push(timer);
    return () => {
      const index = this.timers.indexOf(timer);
      if (index >= 0) this.timers.splice(index, 1);
    };
  }

  /** Register work to await after each fired timer (returns an unregister function). */
  onSettle(hook: () => Promise<void>): () => void {
    this.settleHooks.push(hook);
    return () => {
      this.settleHooks = this.settleHooks.filter((h) => h !== hook);
    };
  }

  /** Number of armed timers and the earliest due time (for tests and diagnostics). */
  pendingTimers(): { count: number; next?: Date } {
    const next = this.earliest();
    return { count: this.timers.length, next: next ? new Date(next.at) : undefined };
  }

  async advance(ms: number): Promise<void> {
    if (!(ms >= 0)) throw new RangeError(`VirtualClock.advance: ms must be >= 0, got ${ms}`);
    await this.advanceTo(new Date(this.current + ms));
  }

  async advanceTo(target: Date): Promise<void> {
    const targetMs = target.getTime();
    if (targetMs < this.current) throw new RangeError(`VirtualClock.advanceTo: ${target.toISOString()} is before now (${this.now().toISOString()})`);
    await this.settle();
    for (let timer = this.earliest(); timer && timer.at <= targetMs; timer = this.earliest()) {
      this.current = Math.max(this.current, timer.at);
      await this.fire(timer);
    }
    this.current = targetMs;
    await this.settle();
  }

  /** Fire timers already due at the current time. */
  async runDueTimers(): Promise<number> {
    let fired = 0;
    for (let timer = this.earliest(); timer && timer.at <= this.current; timer = this.earliest()) {
      await this.fire(timer);
      fired++;
    }
    return fired;
  }

  private async fire(timer: VirtualTimer): Promise<void> {
    this.timers.splice(this.timers.indexOf(timer), 1);
    await timer.callback();
    await this.settle();
  }

  private async settle(): Promise<void> {
    for (const hook of [...this.settleHooks]) await hook();
  }

  private earliest(): VirtualTimer | undefined {
    let best: VirtualTimer | undefined;
    for (const t of this.timers) if (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq)) best = t;
    return best;
  }
}
