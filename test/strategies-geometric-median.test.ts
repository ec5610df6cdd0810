/**
 * geometric-median (RFA, Pillutla et al. 2022) against a plain smoothed-Weiszfeld reference written
 * here on whole vectors: the engine's version works on the K x K distance matrix instead and must
 * agree; one poisoned silo barely moves it; a silo lying about num_examples changes nothing (the
 * rule is unweighted) while FedAvg follows the liar.
 */
import { aggregateUpdates } from "../lib/aggregation/engine";
import { createStrategy } from "../lib/aggregation/registry";
import type { Json } from "../lib/aggregation/strategy";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../lib/models/safetensors";
import { memorySink, memorySource } from "./fixtures/memoryBytes";
import { initialStrategyState } from "../lib/aggregation/strategies/roundPlan";
import { aggregateInMemory, resolveStrategyConfig, type TensorMap } from "./helpers/inMemory";
import { normal, rng } from "./helpers/random";

type Vector = number[];

const distance = (a: Vector, b: Vector) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0));

/** Smoothed Weiszfeld on the points themselves, unweighted, stopping as RFA does. */
function referenceGeometricMedian(points: Vector[], o: { maxIterations: number; tolerance: number; nu: number }): { median: Vector; iterations: number } {
  const k = points.length;
  const alpha = 1 / k;
  const combine = (weights: number[]) => points[0].map((_, c) => points.reduce((s, p, i) => s + weights[i] * p[c], 0));
  const objective = (z: Vector) => points.reduce((s, p) => s + alpha * distance(z, p), 0);
  let z = combine(points.map(() => alpha));
  let value = objective(z);
  let iterations = 0;
  while (iterations < o.maxIterations) {
    const beta = points.map((p) => alpha / Math.max(o.nu, distance(z, p)));
    const total = beta.reduce((s, b) => s + b, 0);
    z = combine(beta.map((b) => b / total));
    iterations++;
    const previous = value;
    value = objective(z);
    if (Math.abs(previous - value) <= o.tolerance * value) break;
  }
  return { median: z, iterations };
}

const DEFAULTS = { maxIterations: 10, tolerance: 1e-5, nu: 1e-6 };

/** K updates of two tensors; `poison` moves silo 0 far away. */
function updates(seed: number, k: number, poison = false): { tensors: TensorMap; numExamples: number }[] {
  const r = rng(seed);
  return Array.from({ length: k }, (_, i) => {
    const shift = poison && i === 0 ? 1000 : 0;
    return {
      tensors: { a: Float64Array.from({ length: 13 }, () => 1 + shift + 0.1 * normal(r)), b: Float64Array.from({ length: 6 }, () => -2 + shift + 0.1 * normal(r)) },
      numExamples: 10 + 5 * i,
    };
  });
}

const flat = (t: TensorMap) => [...t.a, ...t.b];

async function engineRun(name: string, options: Json, ups: { tensors: TensorMap; numExamples: number }[]): Promise<{ model: Vector; report: Json | undefined }> {
  const models = await Promise.all(
    ups.map(async (u) => {
      const sink = memorySink();
      await writeSafetensors(
        sink,
        Object.entries(u.tensors).map(([tensor, data]) => ({ name: tensor, dtype: "F64" as const, shape: [data.length], data: new Uint8Array(data.buffer) })),
      );
      return sink.committed!;
    }),
  );
  const out = memorySink();
  const result = await aggregateUpdates({
    updates: models.map((bytes, i) => ({ id: `silo${i}`, model: memorySource(`silo${i}`, bytes), metrics: { numExamples: ups[i].numExamples, metrics: {} } })),
    output: () => out,
    strategy: createStrategy(name, options),
    minUpdates: 1,
    chunkElements: 4, // several chunks per tensor: the distances are accumulated chunk by chunk
  });
  const source = memorySource("out", out.committed!);
  const header = await readSafetensorsHeader(source);
  const read = async (tensor: string) => {
    const bytes = await readTensorBytes(source, header, tensor);
    return Array.from(new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)));
  };
  return { model: [...(await read("a")), ...(await read("b"))], report: result.state.report };
}

const expectClose = (got: Vector, expected: Vector, tolerance: number) => {
  expect(got).toHaveLength(expected.length);
  got.forEach((v, i) => {
    if (Math.abs(v - expected[i]) > tolerance) throw new Error(`coordinate ${i}: got ${v}, expected ${expected[i]} (tolerance ${tolerance})`);
  });
};

describe("geometric-median", () => {
  test.each([3, 5, 8])("equals the plain reference with %i silos (in memory and streamed)", async (k) => {
    const ups = updates(40 + k, k);
    const reference = referenceGeometricMedian(
      ups.map((u) => flat(u.tensors)),
      DEFAULTS,
    );
    const config = resolveStrategyConfig({ strategy: "geometric-median" });
    const inMemory = aggregateInMemory(config, { updates: ups, state: initialStrategyState(config), chunkSize: 5 });
    expectClose(flat(inMemory.model), reference.median, 1e-9);
    const streamed = await engineRun("geometric-median", {}, ups);
    expectClose(streamed.model, reference.median, 1e-9);
    expect(streamed.report).toMatchObject({ strategy: "geometric-median", iterations: reference.iterations });
  });

  test("maxIterations and tolerance stop the iterations where the reference stops", async () => {
    const ups = updates(7, 6, true);
    for (const options of [{ maxIterations: 1 }, { maxIterations: 3 }, { tolerance: 0.1 }, { nu: 0.5 }] as Record<string, number>[]) {
      const reference = referenceGeometricMedian(
        ups.map((u) => flat(u.tensors)),
        { ...DEFAULTS, ...options },
      );
      const streamed = await engineRun("geometric-median", options, ups);
      expectClose(streamed.model, reference.median, 1e-9);
      expect(streamed.report).toMatchObject({ iterations: reference.iterations });
    }
  });

  test("one poisoned silo (1000 away) barely moves it, unlike the mean", async () => {
    const honest = updates(21, 7).slice(1);
    const poisoned = updates(21, 7, true);
    const reference = referenceGeometricMedian(
      poisoned.map((u) => flat(u.tensors)),
      DEFAULTS,
    );
    const got = await engineRun("geometric-median", {}, poisoned);
    expectClose(got.model, reference.median, 1e-9);
    const honestMedian = referenceGeometricMedian(
      honest.map((u) => flat(u.tensors)),
      DEFAULTS,
    ).median;
    // The breakdown point is 1/2: one of 7 moves it by a fraction of the honest spread (~0.1), not ~1000/7.
    expect(distance(got.model, honestMedian)).toBeLessThan(0.2);
    const mean = await engineRun("fedavg", {}, poisoned);
    expect(distance(mean.model, honestMedian)).toBeGreaterThan(100);
  });

  test("a silo lying about num_examples changes nothing (unweighted), while FedAvg follows it", async () => {
    const ups = updates(33, 5, true); // silo 0 is the far-off one
    const liar = ups.map((u, i) => (i === 0 ? { ...u, numExamples: 1e9 } : u));
    const truthful = await engineRun("geometric-median", {}, ups);
    const lying = await engineRun("geometric-median", {}, liar);
    expect(lying.model).toEqual(truthful.model);
    expectClose(
      lying.model,
      referenceGeometricMedian(
        liar.map((u) => flat(u.tensors)),
        DEFAULTS,
      ).median,
      1e-9,
    );
    const fedavg = await engineRun("fedavg", {}, liar);
    expectClose(fedavg.model, flat(liar[0].tensors), 1e-3);
  });

  test("with clipping, it is the geometric median of the clipped updates", async () => {
    const ups = updates(5, 5, true);
    const global = { a: new Float64Array(13).fill(1), b: new Float64Array(6).fill(-2) };
    const config = resolveStrategyConfig({ strategy: "geometric-median", clipping: { mode: "fixed", norm: 0.5 } });
    const result = aggregateInMemory(config, { updates: ups, global, state: initialStrategyState(config) });
    const g = flat(global);
    const clipped = ups.map((u) => {
      const w = flat(u.tensors);
      const scale = Math.min(1, 0.5 / distance(w, g));
      return w.map((v, c) => g[c] + scale * (v - g[c]));
    });
    expectClose(flat(result.model), referenceGeometricMedian(clipped, DEFAULTS).median, 1e-9);
  });
});
