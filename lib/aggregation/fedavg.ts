/**
 * FedAvg: x_new = sum_i n_i * w_i / sum_i n_i per coordinate (n_i = num_examples), accumulated in
 * float64 with weights normalized once in float64. Stateless; needs no global model.
 */

import { StrategyError } from "./strategyError";
import type { CombineChunk, Json, RoundContext, Strategy } from "./strategy";
import { weightedSum } from "./weightedSum";

export interface FedAvgPlan {
  [key: string]: Json;
  /** n_i / N for each included update, in row order. */
  weights: number[];
}

export function createFedAvg(options: Json = {}): Strategy<FedAvgPlan> {
  if (typeof options !== "object" || options === null || Array.isArray(options) || Object.keys(options).length > 0) {
    throw new StrategyError("fedavg", `takes no options, got ${JSON.stringify(options)}`);
  }
  return {
    name: "fedavg",
    options: {},
    needsGlobal: false,
    stateTensors: [],
    propagatesNonFinite: true,
    plan(ctx: RoundContext): FedAvgPlan {
      const total = ctx.updates.reduce((s, u) => s + u.numExamples, 0);
      return { weights: ctx.updates.map((u) => u.numExamples / total) };
    },
    combine(chunk: CombineChunk, plan: FedAvgPlan): void {
      weightedSum(chunk.rows, plan.weights, chunk.out, chunk.length);
    },
    finish(ctx: RoundContext) {
      return { state: ctx.state ?? null };
    },
  };
}
