/**
 * One aggregation round as three pure steps, so any engine (in memory, streamed from files or
 * blobs, split across workers) runs the same math:
 *   1. `requiredStatistics(config)` -> which whole-model statistics the first pass accumulates
 *      (pairwise squared distances when the rule asks for them, delta norms for clipping);
 *   2. `planRound(...)` -> a small JSON plan: the clipping wrapper's scales, the rule's selection
 *      and weights (rule.ts), central DP's noise stddev;
 *   3. `combineChunk(plan, ...)` per aligned chunk of every float tensor, then
 *      `finishRound(...)` -> the next scalar state (optimizer step, clip norm, accountant).
 * Per-coordinate optimizer state (momentum, m, v) is passed to `combineChunk` as chunks and updated
 * in place; the engine streams it from/to files with the same tensor names as the model.
 */
import { adaptiveUpdateNoiseMultiplier, centralDpNoiseStddev, clipScale, nextAdaptiveClipNorm, countNoiseStddev } from "../privacy/clipping";
import { RdpAccountant, type RdpAccountantState } from "../privacy/accountant";
import type { GaussianSource } from "../privacy/gaussian";
import type { ClippingConfig, DpConfig } from "../privacy/wrappers";
import type { Json } from "../strategy";
import { weightedSum } from "../weightedSum";
import { StrategyInputError, StrategyStateError } from "./errors";
import type { DistanceMatrix } from "./krum";
import type { Row } from "./robustKernels";
import type { AggregationRule } from "./rule";

/** A definition's rule with its resolved wrappers: all the round machinery needs. */
export interface ResolvedStrategyConfig {
  strategy: string;
  rule: AggregationRule;
  clipping?: ClippingConfig;
  dp?: DpConfig;
}

/** Scalar strategy state carried from round to round (checkpointed with each round). */
export interface StrategyState {
  strategy: string;
  /** server-optimizer steps taken so far (optimizer time; independent of round numbering) */
  optimizerSteps: number;
  /** current clip norm (adaptive clipping); fixed clipping keeps it constant */
  clipNorm?: number;
  /** cumulative privacy spent (central DP) */
  accountant?: RdpAccountantState;
  /** last reported (epsilon, delta), for manifests */
  privacy?: { epsilon: number; delta: number; order: number; rounds: number };
}

export function initialStrategyState(config: ResolvedStrategyConfig): StrategyState {
  const state: StrategyState = { strategy: config.strategy, optimizerSteps: 0 };
  if (config.clipping) state.clipNorm = config.clipping.mode === "fixed" ? config.clipping.norm : config.clipping.initialNorm;
  if (config.dp) state.accountant = new RdpAccountant().toJSON();
  return state;
}

/** Per-coordinate state tensors this config keeps (empty for stateless rules). */
export function stateTensorKinds(config: ResolvedStrategyConfig): string[] {
  return [...(config.rule.optimizer?.stateTensors ?? [])];
}

/** Does the round need the current global model x? */
export function needsGlobalModel(config: ResolvedStrategyConfig): boolean {
  return config.rule.optimizer !== undefined || config.clipping !== undefined;
}

export interface RequiredStatistics {
  /** K x K squared distances between the (clipped) updates over the whole model */
  pairwiseDistances: boolean;
  /** ||w_i - x|| over the whole model (needs the global model) */
  deltaNorms: boolean;
}

export function requiredStatistics(config: ResolvedStrategyConfig): RequiredStatistics {
  return { pairwiseDistances: config.rule.usesPairwiseDistances, deltaNorms: config.clipping !== undefined };
}

export interface RoundStatistics {
  /** row-major K x K squared distances between the raw updates */
  pairwiseSquaredDistances?: readonly number[] | Float64Array;
  /** squared delta norms ||w_i - x||^2 */
  deltaSquaredNorms?: readonly number[] | Float64Array;
}

/** Everything `combineChunk` needs; small plain JSON. */
export interface RoundPlan {
  strategy: string;
  k: number;
  /** updates that enter the kernel, in kernel order */
  selected: number[];
  /** weighted sum: weight of each selected update (sums to 1); absent: the rule's own kernel */
  weights?: number[];
  /** the rule's own kernel parameters */
  params?: { [key: string]: Json };
  /** the update whose integer/bool tensors the output takes */
  integerSource: number;
  /** per-update delta scale min(1, C/||delta||); absent without clipping */
  clipScales?: number[];
  clipNorm?: number;
  unclippedCount?: number;
  /** Gaussian noise stddev added to each coordinate of the mean (central DP), else 0 */
  noiseStddev: number;
  /** noise on the unclipped count (adaptive clipping with DP), sampled at plan time */
  countNoise?: number;
  optimizer?: { firstStep: boolean };
  /** extra facts of the rule for the round report */
  report?: { [key: string]: Json };
  deterministicNoise?: boolean;
}

export interface PlanInputs {
  numExamples: readonly number[];
  /** The round's cap on any update's normalized weight (RoundContext.maxWeightShare). */
  maxWeightShare?: number;
  statistics: RoundStatistics;
  state: StrategyState;
  /** required when config.dp is set */
  noise?: GaussianSource;
}

function checkState(config: ResolvedStrategyConfig, state: StrategyState): void {
  if (state.strategy !== config.strategy) {
    throw new StrategyStateError(`strategy state was written by "${state.strategy}", but this round runs "${config.strategy}"; start without --state-in or use the same strategy`);
  }
  if (config.clipping && !(typeof state.clipNorm === "number" && state.clipNorm > 0)) {
    throw new StrategyStateError(`strategy state has no valid clipNorm (got ${String(state.clipNorm)}) but clipping is configured`);
  }
  if (!Number.isInteger(state.optimizerSteps) || state.optimizerSteps < 0) {
    throw new StrategyStateError(`strategy state optimizerSteps must be an integer >= 0, got ${String(state.optimizerSteps)}`);
  }
}

/** Squared distances between clipped updates from raw distances and delta norms (exact when unclipped). */
function clippedDistances(raw: ArrayLike<number>, squaredNorms: ArrayLike<number>, scales: readonly number[], k: number): Float64Array {
  const out = new Float64Array(k * k);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      if (i === j) continue;
      const si = scales[i];
      const sj = scales[j];
      const d = raw[i * k + j];
      if (si === 1 && sj === 1) {
        out[i * k + j] = d;
      } else {
        const dot = (squaredNorms[i] + squaredNorms[j] - d) / 2;
        out[i * k + j] = Math.max(0, si * si * squaredNorms[i] + sj * sj * squaredNorms[j] - 2 * si * sj * dot);
      }
    }
  }
  return out;
}

export function planRound(config: ResolvedStrategyConfig, inputs: PlanInputs): RoundPlan {
  const { numExamples, statistics, state, maxWeightShare } = inputs;
  const { rule } = config;
  checkState(config, state);
  const k = numExamples.length;
  if (k === 0) throw new StrategyInputError(config.strategy, "no valid updates to aggregate");
  numExamples.forEach((n, i) => {
    if (!(Number.isFinite(n) && n > 0)) throw new StrategyInputError(config.strategy, `update ${i} has num_examples=${n}; expected a number > 0`);
  });
  rule.checkRound?.(k); // fail at plan time, before any chunk is combined

  let clipScales: number[] | undefined;
  if (config.clipping) {
    const sq = statistics.deltaSquaredNorms;
    if (!sq || sq.length !== k) throw new StrategyInputError(config.strategy, `clipping needs ${k} delta norms from the statistics pass, got ${sq?.length ?? 0}`);
    clipScales = Array.from(sq, (s) => clipScale(Math.sqrt(s), state.clipNorm!));
  }
  let distances: DistanceMatrix | undefined;
  if (rule.usesPairwiseDistances) {
    const raw = statistics.pairwiseSquaredDistances;
    if (!raw || raw.length !== k * k) throw new StrategyInputError(config.strategy, `needs the ${k}x${k} pairwise distance matrix from the statistics pass`);
    distances = { k, values: clipScales ? clippedDistances(raw, statistics.deltaSquaredNorms!, clipScales, k) : raw };
  }
  const selection = rule.select({ k, numExamples, equalWeights: config.dp !== undefined, ...(maxWeightShare !== undefined ? { maxWeightShare } : {}), ...(distances ? { distances } : {}) });
  if (!selection.weights && !rule.combine) throw new StrategyInputError(config.strategy, "the rule selected no weights and has no combine kernel");

  const plan: RoundPlan = { strategy: config.strategy, k, selected: selection.selected, integerSource: selection.integerSource ?? 0, noiseStddev: 0 };
  if (selection.weights) plan.weights = selection.weights;
  if (selection.params) plan.params = selection.params;
  if (selection.report) plan.report = selection.report;
  if (clipScales) {
    plan.clipScales = clipScales;
    plan.clipNorm = state.clipNorm;
    plan.unclippedCount = clipScales.filter((s) => s === 1).length;
  }
  if (rule.optimizer) plan.optimizer = { firstStep: state.optimizerSteps === 0 };

  if (config.dp) {
    if (!inputs.noise) throw new StrategyInputError(config.strategy, "central DP needs a Gaussian noise source");
    const clipping = config.clipping!;
    let z = config.dp.noiseMultiplier;
    if (clipping.mode === "adaptive") {
      const sigmaB = countNoiseStddev(clipping, k);
      z = adaptiveUpdateNoiseMultiplier(config.dp.noiseMultiplier, sigmaB);
      plan.countNoise = sigmaB * inputs.noise.next();
    }
    plan.noiseStddev = centralDpNoiseStddev(z, state.clipNorm!, k);
    plan.deterministicNoise = inputs.noise.deterministic;
  }
  return plan;
}

/** Reusable buffers for `combineChunk`, grown on demand (only clipping and optimizers need any). */
export class CombineScratch {
  private rows: Float64Array[] = [];
  private meanBuffer = new Float64Array(0);

  clippedRow(slot: number, length: number): Float64Array {
    if (!this.rows[slot] || this.rows[slot].length < length) this.rows[slot] = new Float64Array(length);
    return this.rows[slot].subarray(0, length);
  }

  mean(length: number): Float64Array {
    if (this.meanBuffer.length < length) this.meanBuffer = new Float64Array(length);
    return this.meanBuffer.subarray(0, length);
  }
}

/**
 * Combines one aligned chunk. `rows[i]` = the chunk of update i (all K, indexed as in the plan);
 * `global` = the same chunk of x (required for clipping and optimizers); `state` chunks are updated
 * in place; `out` receives the new global values. Noise is drawn from `noise` in coordinate order.
 */
export function combineChunk(
  config: ResolvedStrategyConfig,
  plan: RoundPlan,
  args: {
    rows: readonly Row[];
    out: Float64Array;
    global?: Row;
    state?: Record<string, Float64Array>;
    noise?: GaussianSource;
    scratch?: CombineScratch;
  },
): void {
  const { rows, out } = args;
  const { rule } = config;
  const n = out.length;
  if (rows.length !== plan.k) throw new StrategyInputError(plan.strategy, `combine got ${rows.length} rows, plan has ${plan.k} updates`);
  if ((plan.clipScales || plan.optimizer) && !args.global) {
    throw new StrategyInputError(plan.strategy, "needs the current global model (--global) for clipping / the server optimizer");
  }
  const scratch = args.scratch ?? new CombineScratch();
  const selectedRows = plan.selected.map((index, s): Row => {
    const row = rows[index];
    if (row.length < n) throw new StrategyInputError(plan.strategy, `row ${index} has ${row.length} coordinates, expected at least ${n}`);
    const scale = plan.clipScales?.[index] ?? 1;
    if (scale === 1) return row.length === n ? row : row.subarray(0, n);
    const clipped = scratch.clippedRow(s, n);
    const g = args.global!;
    for (let c = 0; c < n; c++) clipped[c] = g[c] + scale * (row[c] - g[c]);
    return clipped;
  });
  const target = rule.optimizer ? scratch.mean(n) : out;
  if (plan.weights) weightedSum(selectedRows, plan.weights, target, n);
  else rule.combine!(selectedRows, plan.params ?? {}, target);
  if (plan.noiseStddev > 0) {
    if (!args.noise) throw new StrategyInputError(plan.strategy, "central DP needs a Gaussian noise source");
    args.noise.addNoise(target, plan.noiseStddev, n);
  }
  if (!rule.optimizer || !plan.optimizer) return;
  const st = args.state ?? {};
  const state: Record<string, Float64Array> = {};
  for (const kind of rule.optimizer.stateTensors) {
    const chunk = st[kind];
    if (!chunk || chunk.length < n) throw new StrategyInputError(plan.strategy, `needs the "${kind}" state chunk of ${n} values`);
    state[kind] = chunk;
  }
  rule.optimizer.step({ global: args.global!, mean: target, state, firstStep: plan.optimizer.firstStep, out, length: n });
}

/** Scalar state after the round: optimizer step, next clip norm, accountant. Pure. */
export function finishRound(config: ResolvedStrategyConfig, plan: RoundPlan, state: StrategyState): StrategyState {
  const next: StrategyState = { ...state, optimizerSteps: state.optimizerSteps + (config.rule.optimizer ? 1 : 0) };
  if (config.clipping?.mode === "adaptive") {
    next.clipNorm = nextAdaptiveClipNorm({
      clipNorm: state.clipNorm!,
      unclippedCount: plan.unclippedCount!,
      numUpdates: plan.k,
      countNoise: plan.countNoise ?? 0,
      targetQuantile: config.clipping.targetQuantile,
      learningRate: config.clipping.learningRate,
    }).clipNorm;
  }
  if (config.dp) {
    const accountant = new RdpAccountant(state.accountant);
    accountant.compose({ noiseMultiplier: config.dp.noiseMultiplier, sampleRate: 1 });
    const { epsilon, order } = accountant.epsilon(config.dp.delta);
    next.accountant = accountant.toJSON();
    next.privacy = { epsilon, delta: config.dp.delta, order, rounds: next.accountant.steps };
  }
  return next;
}
