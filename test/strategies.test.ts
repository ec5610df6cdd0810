/**
 * Strategies: golden values (small inputs worked by hand from each rule's definition, within 1e-6),
 * each strategy against a plain
 * reference written here on random updates (several seeds, with and without an outlier silo),
 * misuse errors, and FedOpt state round-tripped through JSON equal to an uninterrupted run.
 */
import { StrategyConfigError, StrategyInputError, StrategyStateError } from "../lib/aggregation/strategies/errors";
import { resolveStrategyOptions } from "../lib/aggregation/registry";
import type { Json } from "../lib/aggregation/strategy";
import { aggregateInMemory, type InMemoryUpdate, type TensorMap, resolveStrategyConfig, type StrategyOptions } from "./helpers/inMemory";
import { krumScores } from "../lib/aggregation/strategies/krum";
import { initialStrategyState, type StrategyState } from "../lib/aggregation/strategies/roundPlan";
import { medianChunk, trimmedMeanCuts } from "../lib/aggregation/strategies/robustKernels";
import { rng, normal } from "./helpers/random";

const TOL = 1e-6;

/** Updates whose single tensor "w" has 4 equal entries `value`. */
function scalarUpdates(values: number[], numExamples?: number[]): InMemoryUpdate[] {
  return values.map((v, i) => ({ tensors: { w: new Float64Array(4).fill(v) }, numExamples: numExamples?.[i] ?? 1 }));
}

function run(options: StrategyOptions, updates: InMemoryUpdate[], extra: { global?: TensorMap; state?: StrategyState; chunkSize?: number } = {}) {
  const config = resolveStrategyConfig(options);
  return aggregateInMemory(config, { updates, global: extra.global, state: extra.state ?? initialStrategyState(config), chunkSize: extra.chunkSize });
}

function expectAll(actual: Float64Array, expected: number, tol = TOL): void {
  for (const v of actual) expect(Math.abs(v - expected)).toBeLessThan(tol);
}

describe("golden values (worked by hand from the definitions)", () => {
  test("fedavg 1,2,3 with n=1,1,2 -> 2.25", () => {
    expectAll(run({ strategy: "fedavg" }, scalarUpdates([1, 2, 3], [1, 1, 2])).model.w, 2.25);
  });
  test("median 0.2, 1.0, 0.5 -> 0.5; even K 1,2,3,10 -> 2.5", () => {
    expectAll(run({ strategy: "median" }, scalarUpdates([0.2, 1.0, 0.5])).model.w, 0.5);
    expectAll(run({ strategy: "median" }, scalarUpdates([1, 2, 3, 10], [100, 1, 1, 1])).model.w, 2.5);
  });
  test("trimmed mean: Flower's rows with beta=0.25 -> all 0.5", () => {
    const rows = [
      [0.5, 0.5, 0.5, 0.5],
      [1, 0.2, 0.5, 1],
      [0.2, 0.5, 1, 0.2],
      [0.5, 1, 0.2, 0.5],
    ];
    const updates = rows.map((r) => ({ tensors: { w: Float64Array.from(r) }, numExamples: 1 }));
    const out = run({ strategy: "trimmed-mean", beta: 0.25 }, updates).model.w;
    expect(Array.from(out)).toEqual([0.5, 0.5, 0.5, 0.5].map((v) => expect.closeTo(v, 9)));
  });
  test("trimmed mean scalars 0.5,1,2,100: beta 0.25 -> 1.5, beta 0.2 -> 25.875 (no trimming)", () => {
    expectAll(run({ strategy: "trimmed-mean", beta: 0.25 }, scalarUpdates([0.5, 1, 2, 100])).model.w, 1.5);
    expectAll(run({ strategy: "trimmed-mean", beta: 0.2 }, scalarUpdates([0.5, 1, 2, 100])).model.w, 25.875);
    expectAll(run({ strategy: "trimmed-mean" }, scalarUpdates([0.5, 1, 2, 100])).model.w, 25.875); // default beta 0.2
  });
  test("trimmed mean cut is int(beta*K) in float64: 0.29*100 -> 28; 0.25*5 -> 1", () => {
    expect(trimmedMeanCuts(0.29, 100)).toEqual({ lowercut: 28, uppercut: 72 });
    expect(trimmedMeanCuts(0.25, 5)).toEqual({ lowercut: 1, uppercut: 4 });
  });
  test("krum f=1: 0.2, 0.7, 1.0 -> 0.7 (scores [1.0,.36,.36], first on the tie)", () => {
    const result = run({ strategy: "krum", byzantine: 1 }, scalarUpdates([0.2, 0.7, 1.0]));
    expectAll(result.model.w, 0.7);
    expect(result.plan.selected).toEqual([1]);
    // distances are over the whole flattened model (4 coordinates): 4x the per-coordinate ones
    const d = [0, 1.0, 2.56, 1.0, 0, 0.36, 2.56, 0.36, 0].map((v) => v * 4);
    expect(krumScores({ k: 3, values: d }, [0, 1, 2], 1).map((s) => s / 4)).toEqual([1.0, 0.36, 0.36].map((v) => expect.closeTo(v, 9)));
  });
  test("multi-krum f=1 keep=2: 0.2,0.5,1.0 -> 0.35 equal n; 0.425 with n=5,15", () => {
    const equal = run({ strategy: "multi-krum", byzantine: 1, keep: 2 }, scalarUpdates([0.2, 0.5, 1.0]));
    expect(equal.plan.selected).toEqual([0, 1]);
    expectAll(equal.model.w, 0.35);
    expectAll(run({ strategy: "multi-krum", byzantine: 1, keep: 2 }, scalarUpdates([0.2, 0.5, 1.0], [5, 15, 1])).model.w, 0.425);
  });
  test("bulyan f=0: 0.2,0.5,0.7,12,0.1,0.1 -> mean 2.2667", () => {
    expectAll(run({ strategy: "bulyan", byzantine: 0 }, scalarUpdates([0.2, 0.5, 0.7, 12, 0.1, 0.1])).model.w, 13.6 / 6);
  });
  test("bulyan f=1, K=7: 0,.1,.2,.3,.4,.5,100 -> 0.2", () => {
    const result = run({ strategy: "bulyan", byzantine: 1 }, scalarUpdates([0, 0.1, 0.2, 0.3, 0.4, 0.5, 100]));
    expect(result.plan.selected).toHaveLength(5);
    expect(result.plan.selected).not.toContain(6);
    expectAll(result.model.w, 0.2);
  });

  const zero = () => ({ w: new Float64Array(4) });
  test("fedadam (no bias correction) eta=0.1 tau=1e-3 -> 0.0990099; tau=1e-9 -> 0.0999999990", () => {
    const r = run({ strategy: "fedadam" }, scalarUpdates([1]), { global: zero() });
    expectAll(r.model.w, (0.1 * 0.1) / (0.1 + 1e-3));
    expect(r.model.w[0]).toBeCloseTo(0.0990099, 6);
    expectAll(r.stateTensors.m!.w, 0.1);
    expectAll(r.stateTensors.v!.w, 0.01);
    const r9 = run({ strategy: "fedadam", tau: 1e-9 }, scalarUpdates([1]), { global: zero() });
    expect(Math.abs(r9.model.w[0] - 0.099999999)).toBeLessThan(1e-9);
    // and NOT Flower's bias-corrected 0.0735109 / 0.074246
    expect(Math.abs(r.model.w[0] - 0.0735109)).toBeGreaterThan(0.02);
  });
  test("fedyogi eta=1e-2 tau=1e-3 -> 0.00990099 (m=0.1, v=0.01)", () => {
    const r = run({ strategy: "fedyogi" }, scalarUpdates([1]), { global: zero() });
    expect(r.model.w[0]).toBeCloseTo(0.00990099, 8);
    expectAll(r.stateTensors.v!.w, 0.01);
  });
  test("fedadagrad eta=0.1: tau=1e-9 -> 0.1; tau=1e-3 (default) -> 0.0999001", () => {
    expectAll(run({ strategy: "fedadagrad", tau: 1e-9 }, scalarUpdates([1]), { global: zero() }).model.w, 0.1);
    const r = run({ strategy: "fedadagrad" }, scalarUpdates([1]), { global: zero() });
    expect(r.model.w[0]).toBeCloseTo(0.0999001, 7);
    expect(r.stateTensors.m).toBeUndefined();
  });
  test("fedavgm lr=1 mu=0.9, averages 1.0 then 1.5 from x=0: x=1.0 then 2.4", () => {
    const opts = { strategy: "fedavgm", serverLr: 1, momentum: 0.9 };
    const r1 = run(opts, scalarUpdates([1.0]), { global: zero() });
    expectAll(r1.stateTensors.momentum!.w, -1.0);
    expectAll(r1.model.w, 1.0);
    const config = resolveStrategyConfig(opts);
    const r2 = aggregateInMemory(config, { updates: scalarUpdates([1.5]), global: r1.model, state: r1.state, stateTensors: r1.stateTensors });
    expectAll(r2.stateTensors.momentum!.w, -1.4);
    expectAll(r2.model.w, 2.4);
  });
});

// ---------- plain reference implementations (whole models as number[]) ----------
type Model = number[];
const flat = (u: InMemoryUpdate): Model => ["a", "b"].flatMap((n) => Array.from(u.tensors[n]));
const sqDist = (a: Model, b: Model) => a.reduce((s, v, i) => s + (v - b[i]) ** 2, 0);
const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
const refMedian = (xs: number[]) => {
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const refTrimmed = (xs: number[], beta: number) => {
  const s = sorted(xs);
  const cut = Math.floor(beta * xs.length);
  const kept = s.slice(cut, xs.length - cut);
  return kept.reduce((a, b) => a + b, 0) / kept.length;
};
function refKrumOrder(models: Model[], idx: number[], f: number): number[] {
  const kk = Math.max(1, idx.length - f - 2);
  const scores = idx.map((i) =>
    sorted(idx.filter((j) => j !== i).map((j) => sqDist(models[i], models[j])))
      .slice(0, kk)
      .reduce((a, b) => a + b, 0),
  );
  return idx
    .map((i, p) => [i, scores[p]])
    .sort((x, y) => x[1] - y[1] || x[0] - y[0])
    .map((x) => x[0]);
}
function refWeighted(models: Model[], idx: number[], n: number[]): Model {
  const total = idx.reduce((s, i) => s + n[i], 0);
  return models[0].map((_, c) => idx.reduce((s, i) => s + (n[i] / total) * models[i][c], 0));
}
function refBulyan(models: Model[], f: number): Model {
  let cand = models.map((_, i) => i);
  const sel: number[] = [];
  while (sel.length < models.length - 2 * f) {
    const pick = refKrumOrder(models, cand, f)[0];
    sel.push(pick);
    cand = cand.filter((c) => c !== pick);
  }
  const beta = models.length - 4 * f;
  return models[0].map((_, c) => {
    const vals = sel.map((i) => models[i][c]);
    const med = refMedian(vals);
    const closest = [...vals].sort((x, y) => Math.abs(x - med) - Math.abs(y - med)).slice(0, beta);
    return closest.reduce((a, b) => a + b, 0) / beta;
  });
}

function randomRound(seed: number, k: number, outlier: boolean): { updates: InMemoryUpdate[]; n: number[] } {
  const r = rng(seed);
  const center = Array.from({ length: 37 }, () => normal(r));
  const n = Array.from({ length: k }, () => 1 + Math.floor(r() * 100));
  const updates = n.map((ni, i) => {
    const values = center.map((c) => c + 0.1 * normal(r) * (outlier && i === k - 1 ? 1000 : 1));
    return { tensors: { a: Float64Array.from(values.slice(0, 25)), b: Float64Array.from(values.slice(25)) }, numExamples: ni };
  });
  return { updates, n };
}

describe("each strategy equals a plain reference on random updates (chunked streaming path)", () => {
  const cases: [number, boolean][] = [
    [1, false],
    [2, false],
    [3, true],
    [4, true],
  ];
  test.each(cases)("seed %i, outlier silo %s", (seed, outlier) => {
    const k = 11;
    const { updates, n } = randomRound(seed, k, outlier);
    const models = updates.map(flat);
    const out = (opts: StrategyOptions) => {
      const r = run(opts, updates, { chunkSize: 7 }); // chunks straddle tensor boundaries of a (25) and b (12)
      return flat({ tensors: r.model, numExamples: 0 });
    };
    const close = (actual: Model, expected: Model) => actual.forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThan(1e-9));
    const all = models.map((_, i) => i);
    close(out({ strategy: "fedavg" }), refWeighted(models, all, n));
    close(
      out({ strategy: "median" }),
      models[0].map((_, c) => refMedian(models.map((m) => m[c]))),
    );
    close(
      out({ strategy: "trimmed-mean", beta: 0.2 }),
      models[0].map((_, c) =>
        refTrimmed(
          models.map((m) => m[c]),
          0.2,
        ),
      ),
    );
    close(out({ strategy: "krum", byzantine: 2 }), models[refKrumOrder(models, all, 2)[0]]);
    close(out({ strategy: "multi-krum", byzantine: 2, keep: 5 }), refWeighted(models, refKrumOrder(models, all, 2).slice(0, 5), n));
    close(out({ strategy: "bulyan", byzantine: 2 }), refBulyan(models, 2));
    if (outlier) {
      // the outlier is never what Krum picks, nor among Bulyan's selection
      expect(run({ strategy: "krum", byzantine: 1 }, updates).plan.selected).not.toContain(k - 1);
      expect(run({ strategy: "bulyan", byzantine: 2 }, updates).plan.selected).not.toContain(k - 1);
    }
  });

  test.each([7, 8])("with clipping (seed %i): rules see x + min(1, C/||delta||) * delta", (seed) => {
    const { updates, n } = randomRound(seed, 9, true);
    const r = rng(seed + 1000);
    const xs = Array.from({ length: 37 }, () => normal(r));
    const global: TensorMap = { a: Float64Array.from(xs.slice(0, 25)), b: Float64Array.from(xs.slice(25)) };
    const norms = updates.map((u) => Math.sqrt(sqDist(flat(u), xs)));
    const clipNorm = [...norms].sort((p, q) => p - q)[4]; // about half the updates get clipped
    const clipped = updates.map((u, i) => flat(u).map((v, c) => xs[c] + Math.min(1, clipNorm / norms[i]) * (v - xs[c])));
    const out = (opts: StrategyOptions) => flat({ tensors: run({ ...opts, clipping: { mode: "fixed", norm: clipNorm } }, updates, { global, chunkSize: 5 }).model, numExamples: 0 });
    const close = (actual: Model, expected: Model) => actual.forEach((v, i) => expect(Math.abs(v - expected[i])).toBeLessThan(1e-9));
    const all = clipped.map((_, i) => i);
    close(out({ strategy: "fedavg" }), refWeighted(clipped, all, n));
    close(
      out({ strategy: "median" }),
      clipped[0].map((_, c) => refMedian(clipped.map((m) => m[c]))),
    );
    close(out({ strategy: "krum", byzantine: 2 }), clipped[refKrumOrder(clipped, all, 2)[0]]);
    close(out({ strategy: "bulyan", byzantine: 1 }), refBulyan(clipped, 1));
  });

  test.each([5, 6])("server optimizers over 3 rounds equal the reference (seed %i)", (seed) => {
    const r = rng(seed);
    const size = 30;
    const rounds = [0, 1, 2].map((i) => randomRound(seed * 10 + i, 4, false));
    for (const name of ["fedavgm", "fedadam", "fedyogi", "fedadagrad"] as const) {
      const opts: StrategyOptions = name === "fedavgm" ? { strategy: name, serverLr: 0.7, momentum: 0.9 } : { strategy: name, serverLr: 0.05 + r() * 0.1 };
      const config = resolveStrategyConfig(opts);
      let x: Model = Array.from({ length: size + 7 }, () => normal(r));
      let global: TensorMap = { a: Float64Array.from(x.slice(0, 25)), b: Float64Array.from(x.slice(25)) };
      let state = initialStrategyState(config);
      let stateTensors = {};
      let mom = x.map(() => 0);
      let m = x.map(() => 0);
      let v = x.map(() => 0);
      const {
        serverLr: lr,
        momentum: mu = 0,
        beta1: b1 = 0,
        beta2: b2 = 0,
        tau = 0,
      } = resolveStrategyOptions(name, (({ strategy: _name, ...rest }) => rest)(opts) as Json).options as Record<string, number>;
      rounds.forEach(({ updates, n }, t) => {
        const avg = refWeighted(
          updates.map(flat),
          updates.map((_, i) => i),
          n,
        );
        if (name === "fedavgm") {
          mom = x.map((xi, c) => (t === 0 ? xi - avg[c] : mu * mom[c] + (xi - avg[c])));
          x = x.map((xi, c) => xi - lr * mom[c]);
        } else {
          const d = x.map((xi, c) => avg[c] - xi);
          m = name === "fedadagrad" ? d : m.map((mc, c) => b1 * mc + (1 - b1) * d[c]);
          v = v.map((vc, c) => (name === "fedadam" ? b2 * vc + (1 - b2) * d[c] ** 2 : name === "fedyogi" ? vc - (1 - b2) * d[c] ** 2 * Math.sign(vc - d[c] ** 2) : vc + d[c] ** 2));
          x = x.map((xi, c) => xi + (lr * m[c]) / (Math.sqrt(v[c]) + tau));
        }
        const res = aggregateInMemory(config, { updates, global, state, stateTensors, chunkSize: 8 });
        global = res.model;
        state = res.state;
        stateTensors = res.stateTensors;
        flat({ tensors: global, numExamples: 0 }).forEach((val, c) => expect(Math.abs(val - x[c])).toBeLessThan(1e-9));
      });
      expect(state.optimizerSteps).toBe(3);
    }
  });
});

describe("state round-tripped through JSON equals an uninterrupted run", () => {
  test.each(["fedadam", "fedyogi", "fedadagrad", "fedavgm"])("%s over 4 rounds", (name) => {
    const opts: StrategyOptions = name === "fedavgm" ? { strategy: name, momentum: 0.5 } : { strategy: name };
    const config = resolveStrategyConfig(opts);
    const rounds = [0, 1, 2, 3].map((i) => randomRound(100 + i, 3, false).updates);
    const init: TensorMap = { a: new Float64Array(25).fill(0.3), b: new Float64Array(12).fill(-0.2) };
    // uninterrupted
    let g1 = init;
    let s1 = initialStrategyState(config);
    let t1 = {};
    for (const updates of rounds) ({ model: g1, state: s1, stateTensors: t1 } = aggregateInMemory(config, { updates, global: g1, state: s1, stateTensors: t1 }));
    // "restarted" each round: everything passes through JSON text (tensors as plain arrays)
    let g2 = init;
    let saved = JSON.stringify({ state: initialStrategyState(config), tensors: {} });
    for (const updates of rounds) {
      const restored = JSON.parse(saved) as { state: StrategyState; tensors: Record<string, Record<string, number[]>> };
      const stateTensors = Object.fromEntries(Object.entries(restored.tensors).map(([kind, map]) => [kind, Object.fromEntries(Object.entries(map).map(([t, arr]) => [t, Float64Array.from(arr)]))]));
      const res = aggregateInMemory(config, { updates, global: g2, state: restored.state, stateTensors });
      g2 = res.model;
      saved = JSON.stringify({
        state: res.state,
        tensors: Object.fromEntries(Object.entries(res.stateTensors).map(([kind, map]) => [kind, Object.fromEntries(Object.entries(map ?? {}).map(([t, arr]) => [t, Array.from(arr)]))])),
      });
    }
    expect(Array.from(g2.a)).toEqual(Array.from(g1.a));
    expect(Array.from(g2.b)).toEqual(Array.from(g1.b));
    expect(JSON.parse(saved).state).toEqual(s1);
  });
});

describe("misuse gives a clear error", () => {
  test("bulyan with n < 4f+3", () => {
    expect(() => run({ strategy: "bulyan", byzantine: 1 }, scalarUpdates([1, 2, 3, 4, 5, 6]))).toThrow(
      new StrategyInputError("bulyan", "needs at least 4f+3 = 7 updates for byzantine f=1, got 6; lower --byzantine or use more silos"),
    );
  });
  test("trimmed mean beta >= 0.5 is refused: int(beta*K) from each end could leave nothing to average", () => {
    expect(() => resolveStrategyConfig({ strategy: "trimmed-mean", beta: 0.5 })).toThrow(new StrategyConfigError("aggregation.beta", "a number < 0.5", 0.5));
    // the kernel still refuses a cut that leaves nothing (beta=0.5, K=4: int(2.0)=2 from each end)
    expect(() => trimmedMeanCuts(0.5, 4)).toThrow(
      new StrategyInputError("trimmed-mean", "beta=0.5 with 4 updates cuts int(0.5*4)=2 from each end and leaves nothing to average; use a smaller beta or more updates"),
    );
    // beta just below 0.5 with K=5 keeps the middle value (scipy semantics: int(0.49*5) = 2)
    expectAll(run({ strategy: "trimmed-mean", beta: 0.49 }, scalarUpdates([1, 2, 30, 4, 5])).model.w, 4);
  });
  test("trimmed mean beta out of range names the option", () => {
    expect(() => resolveStrategyConfig({ strategy: "trimmed-mean", beta: 1 })).toThrow("aggregation.beta: expected a number < 0.5, got 1");
    expect(() => resolveStrategyConfig({ strategy: "trimmed-mean", beta: -0.1 })).toThrow("aggregation.beta: expected a number >= 0, got -0.1");
  });
  test("server optimizer without a global model", () => {
    expect(() => run({ strategy: "fedadam" }, scalarUpdates([1, 2]))).toThrow("fedadam: needs the current global model (--global): server optimizers and clipping work on deltas w - x");
  });
  test("unknown strategy, unknown option, multi-krum without keep, keep > K, wrong state", () => {
    expect(() => resolveStrategyConfig({ strategy: "fedmedian" })).toThrow(StrategyConfigError);
    expect(() => resolveStrategyConfig({ strategy: "fedmedian" })).toThrow(/aggregation.strategy: expected one of fedavg, fedavgm/);
    expect(() => resolveStrategyConfig({ strategy: "median", beta: 0.1 })).toThrow("aggregation.beta: expected no such option for median (it takes none), got 0.1");
    expect(() => resolveStrategyConfig({ strategy: "multi-krum" })).toThrow("aggregation.byzantine: expected a number, got undefined");
    expect(() => resolveStrategyConfig({ strategy: "multi-krum", byzantine: 0 })).toThrow("aggregation.keep: expected a number, got undefined");
    expect(() => resolveStrategyConfig({ strategy: "multi-krum", byzantine: 0, keep: 0 })).toThrow("aggregation.keep: expected a number >= 1, got 0");
    expect(() => run({ strategy: "multi-krum", byzantine: 0, keep: 4 }, scalarUpdates([1, 2, 3]))).toThrow("multi-krum: keep=4 exceeds the 3 valid updates");
    expect(() => resolveStrategyConfig({ strategy: "fedadam", beta1: 1 })).toThrow("aggregation.beta1: expected a number < 1, got 1");
    const config = resolveStrategyConfig({ strategy: "median" });
    expect(() => aggregateInMemory(config, { updates: scalarUpdates([1]), state: { strategy: "krum", optimizerSteps: 0 } })).toThrow(StrategyStateError);
  });
  test("dp around a robust rule is refused (sensitivity holds for an equal-weight mean only)", () => {
    expect(() => resolveStrategyConfig({ strategy: "median", clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 1, delta: 1e-5 } })).toThrow(/aggregation.dp: expected absent for median/);
    expect(() => resolveStrategyConfig({ strategy: "fedavg", dp: { noiseMultiplier: 1, delta: 1e-5 } })).toThrow(/aggregation.clipping: expected a clipping section when dp is set/);
  });
});

test("median kernel with even and odd K on raw chunks", () => {
  const out = new Float64Array(2);
  medianChunk([Float64Array.of(1, 5), Float64Array.of(3, 4), Float64Array.of(2, 9)], out);
  expect(Array.from(out)).toEqual([2, 5]);
});
