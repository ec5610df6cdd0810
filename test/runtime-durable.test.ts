import * as path from "path";
import { loadFunctionsApp, FunctionRegistry } from "../lib/runtime/functionsCore";
import { createInvoker } from "../lib/runtime/invoke";
import { VirtualClock } from "../lib/runtime/clock";
import { DurableEngine } from "../lib/runtime/durable/engine";
import { EventType, HistoryEvent } from "../lib/runtime/durable/history";
import { InstanceFinishedError, InstanceNotFoundError, OrchestratorNotFoundError } from "../lib/runtime/durable/errors";

const appPath = path.join(__dirname, "apps", "durable-semantics", "index.js");
const T0 = Date.parse("2025-01-01T00:00:00.000Z");
let registry: FunctionRegistry;
let control: { variant: string; flakyFailures: Map<string, number> };

beforeAll(() => {
  registry = loadFunctionsApp(appPath);
  control = (registry.appExports as { control: typeof control }).control;
});

async function setup(): Promise<{ engine: DurableEngine; clock: VirtualClock }> {
  const clock = new VirtualClock(T0);
  const engine = await DurableEngine.start({ invoker: createInvoker(registry), clock });
  return { engine, clock };
}

async function run(engine: DurableEngine, name: string, input?: unknown, instanceId?: string): Promise<string> {
  const id = await engine.startNew(name, { input, instanceId });
  await engine.whenIdle();
  return id;
}

const ofType = (history: HistoryEvent[], type: EventType): HistoryEvent[] => history.filter((e) => e.EventType === type);
const offsetsMs = (list: HistoryEvent[], field: string): number[] => list.map((e) => Date.parse(String(e[field])) - T0);

describe("durable engine: basics", () => {
  it("runs a chain of activities through the real SDK", async () => {
    const { engine } = await setup();
    const id = await run(engine, "chain", 3);
    const status = engine.getStatus(id)!;
    expect(status.runtimeStatus).toBe("Completed");
    expect(status.output).toEqual({ a: 6, b: 12 });
    expect(status.input).toBe(3);
    const history = engine.history(id);
    expect(ofType(history, EventType.TaskScheduled).map((e) => e.EventId)).toEqual([0, 1]);
    expect(ofType(history, EventType.ExecutionCompleted)[0].Result).toBe('{"a":6,"b":12}');
  });

  it("fans out and in over 50 activities", async () => {
    const { engine } = await setup();
    const id = await run(engine, "fanOut", 50);
    expect(engine.getStatus(id)!.output).toBe(2 * ((49 * 50) / 2));
    expect(ofType(engine.history(id), EventType.TaskCompleted)).toHaveLength(50);
  });

  it("delivers activity inputs like the host (strings stay strings, objects stay objects)", async () => {
    const { engine } = await setup();
    const id = await run(engine, "inputKinds");
    expect(engine.getStatus(id)!.output).toEqual(["abc", "123", 7, { k: "v" }]);
  });

  it("rejects unknown orchestrators and duplicate running ids with specific errors", async () => {
    const { engine } = await setup();
    await expect(engine.startNew("nope")).rejects.toBeInstanceOf(OrchestratorNotFoundError);
    await run(engine, "waitsForever", undefined, "dup");
    await expect(engine.startNew("waitsForever", { instanceId: "dup" })).rejects.toThrow("An orchestration instance with id 'dup' already exists with status Running");
    await expect(engine.raiseEvent("missing", "x")).rejects.toBeInstanceOf(InstanceNotFoundError);
  });
});

describe("durable engine: .NET-side semantics", () => {
  it("WhenAll is not fail-fast: the next action is scheduled only after all siblings finish", async () => {
    const { engine, clock } = await setup();
    const id = await run(engine, "allNotFailFast");
    // JS already caught the failure and yielded "echo", but the host is still awaiting the sibling.
    expect(engine.getStatus(id)!.runtimeStatus).toBe("Running");
    expect(ofType(engine.history(id), EventType.TaskFailed)).toHaveLength(1);
    expect(ofType(engine.history(id), EventType.TaskScheduled).map((e) => e.Name)).toEqual(["fails"]);
    await clock.advance(60_000);
    const status = engine.getStatus(id)!;
    expect(status.runtimeStatus).toBe("Completed");
    expect(status.output).toMatch(/^caught \(after\): Activity function 'fails' failed: boom x/);
    const echo = ofType(engine.history(id), EventType.TaskScheduled).find((e) => e.Name === "echo")!;
    expect(echo.EventId).toBe(2);
    expect(Date.parse(echo.Timestamp)).toBe(T0 + 60_000);
  });

  it("assigns the extension's id sequence to the reference example (fan-out, retry after one failure, cancelled deadline, activity)", async () => {
    const { engine, clock } = await setup();
    control.flakyFailures.set("fl-key", 1);
    const id = await run(engine, "flShaped", "fl-key");
    expect(offsetsMs(ofType(engine.history(id), EventType.TimerCreated), "FireAt")).toEqual([5000]);
    await clock.advance(5000);
    for (const s of ["a", "b", "c"]) await engine.raiseEvent(id, `ack-${s}`, s.toUpperCase());
    await engine.whenIdle();
    expect(engine.getStatus(id)!).toMatchObject({
      runtimeStatus: "Completed",
      output: { updates: ["a", "b", "c"], aggregated: "ok fl-key", acks: ["A", "B", "C"], after: 42 },
    });
    const history = engine.history(id);
    expect(ofType(history, EventType.TaskScheduled).map((e) => e.EventId)).toEqual([0, 1, 2, 3, 5, 7]);
    expect(ofType(history, EventType.TimerCreated).map((e) => e.EventId)).toEqual([4, 6]);
    expect(ofType(history, EventType.TaskFailed).map((e) => e.TaskScheduledId)).toEqual([3]);
  });

  it("reproduces durable-js #574: a timer re-yielded in a Task.any loop becomes a new timer per iteration", async () => {
    const { engine, clock } = await setup();
    const id = await run(engine, "timerReusedInAnyLoop");
    for (const n of ["a", "b", "c"]) {
      await engine.raiseEvent(id, `ack-${n}`, n);
      await engine.whenIdle();
    }
    const history = engine.history(id);
    expect(ofType(history, EventType.TimerCreated).map((e) => e.EventId)).toEqual([0, 1, 2]);
    expect(ofType(history, EventType.TaskScheduled).map((e) => [e.EventId, e.Name])).toEqual([[3, "noop"]]);
    expect(engine.getStatus(id)!.runtimeStatus).toBe("Running");
    await clock.advance(3600_000);
    const status = engine.getStatus(id)!;
    expect(status.runtimeStatus).toBe("Completed");
    // TimerFired(1) completed JS's noop task (id 1): the wrong task's result, as production does.
    expect(status.output).toEqual({ got: 3 });
  });

  it("the safe Task.any([Task.all(events), timer]) form completes at once with the activity result", async () => {
    const { engine } = await setup();
    const id = await run(engine, "quorumSafe");
    for (const n of ["a", "b", "c"]) await engine.raiseEvent(id, `ack-${n}`, n);
    await engine.whenIdle();
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Completed", output: { got: 3, after: 42 } });
    const timer = ofType(engine.history(id), EventType.TimerCreated);
    expect(timer.map((e) => e.EventId)).toEqual([0]);
  });

  it("an un-cancelled timer keeps the instance Running until it fires; a cancelled one does not", async () => {
    const { engine, clock } = await setup();
    const open = await run(engine, "eventOrTimer", { cancel: false });
    const cancelled = await run(engine, "eventOrTimer", { cancel: true });
    await engine.raiseEvent(open, "go", 1);
    await engine.raiseEvent(cancelled, "go", 2);
    await engine.whenIdle();
    expect(engine.getStatus(cancelled)!).toMatchObject({ runtimeStatus: "Completed", output: "event 2" });
    expect(engine.getStatus(open)!.runtimeStatus).toBe("Running");
    await clock.advance(3600_000 - 1);
    expect(engine.getStatus(open)!.runtimeStatus).toBe("Running");
    await clock.advance(1);
    expect(engine.getStatus(open)!).toMatchObject({ runtimeStatus: "Completed", output: "event 1" });
  });

  it("continueAsNew starts a new execution and drops delivered-but-unconsumed events", async () => {
    const { engine, clock } = await setup();
    const id = await run(engine, "rounds", { round: 1 });
    const firstExecution = (ofType(engine.history(id), EventType.ExecutionStarted)[0].OrchestrationInstance as { ExecutionId: string }).ExecutionId;
    await engine.raiseEvent(id, "go2", "early");
    await engine.whenIdle();
    await engine.raiseEvent(id, "go1", "start");
    await engine.whenIdle();
    const started = ofType(engine.history(id), EventType.ExecutionStarted)[0];
    expect((started.OrchestrationInstance as { ExecutionId: string }).ExecutionId).not.toBe(firstExecution);
    expect(JSON.parse(String(started.Input))).toEqual({ round: 2, go: "start" });
    expect(ofType(engine.history(id), EventType.EventRaised)).toHaveLength(0);
    await clock.advance(60_000);
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Completed", output: "round 2 timed out" });
  });

  it("discards a stale timer of the previous execution after continueAsNew", async () => {
    const { engine, clock } = await setup();
    const id = await run(engine, "staleTimer");
    await engine.raiseEvent(id, "go");
    await engine.whenIdle();
    expect(ofType(engine.history(id), EventType.ExecutionStarted)[0].Input).toBe("2");
    await clock.advance(3600_000); // the cancelled round-1 timer fires now, carrying id 0 like round 2's timer
    expect(engine.getStatus(id)!.runtimeStatus).toBe("Running");
    expect(ofType(engine.history(id), EventType.TimerFired)).toHaveLength(0);
    await clock.advance(3600_000);
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Completed", output: "round 2 waited 2 h" });
  });

  it("continueAsNew with a string: the next input is the SDK's pre-stringified text, as the host stores the token", async () => {
    const { engine } = await setup();
    const id = await run(engine, "canString");
    expect(engine.getStatus(id)!.output).toEqual({ input: '"abc"' });
  });

  it("events raised after continueAsNew reach the new execution", async () => {
    const { engine } = await setup();
    const id = await run(engine, "rounds", { round: 1 });
    await engine.raiseEvent(id, "go1", 1);
    await engine.whenIdle();
    await engine.raiseEvent(id, "go2", "late");
    await engine.whenIdle();
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Completed", output: "round 2 got late" });
  });

  it("exhausted retries: timers at +1 s, +2 s, +3 s after the start, then the error", async () => {
    const { engine, clock } = await setup();
    const id = await run(engine, "retryExhausted");
    await clock.advance(2_999);
    expect(engine.getStatus(id)!.runtimeStatus).toBe("Running");
    await clock.advance(1);
    const status = engine.getStatus(id)!;
    expect(status.runtimeStatus).toBe("Failed");
    expect(status.output).toMatch(/^Orchestrator function 'retryExhausted' failed: Activity function 'alwaysFails' failed: permanent/);
    const history = engine.history(id);
    expect(offsetsMs(ofType(history, EventType.TimerCreated), "FireAt")).toEqual([1000, 2000, 3000]);
    expect(ofType(history, EventType.TaskScheduled).map((e) => e.EventId)).toEqual([0, 2, 4]);
    expect(ofType(history, EventType.TimerCreated).map((e) => e.EventId)).toEqual([1, 3, 5]);
  });

  it("retries with backoff capped by maxRetryInterval, then continues with the next id", async () => {
    const { engine, clock } = await setup();
    control.flakyFailures.set("k1", 3);
    const id = await run(engine, "retryFlaky", "k1");
    await clock.advance(60_000);
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Completed", output: { result: "ok k1", after: 42 } });
    const history = engine.history(id);
    // delays 1 s, 2 s, then 4 s capped to 3 s: fire at +1, +3, +6 s.
    expect(offsetsMs(ofType(history, EventType.TimerCreated), "FireAt")).toEqual([1000, 3000, 6000]);
    expect(ofType(history, EventType.TaskScheduled).map((e) => [e.EventId, e.Name])).toEqual([
      [0, "flaky"],
      [2, "flaky"],
      [4, "flaky"],
      [6, "flaky"],
      [7, "noop"],
    ]);
  });

  it("retries sub-orchestrations on the host with the same child id", async () => {
    const { engine, clock } = await setup();
    const id = await run(engine, "subRetry");
    await clock.advance(20_000);
    const status = engine.getStatus(id)!;
    expect(status.runtimeStatus).toBe("Failed");
    expect(status.output).toContain("Orchestrator function 'retryExhausted' failed: Activity function 'alwaysFails' failed: permanent");
    const created = ofType(engine.history(id), EventType.SubOrchestrationInstanceCreated);
    expect(created.map((e) => [e.EventId, e.InstanceId])).toEqual([
      [0, "retry-child"],
      [2, "retry-child"],
    ]);
    expect(offsetsMs(ofType(engine.history(id), EventType.TimerCreated), "FireAt")).toEqual([3500, 7000]); // child fails at +3 s, retry +0.5 s; second child fails at +6.5 s, +0.5 s
  });

  it("splits a 10-day timer into 3 d + 3 d + 3 d + 1 d", async () => {
    const { engine, clock } = await setup();
    const id = await run(engine, "longTimer");
    await clock.advance(10 * 24 * 3600_000);
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Completed", output: "woke" });
    const day = 24 * 3600_000;
    expect(offsetsMs(ofType(engine.history(id), EventType.TimerCreated), "FireAt")).toEqual([3 * day, 6 * day, 9 * day, 10 * day]);
  });

  it("detects non-determinism with the host's message", async () => {
    const { engine } = await setup();
    control.variant = "noop";
    const id = await run(engine, "codeChanges");
    control.variant = "echo";
    try {
      await engine.raiseEvent(id, "go");
      await engine.whenIdle();
    } finally {
      control.variant = "noop";
    }
    const status = engine.getStatus(id)!;
    expect(status.runtimeStatus).toBe("Failed");
    expect(status.output).toBe(
      "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled a activity task with sequence ID 0 and name 'noop', but the current replay execution hasn't (yet?) scheduled this task (found activity 'echo' instead). Was a change made to the orchestrator code after this instance had already started running?",
    );
  });

  it("fails on an unknown activity with the host's message", async () => {
    const { engine } = await setup();
    const id = await run(engine, "unknownActivity");
    expect(engine.getStatus(id)!).toMatchObject({
      runtimeStatus: "Failed",
      output: "Orchestrator function 'unknownActivity' failed: The function 'doesNotExist' doesn't exist, is disabled, or is not an activity function.",
    });
  });

  it("fails on an unknown sub-orchestrator with the host's message", async () => {
    const { engine } = await setup();
    const id = await run(engine, "unknownSub");
    expect(engine.getStatus(id)!).toMatchObject({
      runtimeStatus: "Failed",
      output: "Orchestrator function 'unknownSub' failed: The function 'noSuchOrchestrator' doesn't exist, is disabled, or is not an orchestrator function.",
    });
  });

  it("fails with the orchestrator's own error message", async () => {
    const { engine } = await setup();
    const id = await run(engine, "throws");
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Failed", output: "Orchestrator function 'throws' failed: orchestrator bug" });
    expect(ofType(engine.history(id), EventType.ExecutionCompleted)[0].OrchestrationStatus).toBe("Failed");
  });

  it("fails an orchestration that calls an entity with a clear message", async () => {
    const { engine } = await setup();
    const id = await run(engine, "usesEntity");
    expect(engine.getStatus(id)!.runtimeStatus).toBe("Failed");
    expect(engine.getStatus(id)!.output).toContain("Durable entities are not supported by flo's local runtime");
  });

  it("runs sub-orchestrations with explicit and default (<executionId>:<taskId>) ids", async () => {
    const { engine } = await setup();
    const id = await run(engine, "parent", undefined, "p-1");
    const status = engine.getStatus(id)!;
    expect(status.runtimeStatus).toBe("Completed");
    const output = status.output as { explicit: Record<string, unknown>; byDefault: Record<string, unknown> };
    expect(output.explicit).toEqual({ from: "explicit-child", doubled: 10, parent: "p-1" });
    const executionId = (ofType(engine.history(id), EventType.ExecutionStarted)[0].OrchestrationInstance as { ExecutionId: string }).ExecutionId;
    expect(output.byDefault).toEqual({ from: `${executionId}:1`, doubled: 14, parent: "p-1" });
    expect(engine.getStatus("explicit-child")!.runtimeStatus).toBe("Completed");
  });

  it("a terminated sub-orchestration fails the parent's task with the reason", async () => {
    const { engine } = await setup();
    const id = await run(engine, "parentOfWaiter");
    await engine.terminate("waiter-child", "stop it");
    await engine.whenIdle();
    expect(engine.getStatus("waiter-child")!).toMatchObject({ runtimeStatus: "Terminated", output: "stop it" });
    expect(engine.getStatus(id)!.runtimeStatus).toBe("Completed");
    expect(engine.getStatus(id)!.output).toMatch(/^child failed: stop it/);
  });

  it("bounds concurrently running activities (maxConcurrentActivities)", async () => {
    const clock = new VirtualClock(T0);
    const engine = await DurableEngine.start({ invoker: createInvoker(registry), clock, maxConcurrentActivities: 3 });
    const probe = (control as unknown as { concurrency: { running: number; max: number } }).concurrency;
    probe.max = 0;
    const id = await run(engine, "probeFanOut", 12);
    expect(engine.getStatus(id)!.output).toBe(12);
    expect(probe.max).toBe(3);
  });

  it("buffers early events FIFO and gives an event to the newest waiter", async () => {
    const { engine } = await setup();
    const fifo = await engine.startNew("twoEvents");
    await engine.raiseEvent(fifo, "x", 1);
    await engine.raiseEvent(fifo, "x", 2);
    const stack = await run(engine, "twoWaitersOneName");
    await engine.raiseEvent(stack, "y", 1);
    await engine.whenIdle();
    await engine.raiseEvent(stack, "y", 2);
    await engine.whenIdle();
    expect(engine.getStatus(fifo)!.output).toEqual([1, 2]);
    expect(engine.getStatus(stack)!.output).toEqual([2, 1]);
  });

  it("terminates (output = reason), then treats raiseEvent/terminate as finished; custom status is kept", async () => {
    const { engine } = await setup();
    const id = await run(engine, "waitsForever");
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Running", customStatus: { stage: "waiting" } });
    await engine.terminate(id, "bye");
    await engine.whenIdle();
    expect(engine.getStatus(id)!).toMatchObject({ runtimeStatus: "Terminated", output: "bye", customStatus: { stage: "waiting" } });
    const completed = ofType(engine.history(id), EventType.ExecutionCompleted);
    expect(completed.map((e) => [e.OrchestrationStatus, e.Result])).toEqual([["Terminated", '"bye"']]);
    await expect(engine.raiseEvent(id, "never")).rejects.toBeInstanceOf(InstanceFinishedError);
    await expect(engine.terminate(id, "again")).rejects.toBeInstanceOf(InstanceFinishedError);
  });

  it("purges single instances and by filter", async () => {
    const { engine } = await setup();
    const a = await run(engine, "chain", 1, "purge-a");
    await run(engine, "chain", 2, "purge-b");
    await run(engine, "waitsForever", undefined, "purge-c");
    expect(await engine.purge(a)).toBe(1);
    expect(engine.getStatus(a)).toBeUndefined();
    expect(await engine.purge(a)).toBe(0);
    expect(await engine.purgeBy({ runtimeStatus: ["Completed"] })).toBe(1);
    expect(engine.list().map((s) => s.instanceId)).toEqual(["purge-c"]);
  });

  it("fires timers on the real clock", async () => {
    const engine = await DurableEngine.start({ invoker: createInvoker(registry) });
    const started = Date.now();
    const id = await engine.startNew("sleeper", { input: 0.05 });
    await expect(engine.waitForStatus(id, (s) => s.runtimeStatus === "Completed", { timeoutMs: 5000 })).resolves.toMatchObject({ output: "slept 0.05" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    await engine.stop();
  });

  it("waitForStatus resolves on the matching transition and times out with a specific error", async () => {
    const { engine, clock } = await setup();
    const id = await run(engine, "sleeper", 5);
    const done = engine.waitForStatus(id, (s) => s.runtimeStatus === "Completed");
    await clock.advance(5_000);
    await expect(done).resolves.toMatchObject({ output: "slept 5" });
    await expect(engine.waitForStatus("nobody", () => true, { timeoutMs: 20 })).rejects.toThrow("Timed out after 20 ms waiting for instance 'nobody' (last status: not found)");
  });
});
