/**
 * Coordinate-wise robust rules: median and trimmed mean (Yin et al. 2018). Unweighted, as in
 * Flower and the papers: a Byzantine silo could otherwise claim a huge num_examples and dominate.
 */
import { z } from "zod";
import { defineStrategy } from "../definition";
import { medianChunk, trimmedMeanChunk, trimmedMeanCuts } from "./robustKernels";
import { allIndices, type AggregationRule } from "./rule";

const COORDINATE_WISE = { needsGlobalModel: false, hasState: false, robust: true, worksOnWeightedSum: false, clipping: true } as const;

export const median = defineStrategy({
  name: "median",
  summary: "Coordinate-wise median, unweighted.",
  options: z.strictObject({}),
  capabilities: COORDINATE_WISE,
  rule: () => medianRule(),
  bench: [{ label: "median", options: {} }],
});

export function medianRule(): AggregationRule {
  return {
    usesPairwiseDistances: false,
    select: ({ k }) => ({ selected: allIndices(k) }),
    combine: (rows, _params, out) => medianChunk(rows, out),
  };
}

export const trimmedMean = defineStrategy({
  name: "trimmed-mean",
  summary: "Cut int(beta*n) values from each end per coordinate, average the rest (scipy trim_mean).",
  options: z.strictObject({
    beta: z.number().min(0).lt(0.5).default(0.2).meta({ description: "Fraction cut from each end per coordinate." }),
  }),
  capabilities: COORDINATE_WISE,
  rule: (options) => trimmedMeanRule(options.beta),
  bench: [{ label: "trimmed-mean (beta 0.2)", options: { beta: 0.2 } }],
});

export function trimmedMeanRule(beta: number): AggregationRule {
  return {
    usesPairwiseDistances: false,
    checkRound: (k) => void trimmedMeanCuts(beta, k),
    select: ({ k }) => ({ selected: allIndices(k), params: { beta } }),
    combine: (rows, params, out) => trimmedMeanChunk(rows, params.beta as number, out),
  };
}
