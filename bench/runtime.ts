/**
 * `npm run bench:runtime`: cost of the embedded Durable runtime.
 *  1. One episode's cost versus history size (100 to 10,000 events) of a sequential chain:
 *     payload JSON + the real SDK replay through the worker path + the .NET-side emulation.
 *  2. A 1,000-activity fan-out/fan-in end to end (in-memory store, and Azurite tables).
 */
import * as os from "os";
import * as path from "path";
import { performance } from "perf_hooks";
import { loadFunctionsApp } from "../lib/runtime/functionsCore";
import { createInvoker, Invoker } from "../lib/runtime/invoke";
import { DurableEngine } from "../lib/runtime/durable/engine";
import { events, HistoryEvent } from "../lib/runtime/durable/history";
import { replayDotNetSide, OrchestratorStateWire } from "../lib/runtime/durable/replay";
import { AzuriteDurableStore } from "../lib/runtime/durable/azuriteStore";
import { startAzurite } from "../lib/storage/azurite";

const APP = path.resolve(__dirname, "..", "..", "test", "apps", "durable-semantics", "index.js");

/** History of a chain of `steps` completed no-op activities plus the completion that starts the next episode. */
function chainHistory(steps: number, start: number): HistoryEvent[] {
  const at = (i: number): Date => new Date(start + i * 1000);
  const history: HistoryEvent[] = [
    events.orchestratorStarted(at(0)),
    events.executionStarted(at(0), { instanceId: "bench", executionId: "e1", name: "chainN", input: String(steps + 1) }),
    events.taskScheduled(at(0), 0, "noop", null),
    events.orchestratorCompleted(at(0)),
  ];
  for (let i = 1; i <= steps; i++) {
    history.push(events.orchestratorStarted(at(i)), events.taskCompleted(at(i), i - 1, "42"));
    if (i < steps) history.push(events.taskScheduled(at(i), i, "noop", null), events.orchestratorCompleted(at(i)));
  }
  return history.map((e, index) => ({ ...e, IsPlayed: index < history.length - 2 }));
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

/**
 * Baseline measured in the same run: the SDK's orchestrator handler called directly on the parsed
 * payload (what any host must at least pay). The ratio column is what flo adds on top: payload
 * JSON, the worker's conversions, the .NET-side emulation. Ratios are far less load-sensitive than
 * milliseconds on a shared machine.
 */
function sdkOnly(invoker: Invoker): (payload: string) => Promise<unknown> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the SDK is loaded only by this row, not by the bench
  const { InvocationContext } = require("@azure/functions") as { InvocationContext: new (init: object) => object };
  const handler = invoker.get("chainN")!.callback;
  return async (payload) => handler(JSON.parse(payload), new InvocationContext({ functionName: "chainN", logHandler: () => undefined }));
}

async function episodeCost(invoker: Invoker, targetEvents: number, reps: number): Promise<Record<string, string | number>> {
  const steps = Math.max(1, Math.round((targetEvents - 2) / 4));
  const history = chainHistory(steps, Date.parse("2025-01-01T00:00:00Z"));
  const stringify: number[] = [];
  const invoke: number[] = [];
  const dotnet: number[] = [];
  const baseline: number[] = [];
  const direct = sdkOnly(invoker);
  let bytes = 0;
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    const payload = JSON.stringify({
      history,
      input: steps + 1,
      instanceId: "bench",
      isReplaying: true,
      parentInstanceId: null,
      upperSchemaVersion: 1,
      upperSchemaVersionNew: 2,
      longRunningTimerIntervalDuration: "3.00:00:00",
      maximumShortTimerDuration: "6.00:00:00",
      defaultHttpAsyncRequestSleepTimeMillseconds: 30000,
    });
    const t1 = performance.now();
    const response = await invoker.invoke("chainN", { string: payload });
    const t2 = performance.now();
    const state = JSON.parse(String(response.returnValue?.json)) as OrchestratorStateWire;
    const result = replayDotNetSide({
      orchestrationName: "chainN",
      instanceId: "bench",
      executionId: "e1",
      parentInstanceId: null,
      history,
      state,
      functionExists: () => true,
    });
    const t3 = performance.now();
    if (result.newWork.length !== 1 || result.newWork[0].id !== steps) throw new Error(`bench replay went wrong: ${JSON.stringify(result.newWork)}`);
    const t4 = performance.now();
    await direct(payload);
    baseline.push(performance.now() - t4);
    bytes = payload.length;
    stringify.push(t1 - t0);
    invoke.push(t2 - t1);
    dotnet.push(t3 - t2);
  }
  const total = stringify.map((s, i) => s + invoke[i] + dotnet[i]);
  return {
    events: history.length,
    "payload KB": Math.round(bytes / 1024),
    "stringify p50 ms": percentile(stringify, 50).toFixed(2),
    "SDK invoke p50 ms": percentile(invoke, 50).toFixed(2),
    ".NET emulation p50 ms": percentile(dotnet, 50).toFixed(2),
    "episode min ms": Math.min(...total).toFixed(2),
    "episode p50 ms": percentile(total, 50).toFixed(2),
    "episode p95 ms": percentile(total, 95).toFixed(2),
    "SDK-only p50 ms": percentile(baseline, 50).toFixed(2),
    "episode / SDK-only": (percentile(total, 50) / percentile(baseline, 50)).toFixed(2),
  };
}

async function fanOut(label: string, engine: DurableEngine, n: number): Promise<Record<string, string | number>> {
  const t0 = performance.now();
  const id = await engine.startNew("fanOut", { input: n });
  const status = await engine.waitForStatus(id, (s) => s.runtimeStatus === "Completed" || s.runtimeStatus === "Failed", { timeoutMs: 300_000 });
  const ms = performance.now() - t0;
  const expected = n * (n - 1);
  if (status.output !== expected) throw new Error(`fan-out output ${String(status.output)} != ${expected}`);
  return { store: label, activities: n, "history events": engine.history(id).length, "total s": (ms / 1000).toFixed(2) };
}

async function main(): Promise<void> {
  const invoker = createInvoker(loadFunctionsApp(APP));
  const load = os
    .loadavg()
    .map((l) => l.toFixed(1))
    .join(" / ");
  console.log(`Node ${process.version}, ${os.cpus().length} cores (${os.cpus()[0]?.model ?? "?"}), load average ${load}: timings scale with load.`);
  console.log("Replay cost of one episode versus history size (sequential chain, worker path):");
  // Warm up the JIT before measuring.
  await episodeCost(invoker, 1000, 20);
  const rows = [];
  for (const size of [100, 1000, 2500, 5000, 10000]) rows.push(await episodeCost(invoker, size, size >= 5000 ? 15 : 40));
  console.table(rows);

  console.log("1,000-activity fan-out/fan-in (real clock, maxConcurrentActivities default):");
  const fan = [];
  const memoryEngine = await DurableEngine.start({ invoker });
  fan.push(await fanOut("in-memory", memoryEngine, 1000));
  await memoryEngine.stop();
  const azurite = await startAzurite({ services: ["blob", "table"] });
  try {
    const store = await AzuriteDurableStore.open({ connectionString: azurite.connectionString, taskHubName: "BenchHub" });
    const azuriteEngine = await DurableEngine.start({ invoker, store });
    fan.push(await fanOut("Azurite tables (in-process, in-memory)", azuriteEngine, 1000));
    await azuriteEngine.stop();
  } finally {
    await azurite.stop();
  }
  console.table(fan);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
