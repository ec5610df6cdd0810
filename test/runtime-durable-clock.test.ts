import { RealClock, VirtualClock } from "../lib/runtime/clock";

describe("VirtualClock", () => {
  it("fires due timers in time then creation order, with now() set to each due time", async () => {
    const clock = new VirtualClock("2025-01-01T00:00:00Z");
    const fired: string[] = [];
    clock.setTimer(new Date("2025-01-01T00:00:02Z"), () => void fired.push(`b@${clock.now().toISOString()}`));
    clock.setTimer(new Date("2025-01-01T00:00:01Z"), () => void fired.push(`a@${clock.now().toISOString()}`));
    clock.setTimer(new Date("2025-01-01T00:00:02Z"), () => void fired.push("c"));
    const cancel = clock.setTimer(new Date("2025-01-01T00:00:01Z"), () => void fired.push("cancelled"));
    cancel();
    await clock.advance(1500);
    expect(fired).toEqual(["a@2025-01-01T00:00:01.000Z"]);
    expect(clock.now().toISOString()).toBe("2025-01-01T00:00:01.500Z");
    await clock.advanceTo(new Date("2025-01-01T00:00:05Z"));
    expect(fired).toEqual(["a@2025-01-01T00:00:01.000Z", "b@2025-01-01T00:00:02.000Z", "c"]);
  });

  it("fires timers created by a timer's reaction within the same advance, awaiting settle hooks", async () => {
    const clock = new VirtualClock(0);
    const fired: number[] = [];
    let pending: Promise<void> = Promise.resolve();
    clock.onSettle(() => pending);
    const chain = (n: number): void => {
      fired.push(clock.now().getTime());
      // The follow-up timer is created asynchronously, like an engine episode would.
      if (n > 0)
        pending = new Promise((resolve) =>
          setImmediate(() => {
            clock.setTimer(new Date(clock.now().getTime() + 1000), () => chain(n - 1));
            resolve();
          }),
        );
    };
    clock.setTimer(new Date(1000), () => chain(2));
    await clock.advance(10_000);
    expect(fired).toEqual([1000, 2000, 3000]);
  });

  it("rejects going backwards and invalid starts", async () => {
    const clock = new VirtualClock(1000);
    await expect(clock.advanceTo(new Date(0))).rejects.toThrow("is before now");
    await expect(clock.advance(-1)).rejects.toThrow("ms must be >= 0, got -1");
    expect(() => new VirtualClock("not a date")).toThrow("VirtualClock: invalid start time not a date");
  });
});

describe("RealClock", () => {
  it("fires at the requested time and can be cancelled", async () => {
    const clock = new RealClock();
    const started = Date.now();
    const fired = await new Promise<number>((resolve) => clock.setTimer(new Date(started + 30), () => resolve(Date.now())));
    expect(fired - started).toBeGreaterThanOrEqual(25);
    let cancelledFired = false;
    const cancel = clock.setTimer(new Date(Date.now() + 10), () => void (cancelledFired = true));
    cancel();
    await new Promise((r) => setTimeout(r, 30));
    expect(cancelledFired).toBe(false);
  });

  it("never fires before its clock reaches the due time (setTimeout may run early)", async () => {
    let lag = 5; // the clock reads 5 ms behind real time the first time the timer checks
    const clock = new RealClock({ nowMs: () => Date.now() - lag });
    const at = new Date(Date.now() + 10);
    const firedAt = await new Promise<number>((resolve) => clock.setTimer(at, () => resolve(clock.now().getTime())));
    expect(firedAt).toBeGreaterThanOrEqual(at.getTime());
    lag = 0;
  });
});
