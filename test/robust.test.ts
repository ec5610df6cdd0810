/**
 * Robustness on a small synthetic federation: 3-class Gaussian blobs, 6
 * non-IID silos training a softmax classifier; one silo sends its update scaled by 100
 * (w = x + 100 * (w_local - x)). FedAvg degrades; median, trimmed-mean and krum stay within
 * 5 percentage points of the clean FedAvg run's accuracy. Runs through the same plan/combine code
 * as the streaming engine (in memory, for speed).
 */
import { aggregateInMemory, type TensorMap, resolveStrategyConfig, type StrategyOptions } from "./helpers/inMemory";
import { initialStrategyState } from "../lib/aggregation/strategies/roundPlan";
import { rng, normal } from "./helpers/random";

const CLASSES = 3;
const FEATURES = 2;
interface Data {
  x: number[][];
  y: number[];
}

function blobs(r: () => number, n: number, classWeights: number[]): Data {
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < n; i++) {
    let u = r();
    let c = 0;
    while (c < CLASSES - 1 && u > classWeights[c]) u -= classWeights[c++];
    const angle = (2 * Math.PI * c) / CLASSES;
    x.push([1.5 * Math.cos(angle) + normal(r), 1.5 * Math.sin(angle) + normal(r)]);
    y.push(c);
  }
  return { x, y };
}

function logits(m: TensorMap, x: number[]): number[] {
  return Array.from({ length: CLASSES }, (_, c) => m.bias[c] + x.reduce((s, v, f) => s + m.kernel[c * FEATURES + f] * v, 0));
}

function accuracy(m: TensorMap, data: Data): number {
  let ok = 0;
  data.x.forEach((x, i) => {
    const z = logits(m, x);
    if (z.indexOf(Math.max(...z)) === data.y[i]) ok++;
  });
  return ok / data.y.length;
}

/** Local training: full-batch gradient descent on softmax cross-entropy. */
function train(global: TensorMap, data: Data, epochs = 5, lr = 0.5): TensorMap {
  const m = { kernel: Float64Array.from(global.kernel), bias: Float64Array.from(global.bias) };
  for (let e = 0; e < epochs; e++) {
    const gk = new Float64Array(CLASSES * FEATURES);
    const gb = new Float64Array(CLASSES);
    data.x.forEach((x, i) => {
      const z = logits(m, x);
      const max = Math.max(...z);
      const exp = z.map((v) => Math.exp(v - max));
      const sum = exp.reduce((a, b) => a + b, 0);
      for (let c = 0; c < CLASSES; c++) {
        const g = exp[c] / sum - (data.y[i] === c ? 1 : 0);
        gb[c] += g;
        for (let f = 0; f < FEATURES; f++) gk[c * FEATURES + f] += g * x[f];
      }
    });
    const n = data.y.length;
    m.kernel.forEach((_, j) => (m.kernel[j] -= (lr * gk[j]) / n));
    m.bias.forEach((_, j) => (m.bias[j] -= (lr * gb[j]) / n));
  }
  return m;
}

function federate(options: StrategyOptions, silos: Data[], poisoned: boolean, rounds = 15): TensorMap {
  const config = resolveStrategyConfig(options);
  let global: TensorMap = { kernel: new Float64Array(CLASSES * FEATURES), bias: new Float64Array(CLASSES) };
  let state = initialStrategyState(config);
  for (let round = 0; round < rounds; round++) {
    const updates = silos.map((data, i) => {
      const local = train(global, data);
      if (poisoned && i === 0) {
        for (const name of ["kernel", "bias"]) local[name] = local[name].map((v, j) => global[name][j] + 100 * (v - global[name][j]));
      }
      return { tensors: local, numExamples: data.y.length };
    });
    ({ model: global, state } = aggregateInMemory(config, { updates, global, state }));
  }
  return global;
}

describe("one silo sending updates scaled by 100", () => {
  const r = rng(2026);
  // non-IID: each silo's dominant class (60%) rotates
  const silos = Array.from({ length: 6 }, (_, i) =>
    blobs(
      r,
      150,
      [0, 1, 2].map((c) => (c === i % 3 ? 0.6 : 0.2)),
    ),
  );
  const testSet = blobs(r, 3000, [1 / 3, 1 / 3, 1 / 3]);
  const clean = accuracy(federate({ strategy: "fedavg" }, silos, false), testSet);

  test("clean FedAvg learns the task", () => {
    expect(clean).toBeGreaterThan(0.75);
  });
  test("poisoned FedAvg degrades beyond the 5-point band", () => {
    // observed: clean 0.828, poisoned fedavg 0.730 (median 0.827, trimmed-mean 0.826, krum 0.805)
    expect(accuracy(federate({ strategy: "fedavg" }, silos, true), testSet)).toBeLessThan(clean - 0.05);
  });
  test.each<[string, StrategyOptions]>([
    ["median", { strategy: "median" }],
    ["trimmed-mean", { strategy: "trimmed-mean", beta: 0.2 }],
    ["krum", { strategy: "krum", byzantine: 1 }],
    ["multi-krum", { strategy: "multi-krum", byzantine: 1, keep: 4 }],
    ["fedavg with clipping", { strategy: "fedavg", clipping: { mode: "fixed", norm: 1 } }],
  ])("%s stays within 5 points of the clean run", (_label, options) => {
    expect(accuracy(federate(options, silos, true), testSet)).toBeGreaterThan(clean - 0.05);
  });
});
