/**
 * Geometric median (RFA, Pillutla et al. 2022, "Robust Aggregation for Federated Learning"): the
 * point z minimising sum_i alpha_i ||z - w_i|| over the whole flattened model, by smoothed Weiszfeld
 * iterations z <- sum_i beta_i w_i / sum_i beta_i with beta_i = alpha_i / max(nu, ||z - w_i||),
 * starting from the mean, stopping after `maxIterations` or once the objective changes by at most
 * `tolerance` x its value. Unweighted (alpha_i = 1/K), like flo's other robust rules: a silo that
 * inflates num_examples would otherwise pull the median to itself.
 *
 * Streaming: every iterate is an affine combination z = sum_j c_j w_j of the updates, so
 *   ||w_i - z||^2 = sum_j c_j D_ij - 1/2 sum_jk c_j c_k D_jk
 * with D the K x K squared distances between the (clipped) updates. One statistics pass computes D
 * (the pass Krum uses, split across the kernel worker too); the iterations then run on K x K numbers
 * without reading the model again, and the result is one weighted sum of the updates. Memory is
 * O(K^2) whatever the model size, and the model is read twice instead of once per iteration.
 */
import { z } from "zod";
import { defineStrategy } from "../definition";
import type { DistanceMatrix } from "./krum";
import { allIndices, type AggregationRule } from "./rule";

export interface GeometricMedianOptions {
  maxIterations: number;
  tolerance: number;
  nu: number;
}

export interface WeiszfeldResult {
  /** z = sum_j coefficients[j] * w_j (the coefficients sum to 1). */
  coefficients: number[];
  /** Weiszfeld steps taken. */
  iterations: number;
  /** sum_i (1/K) ||z - w_i|| at the result. */
  objective: number;
}

/** Distances ||w_i - z|| of every update to z = sum_j c_j w_j, from the squared distance matrix. */
function distancesTo(d: DistanceMatrix, c: readonly number[]): number[] {
  const k = d.k;
  const toEach = new Array<number>(k).fill(0);
  for (let i = 0; i < k; i++) {
    let sum = 0;
    for (let j = 0; j < k; j++) sum += c[j] * d.values[i * k + j];
    toEach[i] = sum;
  }
  let spread = 0;
  for (let i = 0; i < k; i++) spread += c[i] * toEach[i];
  return toEach.map((s) => Math.sqrt(Math.max(0, s - spread / 2)));
}

/** Smoothed Weiszfeld iterations on the distance matrix (pure). */
export function weiszfeld(d: DistanceMatrix, options: GeometricMedianOptions): WeiszfeldResult {
  const k = d.k;
  const alpha = 1 / k;
  let c = new Array<number>(k).fill(alpha);
  let objective = distancesTo(d, c).reduce((s, v) => s + alpha * v, 0);
  let iterations = 0;
  while (iterations < options.maxIterations) {
    const beta = distancesTo(d, c).map((dist) => alpha / Math.max(options.nu, dist));
    const total = beta.reduce((s, b) => s + b, 0);
    c = beta.map((b) => b / total);
    iterations++;
    const previous = objective;
    objective = distancesTo(d, c).reduce((s, v) => s + alpha * v, 0);
    if (Math.abs(previous - objective) <= options.tolerance * objective) break;
  }
  return { coefficients: c, iterations, objective };
}

export function geometricMedianRule(options: GeometricMedianOptions): AggregationRule {
  return {
    usesPairwiseDistances: true,
    select({ k, distances }) {
      const result = weiszfeld(distances!, options);
      // Integer tensors come from the update the median leans on most (never from an outlier).
      const central = result.coefficients.reduce((best, c, i, all) => (c > all[best] ? i : best), 0);
      return {
        selected: allIndices(k),
        weights: result.coefficients,
        integerSource: central,
        report: { iterations: result.iterations },
      };
    },
  };
}

export const geometricMedian = defineStrategy({
  name: "geometric-median",
  summary: "Geometric median of the updates by smoothed Weiszfeld iterations (RFA, Pillutla et al. 2022), unweighted.",
  options: z.strictObject({
    maxIterations: z.number().int().min(1).default(10).meta({ description: "Maximum number of Weiszfeld iterations." }),
    tolerance: z.number().gt(0).default(1e-5).meta({ description: "Stop once the objective changes by at most this fraction of its value." }),
    nu: z.number().gt(0).default(1e-6).meta({ description: "Smoothing: distances below nu count as nu." }),
  }),
  capabilities: { needsGlobalModel: false, hasState: false, robust: true, worksOnWeightedSum: false, clipping: true },
  rule: (options) => geometricMedianRule(options),
  bench: [{ label: "geometric-median", options: {} }],
});
