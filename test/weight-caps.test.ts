/**
 * aggregation.maxWeightShare and silos[].maxExamples below the federation: the engine's capped
 * weights for a plain and a subset-weighting rule, the weighted metric means and the round's
 * weighting record.
 */
import { aggregateUpdates, type AggregateOptions } from "../lib/aggregation/engine";
import { AggregationError } from "../lib/aggregation/errors";
import { createStrategy } from "../lib/aggregation/registry";
import { decodeFloats } from "../lib/models/dtypes";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../lib/models/safetensors";
import { memorySink, memorySource } from "./fixtures/memoryBytes";

async function update(id: string, value: number, numExamples: number, loss: number): Promise<AggregateOptions["updates"][number]> {
  const sink = memorySink();
  await writeSafetensors(sink, [{ name: "w", dtype: "F64", shape: [2], data: new Uint8Array(Float64Array.from([value, value]).buffer) }]);
  return { id, model: memorySource(id, sink.committed!), metrics: { numExamples, metrics: { loss } } };
}

async function aggregate(updates: AggregateOptions["updates"], strategy: { name: string; options?: Record<string, number> }, maxWeightShare?: number) {
  const out = memorySink();
  const result = await aggregateUpdates({
    updates,
    output: () => out,
    strategy: createStrategy(strategy.name, strategy.options ?? {}),
    minUpdates: 1,
    ...(maxWeightShare !== undefined ? { maxWeightShare } : {}),
  });
  const source = memorySource("out", out.committed!);
  const w = Array.from(decodeFloats(await readTensorBytes(source, await readSafetensorsHeader(source), "w"), "F64"));
  return { result, w };
}

const liarRound = () => Promise.all([update("honest-a", 1, 100, 1), update("honest-b", 1, 100, 1), update("liar", 100, 1e12, 10_000)]);

describe("maxWeightShare in the engine", () => {
  test("fedavg without a cap: the liar's ~100% share and the dominant flag", async () => {
    const { result, w } = await aggregate(await liarRound(), { name: "fedavg" });
    expect(w[0]).toBeCloseTo((200 + 1e14) / (1e12 + 200), 12);
    expect(result.weighting).toEqual({ capped: [], equalized: false, dominant: ["liar"] });
    expect(result.included.map((u) => u.weightShare)).toEqual([100 / (1e12 + 200), 100 / (1e12 + 200), 1e12 / (1e12 + 200)]);
  });

  test("fedavg with cap 0.4: 0.3 / 0.3 / 0.4, in the model and in the metric means; counts reported as claimed", async () => {
    const { result, w } = await aggregate(await liarRound(), { name: "fedavg" }, 0.4);
    expect(w[0]).toBeCloseTo(0.3 + 0.3 + 40, 12);
    expect(result.metrics.loss).toBeCloseTo(0.3 + 0.3 + 4000, 9);
    expect(result.included.map((u) => [u.id, u.numExamples])).toEqual([
      ["honest-a", 100],
      ["honest-b", 100],
      ["liar", 1e12],
    ]);
    result.included.forEach((u, i) => expect(u.weightShare).toBeCloseTo([0.3, 0.3, 0.4][i], 12));
    expect(result.weighting).toEqual({ maxWeightShare: 0.4, capped: ["liar"], equalized: false, dominant: [] });
  });

  test("a cap below 1/m weighs all equally and says so", async () => {
    const { result, w } = await aggregate(await liarRound(), { name: "fedavg" }, 0.25);
    expect(w[0]).toBeCloseTo(102 / 3, 12);
    expect(result.weighting).toEqual({ maxWeightShare: 0.25, capped: [], equalized: true, dominant: [] });
  });

  test("the cap applies through the rule machinery too (fedavg with clipping)", async () => {
    const updates = await liarRound();
    const out = memorySink();
    const strategy = createStrategy("fedavg", { clipping: { mode: "fixed", norm: 1e9 } });
    const global = memorySink();
    await writeSafetensors(global, [{ name: "w", dtype: "F64", shape: [2], data: new Uint8Array(new Float64Array(2).buffer) }]);
    await aggregateUpdates({ updates, output: () => out, strategy, minUpdates: 1, maxWeightShare: 0.4, global: memorySource("global", global.committed!) });
    const source = memorySource("out", out.committed!);
    const w = decodeFloats(await readTensorBytes(source, await readSafetensorsHeader(source), "w"), "F64");
    expect(w[0]).toBeCloseTo(40.6, 9);
  });

  test("multi-krum re-caps over its selection: renormalizing the round's capped weights over fewer updates would exceed the cap", async () => {
    // Krum (f = 0) keeps the two closest updates, a (n=1) and b (n=1e6); c and d are far off.
    const updates = await Promise.all([update("a", 1, 1, 0), update("b", 1.1, 1e6, 0), update("c", 50, 1, 0), update("d", -50, 1, 0)]);
    const uncapped = await aggregate(updates, { name: "multi-krum", options: { byzantine: 0, keep: 2 } });
    expect(uncapped.w[0]).toBeCloseTo((1 + 1.1e6) / (1 + 1e6), 12);
    // Round shares with cap 0.6: b 0.6, the others 0.4/3 each; over {a, b} alone b would weigh 0.6/0.733 = 0.82.
    const capped = await aggregate(updates, { name: "multi-krum", options: { byzantine: 0, keep: 2 } }, 0.6);
    expect(capped.w[0]).toBeCloseTo(0.4 * 1 + 0.6 * 1.1, 12);
  });

  test("an out-of-range cap is a caller bug with its value", async () => {
    await expect(aggregate(await liarRound(), { name: "fedavg" }, 0)).rejects.toThrow(new AggregationError("BAD_OPTIONS", "maxWeightShare must be a number with 0 < x <= 1, got 0"));
  });
});
