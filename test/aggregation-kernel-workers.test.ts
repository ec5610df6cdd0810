/**
 * Robust strategies with part of every chunk combined on a kernel worker thread: the output is the
 * same bytes as on one thread, for F32 rows (views of the shared read slots) and F16 rows (decoded
 * into shared scratch), and the selection made from split statistics (Krum's distances) is the same.
 */
import { aggregateUpdates } from "../lib/aggregation/engine";
import { compiledRegistryPath } from "../lib/aggregation/kernelPool";
import { createStrategy } from "../lib/aggregation/registry";
import type { Json } from "../lib/aggregation/strategy";
import { encodeFloats } from "../lib/models/dtypes";
import { writeSafetensors } from "../lib/models/safetensors";
import { memorySink, memorySource } from "./fixtures/memoryBytes";
import { rng } from "./helpers/random";

const K = 7;

async function updateBytes(seed: number): Promise<Buffer> {
  const r = rng(seed);
  // Silo 0 is far off, so the robust rules have something to reject.
  const scale = seed === 0 ? 50 : 1;
  const w = Float32Array.from({ length: 50_000 }, () => (r() - 0.5) * scale);
  const h = Array.from({ length: 40_000 }, () => (r() - 0.5) * scale);
  const sink = memorySink();
  await writeSafetensors(sink, [
    { name: "h", dtype: "F16", shape: [200, 200], data: encodeFloats(h, "F16") },
    { name: "steps", dtype: "I64", shape: [1], data: new Uint8Array(BigInt64Array.of(3n).buffer) },
    { name: "w", dtype: "F32", shape: [50_000], data: new Uint8Array(w.buffer) },
  ]);
  return sink.committed!;
}

async function run(name: string, options: Json, kernelWorkers: number, models: Buffer[]) {
  const out = memorySink();
  const result = await aggregateUpdates({
    updates: models.map((bytes, i) => ({ id: `silo${i}`, model: memorySource(`silo${i}`, bytes), metrics: { numExamples: 10 + i, metrics: {} } })),
    output: () => out,
    strategy: createStrategy(name, options),
    minUpdates: K,
    kernelWorkers,
  });
  return { bytes: out.committed!, result };
}

describe("kernel worker", () => {
  let models: Buffer[];
  beforeAll(async () => {
    models = await Promise.all(Array.from({ length: K }, (_, i) => updateBytes(i)));
  });

  it("has a compiled registry to load (npm test builds first)", () => {
    expect(compiledRegistryPath()).toMatch(/registry\.js$/);
  });

  it.each([
    ["median", {}],
    ["trimmed-mean", { beta: 0.2 }],
    ["krum", { byzantine: 1 }],
    ["multi-krum", { byzantine: 1, keep: 3 }],
    ["bulyan", { byzantine: 1 }],
    ["geometric-median", {}],
  ] as [string, Json][])("%s: the same bytes on two threads as on one", async (name, options) => {
    const one = await run(name, options, 0, models);
    const two = await run(name, options, 1, models);
    expect(one.result.kernelWorkers).toBe(0);
    expect(two.result.kernelWorkers).toBe(1);
    expect(two.result.state.report).toEqual(one.result.state.report);
    expect(two.bytes.equals(one.bytes)).toBe(true);
    expect(two.result.output.sha256).toBe(one.result.output.sha256);
  });

  it("is not used by strategies whose kernels are cheap (fedavg) or that need the global model", async () => {
    const fedavg = await run("fedavg", {}, 1, models);
    expect(fedavg.result.kernelWorkers).toBe(0);
  });

  it("rejects a kernelWorkers value other than 0 or 1", async () => {
    await expect(run("median", {}, 2, models)).rejects.toThrow("kernelWorkers must be 0 or 1, got 2");
  });
});
