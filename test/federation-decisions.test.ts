import { nextPollAt, roundDeadline, roundQuorum, sampleSilos, sampleSize, siloGroupInstanceId, siloGroups, siloInstanceId } from "../lib/federation/decisions";
import { jobEventName } from "../lib/compute/siloCompute";

const silos = Array.from({ length: 20 }, (_, i) => `silo-${i}`);

describe("sampleSize", () => {
  it("takes ceil(fraction * n), at least minSilos, at most n", () => {
    expect(sampleSize(3, { sampleFraction: 1, minSilos: 2 })).toBe(3);
    expect(sampleSize(10, { sampleFraction: 0.25, minSilos: 1 })).toBe(3);
    expect(sampleSize(10, { sampleFraction: 0.1, minSilos: 4 })).toBe(4);
    expect(sampleSize(3, { sampleFraction: 0.5, minSilos: 5 })).toBe(3);
    // 0.3 * 10 is 3.0000000000000004 in float64: still 3 silos, not 4
    expect(sampleSize(10, { sampleFraction: 0.3, minSilos: 1 })).toBe(3);
  });
});

describe("sampleSilos", () => {
  const policy = { sampleFraction: 0.25, minSilos: 2 };

  it("is deterministic and keeps the spec's order", () => {
    const a = sampleSilos("fed-1", 3, silos, policy);
    expect(a).toHaveLength(5);
    expect(sampleSilos("fed-1", 3, silos, policy)).toEqual(a);
    expect([...a].sort((x, y) => silos.indexOf(x) - silos.indexOf(y))).toEqual(a);
  });

  it("does not depend on the order silos are listed in", () => {
    const reversed = [...silos].reverse();
    expect(new Set(sampleSilos("fed-1", 3, reversed, policy))).toEqual(new Set(sampleSilos("fed-1", 3, silos, policy)));
  });

  it("varies across rounds and federations and covers every silo over many rounds", () => {
    const seen = new Set<string>();
    const draws = new Set<string>();
    for (let r = 1; r <= 60; r++) {
      const s = sampleSilos("fed-1", r, silos, policy);
      s.forEach((x) => seen.add(x));
      draws.add(s.join(","));
    }
    expect(seen.size).toBe(silos.length);
    expect(draws.size).toBeGreaterThan(50);
    expect(sampleSilos("fed-2", 1, silos, policy)).not.toEqual(sampleSilos("fed-1", 1, silos, policy));
  });

  it("is roughly uniform: each silo is drawn about fraction of the time", () => {
    const counts = new Map<string, number>();
    const rounds = 2000;
    for (let r = 1; r <= rounds; r++) for (const s of sampleSilos("uniform", r, silos, policy)) counts.set(s, (counts.get(s) ?? 0) + 1);
    for (const silo of silos) {
      const share = (counts.get(silo) ?? 0) / rounds;
      expect(share).toBeGreaterThan(0.2);
      expect(share).toBeLessThan(0.3);
    }
  });
});

describe("roundQuorum", () => {
  it("accepts when enough silos succeeded", () => {
    expect(
      roundQuorum(
        [
          { silo: "a", outcome: "succeeded" },
          { silo: "b", outcome: "failed" },
          { silo: "c", outcome: "succeeded" },
        ],
        2,
      ),
    ).toEqual({ ok: true, succeeded: 2 });
  });
  it("explains a missed quorum, naming the silos that did not deliver", () => {
    const v = roundQuorum(
      [
        { silo: "a", outcome: "succeeded" },
        { silo: "b", outcome: "failed" },
        { silo: "c", outcome: "late" },
      ],
      2,
    );
    expect(v.ok).toBe(false);
    expect(v.reason).toBe("quorum not reached: 1 of 3 sampled silos succeeded, policy.minSilos is 2 (b failed, c late)");
  });
});

describe("deadlines and names", () => {
  it("computes the deadline and caps polls at it", () => {
    const start = new Date("2026-01-01T00:00:00Z");
    const deadline = roundDeadline(start, 1800);
    expect(deadline.toISOString()).toBe("2026-01-01T00:30:00.000Z");
    expect(nextPollAt(start, deadline, 60).toISOString()).toBe("2026-01-01T00:01:00.000Z");
    expect(nextPollAt(new Date("2026-01-01T00:29:30Z"), deadline, 60).toISOString()).toBe("2026-01-01T00:30:00.000Z");
  });
  it("names silo instances and events", () => {
    expect(siloInstanceId("fraud-demo", 2, "east")).toBe("fraud-demo:r2:east");
    expect(jobEventName({ round: 2, silo: "east" })).toBe("silo-done:2:east");
    expect(siloGroupInstanceId("fraud-demo", 2, 0)).toBe("fraud-demo:r2:group.0");
    // Training ids predate kinds: naming the kind changes nothing.
    expect(siloInstanceId("fraud-demo", 2, "east", "train")).toBe("fraud-demo:r2:east");
    expect(siloGroupInstanceId("fraud-demo", 2, 0, "train")).toBe("fraud-demo:r2:group.0");
  });
});

describe("siloGroups", () => {
  const names = (n: number) => Array.from({ length: n }, (_, i) => `s${i}`);
  const sizes = (n: number) => siloGroups(names(n)).map((g) => g.length);

  it("splits K silos into about sqrt(K) groups of sizes differing by at most one", () => {
    expect(sizes(0)).toEqual([]);
    expect(sizes(1)).toEqual([1]);
    expect(sizes(2)).toEqual([2]);
    expect(sizes(3)).toEqual([2, 1]);
    expect(sizes(10)).toEqual([4, 3, 3]);
    expect(sizes(100)).toEqual(Array(10).fill(10));
    const large = sizes(1000);
    expect(large).toHaveLength(32);
    expect(large.filter((n) => n === 32)).toHaveLength(8);
    expect(large.filter((n) => n === 31)).toHaveLength(24);
  });

  it("keeps every silo once, in order: the groups concatenated are the input", () => {
    for (const n of [1, 7, 33, 250, 1001]) {
      const input = names(n);
      expect(siloGroups(input).flat()).toEqual(input);
    }
  });
});
