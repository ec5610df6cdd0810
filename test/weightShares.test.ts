import { capWeightShares, dominantShares } from "../lib/aggregation/weightShares";

describe("capWeightShares", () => {
  test("without a cap: plain normalization (the liar at 1e12 takes everything)", () => {
    const { shares, capped, equalized } = capWeightShares([1, 1, 1e12]);
    expect(shares[2]).toBeCloseTo(1, 10);
    expect(shares[0]).toBeCloseTo(1e-12, 20);
    expect(capped).toEqual([]);
    expect(equalized).toBe(false);
    expect(dominantShares(shares)).toEqual([2]);
  });

  test("a cap of 0.4 over [1, 1, 1e12]: the liar gets 0.4, the honest two share the rest equally", () => {
    const { shares, capped } = capWeightShares([1, 1, 1e12], 0.4);
    expect(shares).toEqual([expect.closeTo(0.3, 12), expect.closeTo(0.3, 12), 0.4]);
    expect(capped).toEqual([2]);
    expect(dominantShares(shares)).toEqual([]);
  });

  test("excess is redistributed in proportion, and a redistribution that pushes another over the cap caps it too", () => {
    // raw shares 0.6, 0.3, 0.05, 0.05; cap 0.35: first pass caps 0 -> the rest get 0.65 in proportion
    // 0.3/0.4 -> 0.4875 > 0.35, so 1 is capped next; 2 and 3 split 0.3 equally.
    const { shares, capped } = capWeightShares([60, 30, 5, 5], 0.35);
    expect(shares).toEqual([0.35, 0.35, expect.closeTo(0.15, 12), expect.closeTo(0.15, 12)]);
    expect(capped).toEqual([0, 1]);
    expect(shares.reduce((a, b) => a + b, 0)).toBeCloseTo(1, 12);
  });

  test("a cap below 1/m gives equal weights and says so; exactly 1/m also ends equal", () => {
    expect(capWeightShares([5, 1, 1], 0.2)).toEqual({ shares: [1 / 3, 1 / 3, 1 / 3], capped: [], equalized: true });
    const exact = capWeightShares([5, 1, 1, 1], 0.25);
    expect(exact.shares.map((s) => Number(s.toFixed(12)))).toEqual([0.25, 0.25, 0.25, 0.25]);
    expect(exact.equalized).toBe(false);
  });

  test("shares already under the cap are untouched; cap 1 is no cap", () => {
    expect(capWeightShares([1, 2, 3], 0.6).shares).toEqual([1 / 6, 2 / 6, 3 / 6]);
    expect(capWeightShares([1, 9], 1).capped).toEqual([]);
  });

  test("bad input is refused with the field and the value", () => {
    expect(() => capWeightShares([1, 0])).toThrow("weights[1]: expected a finite number > 0, got 0");
    expect(() => capWeightShares([1, NaN])).toThrow("weights[1]: expected a finite number > 0, got NaN");
    expect(() => capWeightShares([1], 0)).toThrow("maxShare: expected 0 < x <= 1, got 0");
    expect(() => capWeightShares([1], 1.5)).toThrow("maxShare: expected 0 < x <= 1, got 1.5");
  });
});
