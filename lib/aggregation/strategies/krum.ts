/**
 * The Krum family: Krum, Multi-Krum and Bulyan (Blanchard et al. 2017; El Mhamdi et al. 2018),
 * selecting from the K x K matrix of squared L2 distances between the whole flattened models.
 * Their guarantees need n >= 2f+3 updates (Krum, Multi-Krum) or n >= 4f+3 (Bulyan) for f
 * Byzantine silos. Integer tensors (e.g. BatchNorm's num_batches_tracked) come from the best-scored
 * SELECTED update, never from a rejected one.
 */
import { z } from "zod";
import { defineStrategy, type DefinitionIssue, type QuorumFacts } from "../definition";
import { StrategyInputError } from "./errors";
import { bulyanChunk } from "./robustKernels";
import { type AggregationRule, sampleWeights } from "./rule";

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
    throw new StrategyInputError("bulyan", `needs at least 4f+3 = ${4 * byzantine + 3} updates for byzantine f=${byzantine}, got ${k}; lower --byzantine or use more silos`);
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

const byzantine = () => z.number().int().min(0).meta({ description: "Number of silos assumed Byzantine (f)." });
const ROBUST = { needsGlobalModel: false, hasState: false, robust: true, worksOnWeightedSum: false, clipping: true } as const;
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/** Spec check: the rule's n >= multiplier*f+3 against the fewest updates a round may aggregate. */
function byzantineQuorumIssues(label: string, multiplier: number, options: Record<string, unknown>, quorum: QuorumFacts): DefinitionIssue[] {
  const f = options.byzantine;
  if (!isCount(f) || quorum.minUpdates >= multiplier * f + 3) return [];
  const maxF = Math.floor((quorum.minUpdates - 3) / multiplier);
  if (maxF >= 0) {
    return [
      { path: "aggregation.byzantine", expected: `<= ${maxF}: ${label} needs n >= ${multiplier}f+3 updates and a round may aggregate only policy.minSilos = ${quorum.minUpdates}`, got: String(f) },
    ];
  }
  const got = quorum.explicit ? String(quorum.minUpdates) : `${quorum.minUpdates} (the default: every sampled silo)`;
  return [{ path: "policy.minSilos", expected: `>= ${multiplier * f + 3}: ${label} with byzantine ${f} needs n >= ${multiplier}f+3 updates`, got }];
}

export const krum = defineStrategy({
  name: "krum",
  summary: "Pick the update with the lowest Krum score.",
  options: z.strictObject({ byzantine: byzantine() }),
  capabilities: ROBUST,
  rule: (options) => krumRule(options.byzantine),
  quorumIssues: (options, quorum) => byzantineQuorumIssues("Krum", 2, options, quorum),
  bench: [{ label: "krum (f 2)", options: { byzantine: 2 } }],
});

export function krumRule(f: number): AggregationRule {
  return {
    usesPairwiseDistances: true,
    select({ distances }) {
      const pick = krumSelect(distances!, f);
      return { selected: [pick], weights: [1], integerSource: pick };
    },
  };
}

export const multiKrum = defineStrategy({
  name: "multi-krum",
  summary: "Average the `keep` best Krum-scored updates, weighted by num_examples.",
  options: z.strictObject({ byzantine: byzantine(), keep: z.number().int().min(1).meta({ description: "How many best-scored updates to average." }) }),
  capabilities: ROBUST,
  rule: (options) => multiKrumRule(options.byzantine, options.keep),
  quorumIssues(options, quorum) {
    const issues = byzantineQuorumIssues("Krum", 2, options, quorum);
    const f = options.byzantine;
    const keep = options.keep;
    const room = isCount(f) ? quorum.minUpdates - f : 0;
    if (isCount(f) && isCount(keep) && keep > room && room >= 1) {
      issues.push({ path: "aggregation.keep", expected: `<= ${room} (policy.minSilos = ${quorum.minUpdates} minus byzantine ${f})`, got: String(keep) });
    }
    return issues;
  },
  bench: [{ label: "multi-krum (f 2, keep 5)", options: { byzantine: 2, keep: 5 } }],
});

export function multiKrumRule(f: number, keep: number): AggregationRule {
  return {
    usesPairwiseDistances: true,
    checkRound(k) {
      if (keep > k) throw new StrategyInputError("multi-krum", `keep=${keep} exceeds the ${k} valid updates`);
    },
    select({ distances, numExamples }) {
      const ranked = multiKrumSelect(distances!, f, keep);
      // sample-weighted mean of the kept updates, in index order (deterministic summation order)
      const selected = [...ranked].sort((a, b) => a - b);
      return { selected, weights: sampleWeights(numExamples, selected), integerSource: ranked[0] };
    },
  };
}

export const bulyan = defineStrategy({
  name: "bulyan",
  summary: "Krum selection then trimmed coordinate-wise aggregation; needs n >= 4f+3.",
  options: z.strictObject({ byzantine: byzantine() }),
  capabilities: ROBUST,
  rule: (options) => bulyanRule(options.byzantine),
  quorumIssues: (options, quorum) => byzantineQuorumIssues("Bulyan", 4, options, quorum),
  bench: [{ label: "bulyan (f 1)", options: { byzantine: 1 } }],
});

export function bulyanRule(f: number): AggregationRule {
  return {
    usesPairwiseDistances: true,
    checkRound(k) {
      bulyanSizes(k, f);
    },
    select({ distances, k }) {
      const selected = bulyanSelect(distances!, f);
      return { selected, params: { beta: bulyanSizes(k, f).beta }, integerSource: selected[0] };
    },
    combine(rows, params, out) {
      bulyanChunk(rows, params.beta as number, out);
    },
  };
}
