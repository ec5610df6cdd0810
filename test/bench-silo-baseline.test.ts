/**
 * The orchestration benchmark's anchor (bench/siloBaseline.ts): targets per K, the verdict line,
 * the peak number of trainers running at once, and CPU times read from /proc.
 */
import { spawnSync } from "node:child_process";
import { describeVerdict, peakConcurrency, processCpu, roundTarget, roundVerdict } from "../bench/siloBaseline";

test("K = 100 must stay within 1.5x of the baseline and K = 1000 within 2x; smaller K has no target", () => {
  expect(roundTarget(10)).toBeUndefined();
  expect(roundTarget(100)).toBe(1.5);
  expect(roundTarget(999)).toBe(1.5);
  expect(roundTarget(1000)).toBe(2);
  expect(roundVerdict(100, 9_000, 6_000)).toEqual({ ratio: 1.5, target: 1.5, met: true });
  expect(roundVerdict(100, 9_060, 6_000)).toMatchObject({ target: 1.5, met: false });
  expect(roundVerdict(1000, 50_000, 30_000).met).toBe(true);
  expect(roundVerdict(10, 3_000, 2_000)).toEqual({ ratio: 1.5 });
  expect(() => roundVerdict(100, 1_000, 0)).toThrow("baselineMs: expected a positive duration, got 0");
});

test("the verdict line gives the round, the ratio and whether the target was met", () => {
  expect(describeVerdict(9_060, roundVerdict(100, 9_060, 6_000))).toBe("9.06 s = 1.51x the baseline (target <= 1.5x: MISSED)");
  expect(describeVerdict(7_200, roundVerdict(1000, 7_200, 6_000))).toBe("7.20 s = 1.20x the baseline (target <= 2x: met)");
  expect(describeVerdict(3_000, roundVerdict(10, 3_000, 2_000))).toBe("3.00 s = 1.50x the baseline (no target for this K)");
});

test("peak concurrency counts the intervals overlapping at one instant; touching ends do not overlap", () => {
  expect(peakConcurrency([])).toBe(0);
  expect(
    peakConcurrency([
      { start: 0, end: 10 },
      { start: 10, end: 20 },
      { start: 20, end: 30 },
    ]),
  ).toBe(1);
  expect(
    peakConcurrency([
      { start: 0, end: 100 },
      { start: 10, end: 20 },
      { start: 15, end: 50 },
      { start: 19, end: 21 },
      { start: 60, end: 70 },
    ]),
  ).toBe(4);
});

test("processCpu reads a process's own CPU and its reaped children's from /proc", () => {
  if (process.platform !== "linux") return;
  const before = processCpu("self");
  // A child that does a fixed amount of work (~0.3 s of CPU on this machine, however loaded), reaped before spawnSync returns.
  const child = spawnSync(process.execPath, ["-e", "let x = 0; for (let i = 0; i < 3e8; i++) x += i % 7; if (x < 0) console.log(x);"]);
  expect(child.status).toBe(0);
  const after = processCpu("self");
  expect(after.childrenMs - before.childrenMs).toBeGreaterThanOrEqual(100);
  expect(after.ownMs).toBeGreaterThan(0);
  expect(() => processCpu(2 ** 30)).toThrow(/ENOENT/);
});
