/**
 * The registry's strategies on the streaming engine: same numbers as the in-memory path (tiny chunks
 * so tensors span many chunks), integer tensors copied not averaged, optimizer state through
 * safetensors state files equal to an uninterrupted run, DP noise keyed per round, state misuse.
 */
import { aggregateUpdates } from "../lib/aggregation/engine";
import { createStrategy, resolveStrategyOptions } from "../lib/aggregation/registry";
import type { Json } from "../lib/aggregation/strategy";
import { StrategyStateError } from "../lib/aggregation/strategies/errors";
import { aggregateInMemory, type InMemoryUpdate, type TensorMap, resolveStrategyConfig, type StrategyOptions } from "./helpers/inMemory";
import { initialStrategyState, type StrategyState } from "../lib/aggregation/strategies/roundPlan";
import { decodeFloats } from "../lib/models/dtypes";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../lib/models/safetensors";
import { validateSpec } from "../lib/spec";
import { memorySink, memorySource } from "./fixtures/memoryBytes";
import { rng } from "./helpers/random";

async function modelBytes(tensors: TensorMap, step = 7n): Promise<Buffer> {
  const sink = memorySink();
  await writeSafetensors(sink, [
    ...Object.entries(tensors).map(([name, v]) => ({ name, dtype: "F64" as const, shape: [v.length], data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) })),
    { name: "bn.num_batches_tracked", dtype: "I64" as const, shape: [1], data: new Uint8Array(BigInt64Array.of(step).buffer) },
  ]);
  return sink.committed!;
}

async function readFloats(bytes: Buffer): Promise<{ tensors: TensorMap; steps?: bigint }> {
  const src = memorySource("out", bytes);
  const header = await readSafetensorsHeader(src);
  const tensors: TensorMap = {};
  let steps: bigint | undefined;
  for (const t of header.tensors) {
    const raw = await readTensorBytes(src, header, t.name);
    if (t.dtype === "I64") steps = new BigInt64Array(Uint8Array.from(raw).buffer)[0];
    else tensors[t.name] = Float64Array.from(decodeFloats(raw, t.dtype as "F64"));
  }
  return { tensors, steps };
}

function randomUpdates(seed: number, k: number, outlier = false): InMemoryUpdate[] {
  const r = rng(seed);
  return Array.from({ length: k }, (_, i) => ({
    tensors: {
      "layer.a": Float64Array.from({ length: 23 }, () => (r() - 0.5) * (outlier && i === 0 ? 100 : 1)),
      "layer.b": Float64Array.from({ length: 9 }, () => r() - 0.5),
    },
    numExamples: 1 + Math.floor(r() * 50),
  }));
}

interface EngineRound {
  model: TensorMap;
  steps?: bigint;
  state: Json;
  stateFiles: Record<string, Buffer>;
  report?: Json;
}

async function engineRound(name: string, options: Json, updates: InMemoryUpdate[], extra: { global?: TensorMap; state?: Json; stateFiles?: Record<string, Buffer> } = {}): Promise<EngineRound> {
  const out = memorySink();
  const stateSinks: Record<string, ReturnType<typeof memorySink>> = {};
  const result = await aggregateUpdates({
    updates: await Promise.all(
      updates.map(async (u, i) => ({ id: `silo${i}`, model: memorySource(`silo${i}`, await modelBytes(u.tensors, BigInt(i + 7))), metrics: { numExamples: u.numExamples, metrics: {} } })),
    ),
    output: () => out,
    strategy: createStrategy(name, options),
    minUpdates: 1,
    chunkElements: 4,
    ...(extra.global ? { global: memorySource("global", await modelBytes(extra.global)) } : {}),
    state: {
      ...(extra.state !== undefined ? { json: extra.state } : {}),
      tensors: Object.fromEntries(Object.entries(extra.stateFiles ?? {}).map(([k, b]) => [k, memorySource(`state-${k}`, b)])),
    },
    stateOutput: (stateName) => (stateSinks[stateName] = memorySink(`state-${stateName}`)),
  });
  const { tensors, steps } = await readFloats(out.committed!);
  return {
    model: tensors,
    steps,
    state: result.state.json,
    stateFiles: Object.fromEntries(Object.entries(stateSinks).map(([k, s]) => [k, s.committed!])),
    report: result.state.report,
  };
}

const close = (a: TensorMap, b: TensorMap, tol = 1e-12) => {
  expect(Object.keys(a).sort()).toEqual(Object.keys(b).sort());
  for (const name of Object.keys(a)) a[name].forEach((v, i) => expect(Math.abs(v - b[name][i])).toBeLessThanOrEqual(tol));
};

describe("robust strategies on the engine equal the in-memory path", () => {
  const cases: [string, StrategyOptions][] = [
    ["median", { strategy: "median" }],
    ["trimmed-mean", { strategy: "trimmed-mean", beta: 0.25 }],
    ["krum", { strategy: "krum", byzantine: 2 }],
    ["multi-krum", { strategy: "multi-krum", byzantine: 1, keep: 3 }],
    ["bulyan", { strategy: "bulyan", byzantine: 1 }],
    ["fedavg+clipping", { strategy: "fedavg", clipping: { mode: "fixed", norm: 0.5 } }],
    ["krum+clipping", { strategy: "krum", byzantine: 1, clipping: { mode: "fixed", norm: 0.5 } }],
  ];
  test.each(cases)("%s", async (_label, { strategy, ...options }) => {
    for (const outlier of [false, true]) {
      const updates = randomUpdates(outlier ? 11 : 12, 7, outlier);
      const global = options.clipping ? randomUpdates(99, 1)[0].tensors : undefined;
      const config = resolveStrategyConfig({ strategy, ...options });
      const expected = aggregateInMemory(config, { updates, global, state: initialStrategyState(config) });
      const got = await engineRound(strategy, options as Json, updates, { global });
      close(got.model, expected.model);
      // Integer tensors are never averaged: copied from the update the plan names (update i has steps
      // i + 7), a selected one for the rules that select.
      expect(got.steps).toBe(BigInt(expected.plan.integerSource + 7));
      expect(expected.plan.selected).toContain(expected.plan.integerSource);
      expect(got.state).toEqual(expected.state);
    }
  });
});

describe("server optimizers: state through safetensors files equals an uninterrupted run", () => {
  test.each(["fedavgm", "fedadam", "fedyogi", "fedadagrad"])("%s over 4 rounds", async (name) => {
    const options: Json = name === "fedavgm" ? { momentum: 0.9, serverLr: 0.5 } : {};
    const config = resolveStrategyConfig({ strategy: name, ...(options as object) });
    const rounds = [0, 1, 2, 3].map((i) => randomUpdates(200 + i, 3));
    let global: TensorMap = randomUpdates(300, 1)[0].tensors;
    let engineGlobal = global;
    let memState: StrategyState = initialStrategyState(config);
    let memTensors = {};
    let json: Json | undefined;
    let files: Record<string, Buffer> = {};
    for (const updates of rounds) {
      const mem = aggregateInMemory(config, { updates, global, state: memState, stateTensors: memTensors });
      ({ model: global, state: memState, stateTensors: memTensors } = mem);
      const got = await engineRound(name, options, updates, { global: engineGlobal, state: json, stateFiles: files });
      engineGlobal = got.model;
      json = JSON.parse(JSON.stringify(got.state)); // as the checkpoint stores it
      files = got.stateFiles;
      expect(Object.keys(files).sort()).toEqual(Object.keys(mem.stateTensors).sort());
    }
    // bit-identical: F64 state files, same arithmetic in the same order
    for (const t of Object.keys(global)) expect(Array.from(engineGlobal[t])).toEqual(Array.from(global[t]));
    expect(json).toEqual(memState);
  });

  test("a resumed optimizer without its moment files is refused (no silent reset)", async () => {
    const updates = randomUpdates(1, 2);
    const global = randomUpdates(2, 1)[0].tensors;
    const first = await engineRound("fedadam", {}, updates, { global });
    await expect(engineRound("fedadam", {}, updates, { global, state: first.state, stateFiles: { m: first.stateFiles.m } })).rejects.toThrow(
      new StrategyStateError("strategy state says 1 optimizer step(s) were taken but state tensor file(s) v are missing"),
    );
    await expect(engineRound("fedyogi", {}, updates, { global, state: first.state, stateFiles: first.stateFiles })).rejects.toThrow(
      /strategy state was written by "fedadam", but this round runs "fedyogi"/,
    );
  });

  test("an optimizer without a global model is refused before reading data", async () => {
    await expect(engineRound("fedadam", {}, randomUpdates(1, 2))).rejects.toThrow(/needs the round's global model/);
  });
});

describe("central DP on the engine", () => {
  const options: Json = { clipping: { mode: "fixed", norm: 0.3 }, dp: { noiseMultiplier: 0.8, delta: 1e-5 }, insecureTestNoiseSeed: "engine-dp" };
  test("seeded noise reproduces; round 2 draws fresh noise; report carries epsilon and not the key", async () => {
    const updates = randomUpdates(5, 4);
    const global = randomUpdates(6, 1)[0].tensors;
    const a = await engineRound("fedavg", options, updates, { global });
    const b = await engineRound("fedavg", options, updates, { global });
    close(a.model, b.model, 0);
    const config = resolveStrategyConfig({ strategy: "fedavg", ...(options as object), insecureTestNoiseSeed: undefined });
    const clean = aggregateInMemory({ ...config, dp: undefined }, { updates, global, state: { ...initialStrategyState(config), accountant: undefined } });
    // noise has the calibrated stddev z*C/m = 0.8*0.3/4 = 0.06 (32 coordinates: loose bound)
    const diffs = Object.keys(clean.model).flatMap((t) => Array.from(a.model[t], (v, i) => v - clean.model[t][i]));
    const std = Math.sqrt(diffs.reduce((s, d) => s + d * d, 0) / diffs.length);
    expect(std).toBeGreaterThan(0.03);
    expect(std).toBeLessThan(0.09);
    const report = a.report as { noiseStddev: number; privacy: { epsilon: number; rounds: number }; insecureDeterministicNoise: boolean };
    expect(report.noiseStddev).toBeCloseTo(0.06, 12);
    expect(report.privacy.rounds).toBe(1);
    expect(report.insecureDeterministicNoise).toBe(true);
    expect(JSON.stringify(a.report)).not.toMatch(/noiseKey/);
    expect(JSON.stringify(a.state)).not.toMatch(/noiseKey/);
    const second = await engineRound("fedavg", options, updates, { global, state: a.state });
    expect(second.model["layer.a"][0]).not.toBe(a.model["layer.a"][0]);
    expect((second.report as { privacy: { epsilon: number; rounds: number } }).privacy.rounds).toBe(2);
    expect((second.report as { privacy: { epsilon: number } }).privacy.epsilon).toBeGreaterThan(report.privacy.epsilon);
  });
  test("without a test seed, two runs differ", async () => {
    const updates = randomUpdates(5, 4);
    const global = randomUpdates(6, 1)[0].tensors;
    const { insecureTestNoiseSeed: _unused, ...secure } = options as { insecureTestNoiseSeed: string };
    const a = await engineRound("fedavg", secure, updates, { global });
    const b = await engineRound("fedavg", secure, updates, { global });
    expect(a.model["layer.a"][0]).not.toBe(b.model["layer.a"][0]);
    expect((a.report as Record<string, unknown>).insecureDeterministicNoise).toBeUndefined();
  });
});

describe("spec aggregation sections (lib/spec) create the same strategies", () => {
  const spec = (aggregation: unknown) => ({
    name: "fraud-demo",
    rounds: 2,
    silos: ["east", "west", "north"].map((name) => ({ name, compute: { type: "local" }, inputs: { data: `data/${name}` } })),
    training: { command: "node train.js --data ${{inputs.data}} --out ${{outputs.model_update}}" },
    policy: { minSilos: 3 },
    initialModel: "models/start.safetensors",
    aggregation,
  });
  test.each([
    { strategy: "fedadam", serverLr: 0.05 },
    { strategy: "fedadagrad" },
    { strategy: "trimmed-mean" },
    { strategy: "krum", byzantine: 0 },
    { strategy: "fedavg", clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 0.5 } },
    { strategy: "fedavgm", momentum: 0.9, clipping: { mode: "adaptive", initialNorm: 0.2, clippedCountStddev: 1 }, dp: { noiseMultiplier: 0.5 } },
  ])("$strategy", (aggregation) => {
    const { strategy, ...options } = validateSpec(spec(aggregation)).aggregation as { strategy: string } & Record<string, Json>;
    const created = createStrategy(strategy, options);
    expect(created.name).toBe(strategy);
    const resolved = resolveStrategyConfig({ strategy, ...options });
    if (["fedadam", "fedyogi", "fedadagrad"].includes(strategy)) expect((resolveStrategyOptions(strategy, options).options as { tau: number }).tau).toBe(1e-3);
    if (resolved.clipping?.mode === "adaptive") expect(resolved.clipping).toEqual({ mode: "adaptive", initialNorm: 0.2, targetQuantile: 0.5, learningRate: 0.2, clippedCountStddev: 1 });
    if (resolved.dp) expect(resolved.dp.delta).toBe(1e-5);
  });
});
