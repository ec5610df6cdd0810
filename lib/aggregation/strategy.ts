/**
 * The aggregation Strategy contract: what a strategy (FedAvg, FedAdam, Median, Krum, clipping/DP
 * wrappers...) supplies to the streaming engine in `engine.ts`.
 *
 * Spirit: Flower's configure/aggregate, but with ALL state explicit and serializable, and the math
 * written as pure kernels over aligned chunks so that a model of any size streams through with memory
 * bounded by K x chunk. One round of aggregation is, for a strategy S:
 *
 *   1. `S.statistics` (optional): zero or more passes over the aligned chunks of all float tensors,
 *      each accumulating into a Float64Array (e.g. K squared norms of deltas, or the K x K pairwise
 *      squared distances for Krum). Accumulators are ADDITIVE: the engine may split the coordinate
 *      range across worker threads and sum their accumulators, so `accumulate` must only ever add.
 *   2. `S.plan(ctx, statistics)`: pure; returns a small JSON "round plan" (selected update indices,
 *      clip factors, noise seed...) that the combine kernel receives unchanged.
 *   3. `S.combine(chunk, plan)`: pure per-chunk kernel. Gets the K decoded update rows, the raw
 *      weights (num_examples), the global model's chunk when `needsGlobal`, and the input state
 *      tensors' chunks; writes the output chunk and the new state tensors' chunks. Keep it pure,
 *      relying only on its arguments and options: a strategy that declares `parallelKernels` has
 *      part of each chunk combined in a worker thread (re-created there with
 *      `createStrategy(name, options)` from `registry.ts`, after loading the modules registered
 *      with `registerStrategy`).
 *   4. `S.finish(ctx, plan)`: pure; returns the new small JSON state (round counter, clip norm,
 *      accountant...) and optional extra facts for the round manifest.
 *
 * Only float tensors (F64, F32, F16, BF16) go through statistics/combine. Integer and BOOL tensors
 * are never averaged: the engine copies them from the update `integerTensorSource(plan)` names
 * (default: the first valid one; see engine.ts).
 *
 * Per-coordinate state tensors (FedAdam m/v, FedAvgM momentum) live in safetensors files with the
 * same float tensor names and shapes as the model (dtype chosen by `stateTensors`), one file per
 * state name, streamed alongside the model; missing input state means "start at zeros".
 */

import type { DType } from "../models/dtypes";

/** A JSON value: what small strategy state and round plans are made of (no typed arrays). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** One tensor of the model, as the engine sees it (taken from the first valid update). */
export interface TensorLayout {
  name: string;
  dtype: DType;
  shape: number[];
  /** Number of elements (product of shape). */
  numel: number;
  /** Element offset of this tensor in the concatenation of all FLOAT tensors in name order
   *  (the "flattened model" used by whole-model rules such as Krum or norm clipping); -1 for
   *  integer/bool tensors. */
  flatOffset: number;
}

/** What a strategy knows about the round before any tensor data is read. */
export interface RoundContext {
  /**
   * Included updates, in the order their rows appear in every chunk. `numExamples` is the update's
   * weight: its claimed count, or, when the round caps weight shares, its capped share times the
   * round's total count.
   */
  updates: readonly { id: string; numExamples: number }[];
  /** The round's cap on any update's normalized weight; a rule weighting a subset re-caps over it. */
  maxWeightShare?: number;
  /** All tensors of the model in name order (the output order). */
  tensors: readonly TensorLayout[];
  /** Total number of float elements (length of the flattened model). */
  floatElements: number;
  /** The small JSON state from the previous round (undefined on the first round). */
  state: Json | undefined;
  /** Which input state tensors exist (names from `stateTensors`); absent ones start at zeros. */
  stateTensorsPresent: readonly string[];
}

/** An aligned slice [start, start+length) of one float tensor, as seen in every update. */
export interface ChunkPosition {
  tensor: TensorLayout;
  /** Element offset within the tensor. */
  start: number;
  /** Number of elements in this chunk. */
  length: number;
}

/** Decoded values: Float32Array for F32/F16/BF16 tensors (exact), Float64Array for F64. */
export type FloatRow = Float32Array | Float64Array;

/** Input of a statistics pass for one chunk. */
export interface StatisticsChunk extends ChunkPosition {
  /** rows[i] = update i's values for this chunk (length `length`). Read-only. */
  rows: readonly FloatRow[];
  /** Raw num_examples of each update (not normalized). */
  weights: Float64Array;
  /** The global model's values for this chunk, when `needsGlobal`. */
  global?: FloatRow;
  /** Input state tensors' values for this chunk (zeros when absent). */
  state: Readonly<Record<string, Float64Array>>;
}

/** Input and outputs of the combine kernel for one chunk. */
export interface CombineChunk extends StatisticsChunk {
  /** Write the aggregated values here (length `length`); the engine encodes to the tensor dtype. */
  out: Float64Array;
  /** Write the new state tensors' values here, one array per name in `stateTensors`. */
  stateOut: Record<string, Float64Array>;
}

/** One statistics pass: an additive accumulator over all float chunks. */
export interface StatisticsPass {
  /** Name, for progress reports and errors (e.g. "delta-norms", "pairwise-distances"). */
  name: string;
  /** Length of the accumulator given the round (e.g. K, or K*K). */
  size(ctx: RoundContext): number;
  /** Adds this chunk's contribution into `acc` (only additions: accumulators are summed across workers). */
  accumulate(chunk: StatisticsChunk, acc: Float64Array, ctx: RoundContext): void;
}

/** A per-coordinate state tensor family the strategy keeps between rounds (e.g. "m", "v"). */
export interface StateTensorSpec {
  name: string;
  /** Storage dtype of the state file; F32 halves the size, F64 keeps exact optimizer state. */
  dtype: "F32" | "F64";
}

/** What `finish` returns. */
export interface RoundOutcome {
  /** The new small state, stored in the round checkpoint and passed back next round. */
  state: Json;
  /** Extra facts for the round manifest (e.g. clip norm used, epsilon spent). */
  report?: Json;
}

export interface Strategy<Plan extends Json = Json> {
  /** Registry name (e.g. "fedavg"); with `options`, enough to re-create the strategy in a worker. */
  readonly name: string;
  /** JSON options the strategy was created with (validated by its factory). */
  readonly options: Json;
  /** True when the kernels need the round's global model chunk (server optimizers, deltas). */
  readonly needsGlobal: boolean;
  /** Per-coordinate state tensors read and written every round; empty for stateless strategies. */
  readonly stateTensors: readonly StateTensorSpec[];
  /**
   * Optional misuse check once the included updates are known (e.g. Bulyan needs K >= 4f+3, an
   * optimizer needs the global model): throw a typed error (e.g. strategies/errors.ts `StrategyInputError`) naming the option and
   * expected vs got. The engine calls it before reading any tensor data.
   */
  checkRound?(ctx: RoundContext, hasGlobal: boolean): void;
  /**
   * True when any non-finite value in any row is guaranteed to make `out` non-finite (linear
   * combinations with positive weights, such as FedAvg). The engine then checks only the output
   * for NaN/Inf and scans the rows only when it finds one; otherwise it scans every row.
   */
  readonly propagatesNonFinite: boolean;
  /** Optional passes run before combining, in order. */
  readonly statistics?: readonly StatisticsPass[];
  /**
   * Kernels costly enough per byte to be worth a second thread (see kernelPool.ts): the engine then
   * runs part of each chunk's coordinates in a worker, the strategy re-created there from the
   * registry. `statistics`: split the statistics passes (exact up to the order of additions).
   * `combine(plan)`: true when `combine` on parts of a chunk writes exactly what it writes on the
   * whole chunk with this plan (no per-chunk randomness such as DP noise). The engine splits only
   * chunks whose rows and output are in shared memory, for strategies without state tensors or the
   * global model.
   */
  readonly parallelKernels?: { readonly statistics: boolean; combine(plan: Plan): boolean };
  /** Computes the round plan from the statistics accumulators (same order as `statistics`). */
  plan(ctx: RoundContext, statistics: readonly Float64Array[]): Plan;
  /**
   * Index (into `ctx.updates`) of the update whose integer/bool tensors the output takes; default
   * 0. Rules that reject updates name a selected one, so a rejected silo's counters never pass.
   */
  integerTensorSource?(plan: Plan): number;
  /** The pure per-chunk kernel (see CombineChunk). */
  combine(chunk: CombineChunk, plan: Plan, ctx: RoundContext): void;
  /** The new JSON state after the round. */
  finish(ctx: RoundContext, plan: Plan): RoundOutcome;
}
