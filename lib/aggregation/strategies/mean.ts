/**
 * FedAvg: x_new = sum_i n_i * w_i / sum_i n_i (n_i = num_examples). Without wrappers it is the
 * engine's own plain FedAvg (../fedavg.ts, no statistics pass); with clipping or central DP it runs
 * through the shared round machinery, where DP weights every update 1/m.
 */
import { z } from "zod";
import { defineStrategy } from "../definition";
import { createFedAvg } from "../fedavg";
import { allIndices, type AggregationRule, sampleWeights } from "./rule";
import { createRuleStrategy } from "./ruleStrategy";

/** The (clipped) updates' mean: sample-weighted, or equal-weighted under central DP. */
export function meanRule(): AggregationRule {
  return {
    usesPairwiseDistances: false,
    select({ k, numExamples, equalWeights, maxWeightShare }) {
      const selected = allIndices(k);
      return { selected, weights: sampleWeights(numExamples, selected, equalWeights, maxWeightShare) };
    },
  };
}

export const fedavg = defineStrategy({
  name: "fedavg",
  summary: "Weighted by num_examples.",
  options: z.strictObject({}),
  capabilities: { needsGlobalModel: false, hasState: false, robust: false, worksOnWeightedSum: true, clipping: true },
  rule: () => meanRule(),
  create: (_options, wrappers) => (wrappers.clipping || wrappers.dp ? createRuleStrategy("fedavg", meanRule(), wrappers) : createFedAvg({})),
  bench: [{ label: "fedavg + clipping + central DP", options: { clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 1, delta: 1e-5 } } }],
});
