/**
 * FedAvg: x_new = sum_i n_i * w_i / sum_i n_i per coordinate (n_i = num_examples), accumulated in
 * float64 with weights normalized once in float64. Stateless; needs no global model.
 */

import { arenaOf } from "./simdKernel";
import { StrategyError } from "./strategyError";
import type { CombineChunk, Json, RoundContext, Strategy } from "./strategy";

export interface FedAvgPlan {
  [key: string]: Json;
  /** n_i / N for each included update, in row order. */
  weights: number[];
}

/** out[i] = sum_k weights[k] * rows[k][i]; two rows per sweep to halve passes over `out`. */
export function weightedSumKernel(rows: readonly (Float32Array | Float64Array)[], weights: readonly number[], out: Float64Array, length: number): void {
  // F32 rows read by the engine live in its shared arena: use the WebAssembly SIMD kernel there.
  const arena = arenaOf(rows, out);
  if (arena) {
    arena.weightedSum(rows as readonly Float32Array[], weights, out, length);
    return;
  }
  const k = rows.length;
  if (k === 0) {
    out.fill(0, 0, length);
    return;
  }
  const r0 = rows[0];
  const w0 = weights[0];
  let start = 1;
  if (k >= 2) {
    const r1 = rows[1];
    const w1 = weights[1];
    for (let i = 0; i < length; i++) out[i] = w0 * r0[i] + w1 * r1[i];
    start = 2;
  } else {
    for (let i = 0; i < length; i++) out[i] = w0 * r0[i];
  }
  for (let j = start; j + 1 < k; j += 2) {
    const a = rows[j];
    const b = rows[j + 1];
    const wa = weights[j];
    const wb = weights[j + 1];
    for (let i = 0; i < length; i++) out[i] += wa * a[i] + wb * b[i];
  }
  if ((k - start) % 2 === 1) {
    const a = rows[k - 1];
    const wa = weights[k - 1];
    for (let i = 0; i < length; i++) out[i] += wa * a[i];
  }
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
      weightedSumKernel(chunk.rows, plan.weights, chunk.out, chunk.length);
    },
    finish(ctx: RoundContext) {
      return { state: ctx.state ?? null };
    },
  };
}
