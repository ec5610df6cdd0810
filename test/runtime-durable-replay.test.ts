import { events, HistoryEvent } from "../lib/runtime/durable/history";
import { nextRetryDelayMs, replayDotNetSide, OrchestratorStateWire, WireAction } from "../lib/runtime/durable/replay";

const T0 = Date.parse("2025-01-01T00:00:00.000Z");
const at = (ms: number): Date => new Date(T0 + ms);
const start = (): HistoryEvent[] => [events.orchestratorStarted(at(0)), events.executionStarted(at(0), { instanceId: "i", executionId: "e", name: "orch", input: null })];
const state = (actions: WireAction[], extra: Partial<OrchestratorStateWire> = {}): OrchestratorStateWire => ({ isDone: false, actions: [actions], schemaVersion: 2, ...extra });
const replay = (history: HistoryEvent[], s: OrchestratorStateWire) =>
  replayDotNetSide({ orchestrationName: "orch", instanceId: "i", executionId: "e", parentInstanceId: null, history, state: s, functionExists: () => true });

describe("RetryInterceptor delay (nextRetryDelayMs)", () => {
  it("grows by the backoff coefficient and is capped by maxRetryInterval", () => {
    const options = { firstRetryIntervalInMilliseconds: 1000, maxNumberOfAttempts: 5, backoffCoefficient: 2, maxRetryIntervalInMilliseconds: 3000 };
    expect([0, 1, 2, 3].map((attempt) => nextRetryDelayMs(options, attempt, T0, T0))).toEqual([1000, 2000, 3000, 3000]);
  });

  it("stops (0) once retryTimeout has passed since the first attempt", () => {
    const options = { firstRetryIntervalInMilliseconds: 1000, maxNumberOfAttempts: 5, retryTimeoutInMilliseconds: 5000 };
    expect(nextRetryDelayMs(options, 1, T0, T0 + 4999)).toBe(1000);
    expect(nextRetryDelayMs(options, 1, T0, T0 + 5000)).toBe(0);
  });

  it("defaults maxRetryInterval to 6 days", () => {
    const options = { firstRetryIntervalInMilliseconds: 24 * 3600_000, maxNumberOfAttempts: 10, backoffCoefficient: 10 };
    expect(nextRetryDelayMs(options, 3, T0, T0)).toBe(6 * 24 * 3600_000);
  });
});

describe(".NET-side replay emulation on hand-built histories", () => {
  it("a cancelled timer is still created but is not open, so the orchestration may complete", () => {
    const timer: WireAction = { actionType: 5, fireAt: at(3600_000).toISOString(), isCanceled: true };
    const result = replay(start(), state([timer], { isDone: true, output: "ok" }));
    expect(result.newWork).toEqual([{ kind: "timer", id: 0, fireAt: at(3600_000) }]);
    expect(result.openTaskIds).toEqual([]);
    expect(result.outcome).toEqual({ kind: "completed", output: '"ok"' });
  });

  it("a completion for an unscheduled id is ignored and the open task keeps the instance running", () => {
    const history = [...start(), events.taskScheduled(at(0), 0, "a", null), events.orchestratorCompleted(at(0)), events.orchestratorStarted(at(5)), events.taskCompleted(at(5), 7, "1")];
    const result = replay(history, state([{ actionType: 0, functionName: "a" }], { isDone: true, output: 1 }));
    expect(result.outcome).toEqual({ kind: "running" });
    expect(result.openTaskIds).toEqual([0]);
  });

  it("reports a timer that the code no longer creates as non-determinism", () => {
    const history = [...start(), events.timerCreated(at(0), 0, at(1000)), events.orchestratorCompleted(at(0))];
    const result = replay(history, state([{ actionType: 0, functionName: "a" }]));
    expect(result.outcome.kind).toBe("failed");
    expect((result.outcome as { message: string }).message).toBe(
      "Non-Deterministic workflow detected: A previous execution of this orchestration scheduled a timer task with sequence ID 0, but the current replay execution hasn't (yet?) scheduled this task (found activity 'a' instead). Was a change made to the orchestrator code after this instance had already started running?",
    );
  });

  it("WhenAny completes on the first child; WhenAll children are numbered in array order", () => {
    const all: WireAction = {
      actionType: 12,
      compoundActions: [
        { actionType: 0, functionName: "a" },
        { actionType: 0, functionName: "b" },
      ],
    };
    const any: WireAction = { actionType: 11, compoundActions: [all, { actionType: 5, fireAt: at(60_000).toISOString(), isCanceled: false }] };
    const result = replay(start(), state([any, { actionType: 0, functionName: "c" }]));
    expect(result.newWork.map((w) => [w.id, w.kind])).toEqual([
      [0, "activity"],
      [1, "activity"],
      [2, "timer"],
    ]);
    const history = [
      ...start(),
      events.taskScheduled(at(0), 0, "a", null),
      events.taskScheduled(at(0), 1, "b", null),
      events.timerCreated(at(0), 2, at(60_000)),
      events.orchestratorCompleted(at(0)),
      events.orchestratorStarted(at(60_000)),
      events.timerFired(at(60_000), 2, at(60_000).toISOString()),
    ];
    const next = replay(history, state([any, { actionType: 0, functionName: "c" }]));
    expect(next.newWork).toEqual([{ kind: "activity", id: 3, name: "c", input: null }]);
  });

  it("fails with the orchestrator's message only when the program has replayed every action", () => {
    const result = replay(start(), state([{ actionType: 0, functionName: "a" }], { isDone: true, error: "bad" }));
    expect(result.outcome).toEqual({ kind: "running" });
    const history = [
      ...start(),
      events.taskScheduled(at(0), 0, "a", null),
      events.orchestratorCompleted(at(0)),
      events.orchestratorStarted(at(1)),
      events.taskFailed(at(1), 0, "Activity function 'a' failed: x", ""),
    ];
    const failed = replay(history, state([{ actionType: 0, functionName: "a" }], { isDone: true, error: "bad" }));
    expect(failed.outcome).toMatchObject({ kind: "failed", message: "Orchestrator function 'orch' failed: bad" });
  });
});
