/**
 * The part of a strategy that is specific to its rule family, as consumed by the shared round
 * machinery (roundPlan.ts + ruleStrategy.ts), which adds what every rule gets for free: the
 * clipping and central-DP wrappers, the statistics pass, state checks, the kernel-worker split and
 * the weighted-sum kernel. A rule says which statistics it needs, selects and weights updates once
 * per round from them, and (when its result is not a weighted sum) combines a chunk per coordinate.
 */
import type { Json } from "../strategy";
import type { DistanceMatrix } from "./krum";
import type { Row } from "./robustKernels";
import { capWeightShares } from "../weightShares";

/** What a rule sees when it plans a round (no tensor data). */
export interface RuleRoundInputs {
  /** Number of included updates. */
  k: number;
  /** Weight of each update: num_examples (capped, see RoundContext.updates). */
  numExamples: readonly number[];
  /** The round's cap on any update's normalized weight (sampleWeights applies it to a subset). */
  maxWeightShare?: number;
  /** K x K squared distances between the (clipped) updates, when `usesPairwiseDistances`. */
  distances?: DistanceMatrix;
  /** Central DP is on: weighted rules must weight every update 1/k (the sensitivity C/m needs it). */
  equalWeights: boolean;
}

/** A rule's decision for the round: small JSON, recorded in the round plan. */
export interface RuleSelection {
  /** Updates entering the kernel, in kernel order. */
  selected: number[];
  /** When present, the result is sum_s weights[s] * row[selected[s]] (the shared weighted-sum kernel). */
  weights?: number[];
  /** Values `combine` needs (when `weights` is absent). */
  params?: { [key: string]: Json };
  /** The update whose integer/bool tensors the output takes (default: the first included update). */
  integerSource?: number;
  /** Extra facts for the round report. */
  report?: { [key: string]: Json };
}

/** Per-coordinate server optimizer step applied to the rule's result (FedAvgM, FedAdam...). */
export interface ServerOptimizerStep {
  /** Per-coordinate state tensor families kept between rounds (e.g. "m", "v"). */
  stateTensors: readonly string[];
  /** x_new from x (`global`) and the round's mean; updates `state` chunks in place. */
  step(args: { global: Row; mean: Float64Array; state: Record<string, Float64Array>; firstStep: boolean; out: Float64Array; length: number }): void;
}

export interface AggregationRule {
  /** Needs the K x K pairwise squared distances (one statistics pass over the model). */
  readonly usesPairwiseDistances: boolean;
  /** Throws StrategyInputError when the round cannot run with k updates (before any data is read). */
  checkRound?(k: number): void;
  select(inputs: RuleRoundInputs): RuleSelection;
  /** Coordinate-wise kernel over the selected rows, for selections without weights. */
  combine?(selectedRows: readonly Row[], params: { [key: string]: Json }, out: Float64Array): void;
  /** A server optimizer stepping from the global model with the rule's result. */
  readonly optimizer?: ServerOptimizerStep;
}

/**
 * Sample-weighted weights n_i / sum n over `indices` (or 1/|indices| each with `equal`). With
 * `maxShare` the weights are capped over the subset itself: renormalizing the round's capped weights
 * over fewer updates could lift one above the cap again.
 */
export function sampleWeights(numExamples: readonly number[], indices: readonly number[], equal = false, maxShare?: number): number[] {
  if (equal) return indices.map(() => 1 / indices.length);
  if (maxShare !== undefined)
    return capWeightShares(
      indices.map((i) => numExamples[i]),
      maxShare,
    ).shares;
  const total = indices.reduce((s, i) => s + numExamples[i], 0);
  return indices.map((i) => numExamples[i] / total);
}

export function allIndices(k: number): number[] {
  return Array.from({ length: k }, (_, i) => i);
}
