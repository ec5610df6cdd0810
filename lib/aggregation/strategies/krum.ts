/**
 * Krum / Multi-Krum / Bulyan selection from the K x K matrix of squared L2 distances between the
 * whole flattened models (Blanchard et al. 2017; El Mhamdi et al. 2018). Pure functions.
 */
import { StrategyInputError } from "./errors";

/** Row-major K x K matrix of squared distances; entry [i*K+j]. */
export interface DistanceMatrix {
  readonly k: number;
  readonly values: Float64Array | readonly number[];
}

/**
 * Krum score of every candidate, computed within `candidates` only: the sum of the
 * max(1, n-f-2) smallest squared distances to the other candidates (n = candidates.length).
 */
export function krumScores(distances: DistanceMatrix, candidates: readonly number[], byzantine: number): number[] {
  const n = candidates.length;
  const closest = Math.max(1, n - byzantine - 2);
  const scores: number[] = [];
  const others = new Float64Array(Math.max(0, n - 1));
  for (const i of candidates) {
    let m = 0;
    for (const j of candidates) if (j !== i) others[m++] = distances.values[i * distances.k + j];
    const sorted = Array.from(others.subarray(0, m)).sort((a, b) => a - b);
    let score = 0;
    for (let t = 0; t < Math.min(closest, sorted.length); t++) score += sorted[t];
    scores.push(score);
  }
  return scores;
}

/** Candidates ordered by ascending Krum score; ties broken by lower index (stable). */
export function krumRanking(distances: DistanceMatrix, candidates: readonly number[], byzantine: number): number[] {
  const scores = krumScores(distances, candidates, byzantine);
  return candidates
    .map((index, position) => ({ index, score: scores[position] }))
    .sort((a, b) => a.score - b.score || a.index - b.index)
    .map((entry) => entry.index);
}

function checkByzantine(strategy: string, byzantine: number, k: number): void {
  if (!Number.isInteger(byzantine) || byzantine < 0) {
    throw new StrategyInputError(strategy, `byzantine (f) must be an integer >= 0, got ${byzantine}`);
  }
  if (k < 1) throw new StrategyInputError(strategy, "needs at least one update, got 0");
}

/** Krum: the single index with the lowest score. */
export function krumSelect(distances: DistanceMatrix, byzantine: number): number {
  checkByzantine("krum", byzantine, distances.k);
  return krumRanking(distances, range(distances.k), byzantine)[0];
}

/** Multi-Krum: the `keep` lowest-scoring indices (in ranking order). */
export function multiKrumSelect(distances: DistanceMatrix, byzantine: number, keep: number): number[] {
  checkByzantine("multi-krum", byzantine, distances.k);
  if (!Number.isInteger(keep) || keep < 1 || keep > distances.k) {
    throw new StrategyInputError("multi-krum", `keep must be an integer in 1..${distances.k} (the number of updates), got ${keep}`);
  }
  return krumRanking(distances, range(distances.k), byzantine).slice(0, keep);
}

/** Bulyan's sizes: theta = K - 2f selected models, beta = theta - 2f values averaged per coordinate. */
export function bulyanSizes(k: number, byzantine: number): { theta: number; beta: number } {
  checkByzantine("bulyan", byzantine, k);
  if (k < 4 * byzantine + 3) {
    throw new StrategyInputError(
      "bulyan",
      `needs at least 4f+3 = ${4 * byzantine + 3} updates for byzantine f=${byzantine}, got ${k}; lower --byzantine or use more silos`,
    );
  }
  return { theta: k - 2 * byzantine, beta: k - 4 * byzantine };
}

/** Bulyan selection: Krum applied theta times, each pick removed from the candidates. */
export function bulyanSelect(distances: DistanceMatrix, byzantine: number): number[] {
  const { theta } = bulyanSizes(distances.k, byzantine);
  let candidates = range(distances.k);
  const selected: number[] = [];
  while (selected.length < theta) {
    const pick = krumRanking(distances, candidates, byzantine)[0];
    selected.push(pick);
    candidates = candidates.filter((c) => c !== pick);
  }
  return selected;
}

function range(n: number): number[] {
  return Array.from({ length: n }, (_, i) => i);
}
