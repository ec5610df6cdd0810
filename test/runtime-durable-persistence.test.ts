import * as path from "path";
import { loadFunctionsApp, FunctionRegistry } from "../lib/runtime/functionsCore";
import { createInvoker } from "../lib/runtime/invoke";
import { VirtualClock } from "../lib/runtime/clock";
import { DurableEngine } from "../lib/runtime/durable/engine";
import { EventType, HistoryEvent } from "../lib/runtime/durable/history";
import { DurableStore, InMemoryDurableStore } from "../lib/runtime/durable/store";
import { AzuriteDurableStore } from "../lib/runtime/durable/azuriteStore";
import { startAzurite, AzuriteHandle } from "../lib/storage/azurite";

const appPath = path.join(__dirname, "apps", "durable-semantics", "index.js");
const T0 = Date.parse("2025-01-01T00:00:00.000Z");
const silentLogger = (): void => {};

class SimulatedCrash extends Error {}

/**
 * Wraps a store and "kills the process" at one chosen write: that call and every later one throw,
 * so the first engine can persist nothing more, like a SIGKILL between two steps.
 */
class CrashingStore implements DurableStore {
  crashed = false;
  private calls = 0;
  constructor(
    private readonly inner: DurableStore,
    private readonly crashAt: { op: keyof DurableStore; nth: number },
  ) {}
  private guard(op: keyof DurableStore): void {
    if (this.crashed) throw new SimulatedCrash(`store is dead (${op})`);
    if (op === this.crashAt.op && ++this.calls === this.crashAt.nth) {
      this.crashed = true;
      throw new SimulatedCrash(`crash at ${op} #${this.calls}`);
    }
  }
  loadAll: DurableStore["loadAll"] = (options) => this.inner.loadAll(options);
  loadHistory: DurableStore["loadHistory"] = (id) => this.inner.loadHistory(id);
  putInstance: DurableStore["putInstance"] = async (i) => (this.guard("putInstance"), this.inner.putInstance(i));
  appendEpisode: DurableStore["appendEpisode"] = async (e) => (this.guard("appendEpisode"), this.inner.appendEpisode(e));
  deleteHistory: DurableStore["deleteHistory"] = async (i, e) => (this.guard("deleteHistory"), this.inner.deleteHistory(i, e));
  putMessages: DurableStore["putMessages"] = async (i, m) => (this.guard("putMessages"), this.inner.putMessages(i, m));
  deleteMessages: DurableStore["deleteMessages"] = async (i, ids) => (this.guard("deleteMessages"), this.inner.deleteMessages(i, ids));
  putWorkItems: DurableStore["putWorkItems"] = async (w) => (this.guard("putWorkItems"), this.inner.putWorkItems(w));
  deleteWorkItems: DurableStore["deleteWorkItems"] = async (ids) => (this.guard("deleteWorkItems"), this.inner.deleteWorkItems(ids));
  purgeInstance: DurableStore["purgeInstance"] = async (id) => (this.guard("purgeInstance"), this.inner.purgeInstance(id));
  close = () => this.inner.close();
}

const ofType = (history: HistoryEvent[], type: EventType): HistoryEvent[] => history.filter((e) => e.EventType === type);

let registry: FunctionRegistry;
beforeAll(() => {
  registry = loadFunctionsApp(appPath);
});

/** `freshApp`: load the app again, as a restarted process would (slow: ~0.1-0.3 s per load). */
async function engineOn(store: DurableStore, clock = new VirtualClock(T0), freshApp = false): Promise<DurableEngine> {
  const invoker = createInvoker(freshApp ? loadFunctionsApp(appPath) : registry);
  return DurableEngine.start({ invoker, store, clock, logger: silentLogger });
}

describe("restart recovery (crash between any two writes)", () => {
  const crashPoints: Array<{ op: keyof DurableStore; nth: number }> = [
    { op: "appendEpisode", nth: 1 },
    { op: "putInstance", nth: 2 },
    { op: "putWorkItems", nth: 1 },
    { op: "deleteMessages", nth: 1 },
    { op: "putMessages", nth: 2 }, // the first activity's result
    { op: "deleteWorkItems", nth: 1 },
    { op: "appendEpisode", nth: 2 },
    { op: "putWorkItems", nth: 2 },
  ];

  it.each(crashPoints)("crash at $op #$nth: a restarted engine completes chain once, without duplicate events", async (crashAt) => {
    const durable = new InMemoryDurableStore();
    const crashing = new CrashingStore(durable, crashAt);
    const first = await engineOn(crashing);
    await first.startNew("chain", { input: 3, instanceId: "crashy" }).catch((err) => {
      if (!(err instanceof SimulatedCrash)) throw err;
    });
    await first.whenIdle();
    expect(crashing.crashed).toBe(true);
    await first.stop();

    const second = await engineOn(durable);
    await second.whenIdle();
    const status = second.getStatus("crashy");
    expect(status).toMatchObject({ runtimeStatus: "Completed", output: { a: 6, b: 12 } });
    const history = second.history("crashy");
    expect(ofType(history, EventType.TaskScheduled).map((e) => e.EventId)).toEqual([0, 1]);
    expect(ofType(history, EventType.TaskCompleted).map((e) => e.TaskScheduledId)).toEqual([0, 1]);
    expect(ofType(history, EventType.ExecutionStarted)).toHaveLength(1);
    const snapshot = await durable.loadAll();
    expect(snapshot.inbox).toEqual([]);
    expect(snapshot.workItems).toEqual([]);
    await second.stop();
  });
});

describe("transient storage errors (one failed write, then the store works again)", () => {
  const failOnce: Array<{ op: keyof DurableStore; nth: number }> = [
    { op: "appendEpisode", nth: 2 },
    { op: "putInstance", nth: 2 },
    { op: "putWorkItems", nth: 1 },
    { op: "putMessages", nth: 2 }, // the first activity's result
    { op: "deleteMessages", nth: 1 },
    { op: "deleteWorkItems", nth: 1 },
  ];

  it.each(failOnce)("$op #$nth fails once: the engine retries and completes without duplicates", async ({ op, nth }) => {
    const inner = new InMemoryDurableStore();
    let calls = 0;
    let failed = false;
    const flaky = new Proxy(inner, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (property !== op || typeof value !== "function") return typeof value === "function" ? value.bind(target) : value;
        return async (...args: unknown[]) => {
          if (++calls === nth) {
            failed = true;
            throw new Error(`storage hiccup (${String(op)})`);
          }
          return value.apply(target, args);
        };
      },
    });
    const engine = await DurableEngine.start({ invoker: createInvoker(registry), store: flaky, logger: silentLogger, retryAfterErrorMs: 10 });
    const id = await engine.startNew("chain", { input: 3 });
    const status = await engine.waitForStatus(id, (s) => s.runtimeStatus === "Completed", { timeoutMs: 10_000 });
    expect(failed).toBe(true);
    expect(status.output).toEqual({ a: 6, b: 12 });
    expect(ofType(engine.history(id), EventType.TaskScheduled).map((e) => e.EventId)).toEqual([0, 1]);
    expect(ofType(engine.history(id), EventType.TaskCompleted).map((e) => e.TaskScheduledId)).toEqual([0, 1]);
    await engine.stop();
    // Whatever the hiccup left behind is cleaned up by the next start.
    const restarted = await engineOn(inner);
    await restarted.whenIdle();
    const snapshot = await inner.loadAll();
    expect(snapshot.workItems).toEqual([]);
    expect(snapshot.inbox).toEqual([]);
    expect(restarted.getStatus(id)).toMatchObject({ runtimeStatus: "Completed", output: { a: 6, b: 12 } });
    await restarted.stop();
  });
});

describe("storage down for several writes in a row (an outage, not a hiccup)", () => {
  it("continueAsNew's start message and the repair after it both fail: the repair is retried and countdown(2) completes", async () => {
    const inner = new InMemoryDurableStore();
    let putMessagesCalls = 0;
    let failuresLeft = 0;
    const failed: string[] = [];
    const outage = new Proxy(inner, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver);
        if (typeof value !== "function") return value;
        return async (...args: unknown[]) => {
          // The third message written (after the start and the activity result) is the next execution's start: storage goes down there, for it and the next 3 writes.
          if (property === "putMessages" && ++putMessagesCalls === 3) failuresLeft = 4;
          if (failuresLeft > 0 && property !== "loadAll") {
            failuresLeft--;
            failed.push(String(property));
            throw new Error(`storage unavailable (${String(property)})`);
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
    const engine = await DurableEngine.start({ invoker: createInvoker(registry), store: outage, logger: silentLogger, retryAfterErrorMs: 10 });
    await engine.startNew("countdown", { input: 2, instanceId: "cd-outage" });
    const status = await engine.waitForStatus("cd-outage", (s) => s.runtimeStatus === "Completed", { timeoutMs: 10_000 });
    // Before, the failed repair was not tried again: the instance stayed ContinuedAsNew until the host restarted.
    expect(failed).toEqual(["putMessages", "putInstance", "putInstance", "putInstance"]);
    expect(status).toMatchObject({ output: "done", input: 0 });
    await engine.stop();
  });
});

describe("restart recovery across continueAsNew (each of the first 3 writes of every kind)", () => {
  const ops: Array<keyof DurableStore> = ["putInstance", "appendEpisode", "deleteHistory", "putMessages", "deleteMessages", "putWorkItems", "deleteWorkItems"];
  const cases = ops.flatMap((op) => [1, 2, 3].map((nth) => ({ op, nth })));

  it.each(cases)("crash at $op #$nth: countdown(2) still ends Completed once", async (crashAt) => {
    const durable = new InMemoryDurableStore();
    const crashing = new CrashingStore(durable, crashAt);
    const first = await engineOn(crashing);
    let started = true;
    await first.startNew("countdown", { input: 2, instanceId: "cd" }).catch((err) => {
      if (!(err instanceof SimulatedCrash)) throw err;
      started = crashAt.op !== "putInstance" || crashAt.nth !== 1;
    });
    await first.whenIdle();
    await first.stop();
    const second = await engineOn(durable);
    await second.whenIdle();
    if (!started) {
      expect(second.getStatus("cd")).toBeUndefined();
      return;
    }
    expect(second.getStatus("cd")).toMatchObject({ runtimeStatus: "Completed", output: "done", input: 0 });
    const history = second.history("cd");
    expect(history.map((e) => e.EventType)).toEqual([EventType.OrchestratorStarted, EventType.ExecutionStarted, EventType.OrchestratorCompleted, EventType.ExecutionCompleted]);
    const snapshot = await durable.loadAll();
    expect(snapshot.inbox).toEqual([]);
    expect(snapshot.workItems).toEqual([]);
    expect(new Set(snapshot.episodes.map((e) => e.executionId)).size).toBe(1);
    await second.stop();
  });
});

describe("restart recovery of sub-orchestrations and host-side retries", () => {
  const scenarios = [
    {
      name: "parent",
      check: (status: any) => {
        expect(status.runtimeStatus).toBe("Completed");
        expect(status.output.explicit).toEqual({ from: "explicit-child", doubled: 10, parent: "scenario" });
        expect(status.output.byDefault.doubled).toBe(14);
      },
    },
    {
      name: "retryExhausted",
      check: (status: any) => {
        expect(status.runtimeStatus).toBe("Failed");
        expect(status.output).toMatch(/^Orchestrator function 'retryExhausted' failed: Activity function 'alwaysFails' failed: permanent/);
      },
    },
  ];
  const ops: Array<keyof DurableStore> = ["putInstance", "appendEpisode", "putMessages", "deleteMessages", "putWorkItems", "deleteWorkItems"];
  const cases = scenarios.flatMap((scenario) => ops.flatMap((op) => [1, 2].map((nth) => ({ scenario: scenario.name, op, nth }))));

  it.each(cases)("$scenario, crash at $op #$nth", async ({ scenario, op, nth }) => {
    const durable = new InMemoryDurableStore();
    const crashing = new CrashingStore(durable, { op, nth });
    const clock = new VirtualClock(T0);
    const first = await engineOn(crashing, clock);
    let created = true;
    await first.startNew(scenario, { instanceId: "scenario" }).catch((err) => {
      if (!(err instanceof SimulatedCrash)) throw err;
      created = !(op === "putInstance" && nth === 1);
    });
    await first.whenIdle();
    if (!crashing.crashed) await clock.advance(1_000); // crash points inside the retry timers' episodes
    await first.stop();
    const second = await engineOn(durable, clock);
    await clock.advance(60_000);
    if (!created) return expect(second.getStatus("scenario")).toBeUndefined();
    scenarios.find((s) => s.name === scenario)!.check(second.getStatus("scenario"));
    const history = second.history("scenario");
    const scheduledIds = history.filter((e) => e.EventId >= 0).map((e) => e.EventId);
    expect(new Set(scheduledIds).size).toBe(scheduledIds.length);
    const completions = history.map((e) => (e.TaskScheduledId ?? e.TimerId) as number | undefined).filter((id) => id !== undefined);
    expect(new Set(completions).size).toBe(completions.length);
    const snapshot = await durable.loadAll();
    expect(snapshot.workItems).toEqual([]);
    expect(snapshot.inbox).toEqual([]);
    await second.stop();
  });
});

describe("restart recovery runs nothing until it is complete", () => {
  it("no activity runs while recovery still writes, then both crashed instances complete once", async () => {
    const durable = new InMemoryDurableStore();
    // The second work-item write dies: "a" keeps its stored work item, "b" has a TaskScheduled
    // whose work item was never written (recovery must re-create it).
    const crashing = new CrashingStore(durable, { op: "putWorkItems", nth: 2 });
    const clock = new VirtualClock(T0);
    const first = await engineOn(crashing, clock);
    await first.startNew("chain", { input: 1, instanceId: "a" });
    await first.startNew("chain", { input: 5, instanceId: "b" }).catch(() => undefined);
    await first.whenIdle();
    await first.stop();
    const crashed = await durable.loadAll();
    expect(crashed.workItems.map((w) => w.instanceId)).toEqual(["a"]);
    expect(crashed.episodes.some((e) => e.instanceId === "b" && e.events.some((ev) => ev.EventType === EventType.TaskScheduled))).toBe(true);

    // Work started while recovery still wrote raced it: a child's result written by its episode
    // and by recovery's parent notification landed in one table transaction, which Azure Tables
    // refuses, and the host failed to start. Recovery's writes are slowed down here to give an
    // early activity every chance to run.
    let starting = true;
    let recoveryWrites = 0;
    const slowRecovery: DurableStore = Object.assign(Object.create(durable) as DurableStore, {
      putWorkItems: async (items: Parameters<DurableStore["putWorkItems"]>[0]) => {
        if (!starting) return durable.putWorkItems(items);
        recoveryWrites++;
        await new Promise((r) => setTimeout(r, 50));
        await durable.putWorkItems(items);
        recoveryWrites--;
      },
    });
    const inner = createInvoker(registry);
    const duringRecovery: string[] = [];
    const invoker = {
      registry: inner.registry,
      has: (name: string) => inner.has(name),
      get: (name: string) => inner.get(name),
      invoke: ((name, ...rest) => {
        if (recoveryWrites > 0) duringRecovery.push(name);
        return inner.invoke(name, ...rest);
      }) as typeof inner.invoke,
    };
    const second = await DurableEngine.start({ invoker, store: slowRecovery, clock, logger: silentLogger });
    starting = false;
    await second.whenIdle();
    expect(duringRecovery).toEqual([]);
    expect(second.getStatus("a")).toMatchObject({ runtimeStatus: "Completed", output: { a: 2, b: 4 } });
    expect(second.getStatus("b")).toMatchObject({ runtimeStatus: "Completed", output: { a: 10, b: 20 } });
    for (const id of ["a", "b"]) expect(ofType(second.history(id), EventType.TaskCompleted)).toHaveLength(2);
    await second.stop();
  });
});

describe("AzuriteDurableStore", () => {
  let azurite: AzuriteHandle;
  beforeAll(async () => {
    azurite = await startAzurite({ services: ["blob", "table"] });
  });
  afterAll(async () => {
    await azurite.stop();
  });

  it("a new engine on the same Azurite data resumes a running instance mid-orchestration and keeps completed ones", async () => {
    const clock = new VirtualClock(T0);
    const store1 = await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "RestartHub" });
    const first = await engineOn(store1, clock);
    await first.startNew("chain", { input: 1, instanceId: "done-before" });
    await first.startNew("rounds", { input: { round: 1 }, instanceId: "mid" });
    await first.startNew("retryFlaky", { input: "never-fails", instanceId: "flaky-ok" });
    await first.startNew("sleeper", { input: 30, instanceId: "sleeping" });
    await first.whenIdle();
    await first.raiseEvent("mid", "go1", "r1");
    await first.whenIdle();
    expect(first.getStatus("mid")!.runtimeStatus).toBe("Running"); // round 2 waits for go2 or its timer
    await first.stop();

    const store2 = await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "RestartHub" });
    const second = await engineOn(store2, clock, true);
    await second.whenIdle();
    expect(second.getStatus("done-before")).toMatchObject({ runtimeStatus: "Completed", output: { a: 2, b: 4 } });
    expect(second.getStatus("flaky-ok")).toMatchObject({ runtimeStatus: "Completed", output: { result: "ok never-fails", after: 42 } });
    expect(second.getStatus("sleeping")!.runtimeStatus).toBe("Running");
    await second.raiseEvent("mid", "go2", "after restart");
    await clock.advance(30_000); // the re-armed timer of "sleeping" fires
    expect(second.getStatus("mid")).toMatchObject({ runtimeStatus: "Completed", output: "round 2 got after restart" });
    expect(second.getStatus("sleeping")).toMatchObject({ runtimeStatus: "Completed", output: "slept 30" });
    expect(ofType(second.history("sleeping"), EventType.TimerFired)).toHaveLength(1);
    await second.stop();
  });

  it("a restarted engine reads the histories of running instances only; a finished one's is read when asked for", async () => {
    const clock = new VirtualClock(T0);
    const first = await engineOn(await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "LazyHub" }), clock);
    await first.startNew("chain", { input: 3, instanceId: "finished" });
    await first.startNew("sleeper", { input: 30, instanceId: "asleep" });
    await first.whenIdle();
    const finishedHistory = first.history("finished");
    await first.stop();

    const store = await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "LazyHub" });
    const snapshot = await store.loadAll({ skipHistoryOf: (r) => r.runtimeStatus === "Completed" });
    expect(snapshot.historySkipped).toEqual(["finished"]);
    expect([...new Set(snapshot.episodes.map((e) => e.instanceId))]).toEqual(["asleep"]);

    const second = await engineOn(store, clock);
    expect(second.getStatus("finished")).toMatchObject({ runtimeStatus: "Completed", output: { a: 6, b: 12 } });
    expect(() => second.history("finished")).toThrow("the history of 'finished' (Completed before this engine started) is not loaded: await loadHistory('finished') first");
    await second.loadHistory("finished");
    expect(second.history("finished")).toEqual(finishedHistory);
    await clock.advance(30_000);
    expect(second.getStatus("asleep")).toMatchObject({ runtimeStatus: "Completed", output: "slept 30" });
    await second.stop();
  });

  it("spills large payloads to blobs and reads them back", async () => {
    const store = await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "BigHub" });
    const engine = await engineOn(store);
    const big = "x".repeat(100_000);
    await engine.startNew("chain", { input: 1, instanceId: "big" });
    await engine.whenIdle();
    await engine.startNew("waitsForever", { instanceId: "big-input", input: { big } });
    await engine.whenIdle();
    await engine.stop();
    const reloaded = await engineOn(await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "BigHub" }));
    expect((reloaded.getStatus("big-input")!.input as { big: string }).big).toHaveLength(100_000);
    expect(await reloaded.purge("big-input")).toBe(1);
    await reloaded.stop();
    const again = await engineOn(await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "BigHub" }));
    expect(again.getStatus("big-input")).toBeUndefined();
    expect(again.getStatus("big")).toMatchObject({ runtimeStatus: "Completed" });
    await again.stop();
  });

  it("writes one row when a batch of messages names the same message twice (the last value wins)", async () => {
    const store = await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "DupHub" });
    const message = (payload: string) => ({
      id: "p:e:sub:0:result",
      instanceId: "p",
      executionId: "e",
      event: { EventType: EventType.EventRaised, EventId: -1, Timestamp: "2025-01-01T00:00:00.000Z", Input: payload } as unknown as HistoryEvent,
      enqueuedAt: "2025-01-01T00:00:00.000Z",
    });
    await store.putMessages("p", [message("first"), { ...message("other"), id: "p:e:other" }, message("second")]);
    const inbox = (await store.loadAll()).inbox.filter((m) => m.instanceId === "p");
    expect(inbox.map((m) => [m.id, m.event.Input])).toEqual([
      ["p:e:other", "other"],
      ["p:e:sub:0:result", "second"],
    ]);
  });

  it("rejects task hub names the table service can't hold", async () => {
    await expect(AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "9bad" })).rejects.toThrow(
      "taskHubName must start with a letter and have 3-45 alphanumeric characters, got '9bad'",
    );
  });
});
