/**
 * Clipping, central DP noise, adaptive clipping, the CSPRNG Gaussian source and the RDP accountant.
 * Accountant reference numbers (cited per test) come from the Opacus and Google dp_accounting /
 * TF Privacy test suites.
 */
import { computeRdp, DEFAULT_RDP_ORDERS, epsilonFromRdp, logErfc, RdpAccountant, sampledGaussianRdp } from "../lib/aggregation/privacy/accountant";
import { adaptiveUpdateNoiseMultiplier, centralDpNoiseStddev, clipRowChunk, clipScale, nextAdaptiveClipNorm, countNoiseStddev } from "../lib/aggregation/privacy/clipping";
import { PrivacyConfigError } from "../lib/aggregation/privacy/errors";
import { createGaussianSource } from "../lib/aggregation/privacy/gaussian";
import { aggregateInMemory, type InMemoryUpdate, resolveStrategyConfig } from "./helpers/inMemory";
import { initialStrategyState } from "../lib/aggregation/strategies/roundPlan";

describe("clipping and DP golden values (worked by hand from the definitions)", () => {
  test("flat clip [3,4] with C=1 -> [0.6, 0.8]", () => {
    const scale = clipScale(5, 1);
    const out = new Float64Array(2);
    clipRowChunk(Float64Array.of(3, 4), new Float64Array(2), scale, out);
    expect(out[0]).toBeCloseTo(0.6, 12);
    expect(out[1]).toBeCloseTo(0.8, 12);
    expect(clipScale(0.5, 1)).toBe(1);
    expect(clipScale(0, 1)).toBe(1);
  });
  test("sigma = z*C/m: z=1, C=0.1, m=10 -> 0.01", () => {
    expect(centralDpNoiseStddev(1.0, 0.1, 10)).toBeCloseTo(0.01, 12);
  });
  test("adaptive clipping with the paper's sign: C0=0.1, eta=0.2, gamma=0.5, 20% unclipped -> 0.10618365", () => {
    const { clipNorm } = nextAdaptiveClipNorm({ clipNorm: 0.1, unclippedCount: 2, numUpdates: 10, countNoise: 0, targetQuantile: 0.5, learningRate: 0.2 });
    expect(Math.abs(clipNorm - 0.10618365)).toBeLessThan(1e-8);
    expect(Math.abs(clipNorm - 0.09417645)).toBeGreaterThan(0.01); // Flower's inverted sign
  });
  test("noise split z=1, m=100 (sigma_b=5) -> z_delta=1.0050378; z >= 2 sigma_b is an error", () => {
    expect(countNoiseStddev({}, 100)).toBe(5);
    expect(Math.abs(adaptiveUpdateNoiseMultiplier(1, 5) - 1.0050378)).toBeLessThan(1e-7);
    expect(() => adaptiveUpdateNoiseMultiplier(1, 0.5)).toThrow(PrivacyConfigError);
    expect(() => adaptiveUpdateNoiseMultiplier(1, 0.5)).toThrow(
      "clipping.clippedCountStddev: expected more than noiseMultiplier/2 = 0.5 (z must be < 2*sigma_b; sigma_b defaults to updates/20), got 0.5",
    );
  });
});

describe("CSPRNG Gaussian source", () => {
  test("moments of 200k samples match N(0,1)", () => {
    const source = createGaussianSource();
    expect(source.deterministic).toBe(false);
    const n = 200_000;
    let s1 = 0;
    let s2 = 0;
    let s4 = 0;
    for (let i = 0; i < n; i++) {
      const x = source.next();
      s1 += x;
      s2 += x * x;
      s4 += x ** 4;
    }
    expect(Math.abs(s1 / n)).toBeLessThan(0.015); // 5 standard errors
    expect(Math.abs(s2 / n - 1)).toBeLessThan(0.02);
    expect(Math.abs(s4 / n - 3)).toBeLessThan(0.12);
  });
  test("unseeded streams differ; a test seed reproduces exactly and differs per seed", () => {
    const a = createGaussianSource();
    const b = createGaussianSource();
    expect(a.next()).not.toBe(b.next());
    const s1 = createGaussianSource({ insecureTestSeed: "x" });
    const s2 = createGaussianSource({ insecureTestSeed: "x" });
    const s3 = createGaussianSource({ insecureTestSeed: "y" });
    const v1 = Array.from({ length: 5 }, () => s1.next());
    expect(Array.from({ length: 5 }, () => s2.next())).toEqual(v1);
    expect(s3.next()).not.toBe(v1[0]);
    expect(s1.deterministic).toBe(true);
  });
  test("addNoise scales by sigma", () => {
    const out = new Float64Array(100_000);
    createGaussianSource({ insecureTestSeed: "scale" }).addNoise(out, 0.01);
    const std = Math.sqrt(out.reduce((s, v) => s + v * v, 0) / out.length);
    expect(Math.abs(std - 0.01)).toBeLessThan(0.0002);
  });
});

describe("RDP accountant", () => {
  test("q=1: RDP(alpha) = alpha / (2 z^2) per round, composed additively", () => {
    expect(sampledGaussianRdp(1, 2.71828, 3.14159)).toBeCloseTo(3.14159 / (2 * 2.71828 ** 2), 12);
    const acc = new RdpAccountant({ orders: [2, 8, 32] });
    acc.compose({ noiseMultiplier: 1.3 });
    acc.compose({ noiseMultiplier: 1.3, steps: 4 });
    expect(acc.toJSON().rdp).toEqual([2, 8, 32].map((a) => expect.closeTo((5 * a) / (2 * 1.3 ** 2), 12)));
  });
  test("matches Opacus: z=1.5, q=0.04, 2250 steps, delta=1e-5 -> epsilon 7.32911117143", () => {
    // Source: pytorch/opacus opacus/tests/accountants_test.py test_rdp_accountant (DEFAULT_ALPHAS, Balle et al. 2020 conversion)
    const acc = new RdpAccountant();
    acc.compose({ noiseMultiplier: 1.5, sampleRate: 0.04, steps: 2250 });
    expect(Math.abs(acc.epsilon(1e-5).epsilon - 7.32911117143)).toBeLessThan(1e-6);
  });
  test("matches dp_accounting / TF Privacy compute_rdp: q=0.01, z=2.5, 50 steps", () => {
    // Source: google/differential-privacy python/dp_accounting/.../rdp_privacy_accountant_test.py
    // test_compute_rdp_poisson_sampled_gaussian (and TF Privacy's rdp_accountant_test), rtol 1e-4:
    // [6.5007e-04, 1.0854e-03, 2.1808e-03, 2.3846e-02, 1.6742e+02, inf] at orders [1.5, 2.5, 5, 50, 100, inf].
    // (The newest dp_accounting sums |binomial| terms for fractional orders, a looser bound giving
    // 6.7058e-04 at order 1.5; flo keeps the exact signed series of Mironov et al. 2019, as Opacus.)
    const rdp = computeRdp({ sampleRate: 0.01, noiseMultiplier: 2.5, steps: 50, orders: [1.5, 2.5, 5, 50, 100, Infinity] });
    const expected = [6.5007e-4, 1.0854e-3, 2.1808e-3, 2.3846e-2, 1.6742e2];
    expected.forEach((e, i) => expect(Math.abs(rdp[i] - e) / e).toBeLessThan(1e-4));
    expect(rdp[5]).toBe(Infinity);
  });
  test("conversion matches dp_accounting: constant RDP 1.1 over orders 2..32, delta=1e-5 -> 1.32783806176 at order 32", () => {
    // Source: dp_accounting rdp_privacy_accountant_test.py test_compute_epsilon_delta_pure_dp
    const orders = Array.from({ length: 31 }, (_, i) => i + 2);
    const { epsilon, order } = epsilonFromRdp({ orders, rdp: orders.map(() => 1.1), delta: 1e-5 });
    expect(Math.abs(epsilon - 1.32783806176)).toBeLessThan(1e-9);
    expect(order).toBe(32);
    // the classic Mironov 2017 conversion is never tighter
    expect(epsilonFromRdp({ orders, rdp: orders.map(() => 1.1), delta: 1e-5, conversion: "mironov2017" }).epsilon).toBeGreaterThan(epsilon);
  });
  test("orders grid is TF Privacy / Opacus DEFAULT_ALPHAS", () => {
    expect(DEFAULT_RDP_ORDERS).toHaveLength(99 + 52);
    expect(DEFAULT_RDP_ORDERS[0]).toBeCloseTo(1.1, 12);
    expect(DEFAULT_RDP_ORDERS[98]).toBeCloseTo(10.9, 12);
    expect(DEFAULT_RDP_ORDERS.slice(99, 101)).toEqual([12, 13]);
    expect(DEFAULT_RDP_ORDERS[DEFAULT_RDP_ORDERS.length - 1]).toBe(63);
  });
  test("log erfc is accurate across its range", () => {
    expect(logErfc(0)).toBeCloseTo(0, 14);
    expect(logErfc(1)).toBeCloseTo(Math.log(0.15729920705028513), 12);
    expect(logErfc(2)).toBeCloseTo(Math.log(0.004677734981047266), 12);
    expect(logErfc(-1)).toBeCloseTo(Math.log(1.8427007929497148), 12);
    // asymptotic series erfc(x) ~ exp(-x^2)/(x sqrt(pi)) * (1 - 1/(2x^2) + 3/(4x^4) - 15/(8x^6))
    expect(logErfc(30)).toBeCloseTo(-900 - Math.log(30 * Math.sqrt(Math.PI)) + Math.log1p(-1 / 1800 + 3 / (4 * 30 ** 4) - 15 / (8 * 30 ** 6)), 9);
  });
  test("state survives JSON", () => {
    const acc = new RdpAccountant();
    acc.compose({ noiseMultiplier: 1.1, sampleRate: 1, steps: 3 });
    const restored = RdpAccountant.fromJSON(JSON.parse(JSON.stringify(acc.toJSON())));
    restored.compose({ noiseMultiplier: 1.1 });
    acc.compose({ noiseMultiplier: 1.1 });
    expect(restored.epsilon(1e-5)).toEqual(acc.epsilon(1e-5));
  });
});

describe("central DP wrapper in a round", () => {
  const updates = (values: number[][]): InMemoryUpdate[] => values.map((v, i) => ({ tensors: { w: Float64Array.from(v) }, numExamples: 10 * (i + 1) }));
  const global = { w: new Float64Array(2) };

  test("equal weights on clipped deltas, noise sigma = z*C/m on the aggregate, accountant per round", () => {
    const config = resolveStrategyConfig({ strategy: "fedavg", clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 1, delta: 1e-5 } });
    const noise = createGaussianSource({ insecureTestSeed: "dp-round" });
    const expectedNoise = createGaussianSource({ insecureTestSeed: "dp-round" });
    const result = aggregateInMemory(config, {
      updates: updates([
        [3, 4],
        [0.3, 0.4],
      ]),
      global,
      state: initialStrategyState(config),
      noise,
    });
    expect(result.plan.weights).toEqual([0.5, 0.5]); // not 10/30, 20/30
    expect(result.plan.clipScales).toEqual([0.2, 1]);
    expect(result.plan.noiseStddev).toBeCloseTo(0.5, 12); // 1 * 1 / 2
    const mean = [(0.6 + 0.3) / 2, (0.8 + 0.4) / 2];
    const n0 = expectedNoise.next();
    const n1 = expectedNoise.next();
    expect(result.model.w[0]).toBeCloseTo(mean[0] + 0.5 * n0, 12);
    expect(result.model.w[1]).toBeCloseTo(mean[1] + 0.5 * n1, 12);
    const acc = new RdpAccountant();
    acc.compose({ noiseMultiplier: 1 });
    expect(result.state.privacy).toEqual({ epsilon: acc.epsilon(1e-5).epsilon, delta: 1e-5, order: acc.epsilon(1e-5).order, rounds: 1 });
  });

  test("adaptive clipping updates C with the paper's sign; noise uses z_delta; state carries C", () => {
    const config = resolveStrategyConfig({ strategy: "fedavg", clipping: { mode: "adaptive", initialNorm: 0.1 } });
    const ten = Array.from({ length: 10 }, (_, i) => (i < 2 ? [0.01, 0] : [1, 0])); // 2 of 10 unclipped
    const result = aggregateInMemory(config, { updates: updates(ten), global, state: initialStrategyState(config) });
    expect(result.plan.unclippedCount).toBe(2);
    expect(result.state.clipNorm).toBeCloseTo(0.10618365, 8);
    const withDp = resolveStrategyConfig({ strategy: "fedavg", clipping: { mode: "adaptive", initialNorm: 0.1 }, dp: { noiseMultiplier: 0.2, delta: 1e-5 } });
    const dpResult = aggregateInMemory(withDp, { updates: updates(ten), global, state: initialStrategyState(withDp), noise: createGaussianSource({ insecureTestSeed: "a" }) });
    // sigma_b = 10/20 = 0.5; z_delta = (0.2^-2 - 1^-2)^-1/2
    expect(dpResult.plan.noiseStddev).toBeCloseTo(((0.2 ** -2 - 1) ** -0.5 * 0.1) / 10, 12);
    expect(dpResult.plan.countNoise).not.toBe(0);
  });

  test("z >= 2 sigma_b is refused at plan time", () => {
    const config = resolveStrategyConfig({ strategy: "fedavg", clipping: { mode: "adaptive" }, dp: { noiseMultiplier: 1, delta: 1e-5 } });
    expect(() =>
      aggregateInMemory(config, {
        updates: updates([
          [1, 0],
          [0, 1],
        ]),
        global,
        state: initialStrategyState(config),
        noise: createGaussianSource(),
      }),
    ).toThrow(PrivacyConfigError);
  });
});
