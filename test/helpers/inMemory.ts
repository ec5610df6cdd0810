/**
 * Test helper. Runs a round on models held in memory as named float64 tensors, chunk by chunk, through the same
 * plan/combine steps as the streaming engine. For tests and small models; the engine streams.
 */
import type { GaussianSource } from "../../lib/aggregation/privacy/gaussian";
import { resolveStrategyOptions } from "../../lib/aggregation/registry";
import type { Json } from "../../lib/aggregation/strategy";
import { StrategyInputError } from "../../lib/aggregation/strategies/errors";
import {
  type ResolvedStrategyConfig,
  type RoundPlan,
  type StrategyState,
  combineChunk,
  CombineScratch,
  finishRound,
  needsGlobalModel,
  planRound,
  requiredStatistics,
  stateTensorKinds,
} from "../../lib/aggregation/strategies/roundPlan";
import { DeltaSquaredNorms, PairwiseSquaredDistances } from "../../lib/aggregation/strategies/statistics";

export type TensorMap = Record<string, Float64Array>;

export interface InMemoryUpdate {
  tensors: TensorMap;
  numExamples: number;
}

export interface InMemoryRoundResult {
  model: TensorMap;
  state: StrategyState;
  /** per-coordinate state (momentum / m / v), same names and shapes as the model */
  stateTensors: Partial<Record<string, TensorMap>>;
  plan: RoundPlan;
}

export function aggregateInMemory(
  config: ResolvedStrategyConfig,
  args: {
    updates: readonly InMemoryUpdate[];
    global?: TensorMap;
    state: StrategyState;
    stateTensors?: Partial<Record<string, TensorMap>>;
    noise?: GaussianSource;
    chunkSize?: number;
  },
): InMemoryRoundResult {
  const { updates } = args;
  const chunkSize = args.chunkSize ?? 65536;
  if (updates.length === 0) throw new StrategyInputError(config.strategy, "no valid updates to aggregate");
  if (needsGlobalModel(config) && !args.global) {
    throw new StrategyInputError(config.strategy, "needs the current global model (--global): server optimizers and clipping work on deltas w - x");
  }
  const names = Object.keys(updates[0].tensors).sort();
  const k = updates.length;
  const need = requiredStatistics(config);
  const distances = need.pairwiseDistances ? new PairwiseSquaredDistances(k) : undefined;
  const norms = need.deltaNorms ? new DeltaSquaredNorms(k) : undefined;
  const chunks = function* () {
    for (const name of names) {
      const size = updates[0].tensors[name].length;
      for (let start = 0; start < size; start += chunkSize) yield { name, start, end: Math.min(size, start + chunkSize) };
    }
  };
  if (distances || norms) {
    for (const { name, start, end } of chunks()) {
      const rows = updates.map((u) => u.tensors[name].subarray(start, end));
      distances?.accumulate(rows);
      norms?.accumulate(rows, args.global![name].subarray(start, end));
    }
  }
  const plan = planRound(config, {
    numExamples: updates.map((u) => u.numExamples),
    statistics: { pairwiseSquaredDistances: distances?.values, deltaSquaredNorms: norms?.values },
    state: args.state,
    noise: args.noise,
  });
  const kinds = stateTensorKinds(config);
  const stateTensors: Partial<Record<string, TensorMap>> = {};
  for (const kind of kinds) {
    const given = args.stateTensors?.[kind];
    const fresh: TensorMap = {};
    for (const name of names) {
      const size = updates[0].tensors[name].length;
      const prior = given?.[name];
      if (given && (!prior || prior.length !== size)) {
        throw new StrategyInputError(config.strategy, `state tensor ${kind}/${name} has ${prior?.length ?? 0} values, model tensor has ${size}`);
      }
      fresh[name] = prior ? Float64Array.from(prior) : new Float64Array(size); // m, v, momentum start at zero
    }
    stateTensors[kind] = fresh;
  }
  const model: TensorMap = {};
  for (const name of names) model[name] = new Float64Array(updates[0].tensors[name].length);
  const scratch = new CombineScratch();
  for (const { name, start, end } of chunks()) {
    combineChunk(config, plan, {
      rows: updates.map((u) => u.tensors[name].subarray(start, end)),
      out: model[name].subarray(start, end),
      global: args.global?.[name].subarray(start, end),
      state: Object.fromEntries(kinds.map((kind) => [kind, stateTensors[kind]![name].subarray(start, end)])),
      noise: args.noise,
      scratch,
    });
  }
  return { model, state: finishRound(config, plan, args.state), stateTensors, plan };
}

/** The round machinery's config of a registered rule-based strategy, from spec-style options. */
export function resolveStrategyConfig(raw: { strategy: string; [option: string]: unknown }): ResolvedStrategyConfig {
  const { strategy, ...options } = raw;
  const { definition, options: parsed, wrappers } = resolveStrategyOptions(strategy, JSON.parse(JSON.stringify(options)) as Json);
  if (!definition.rule) throw new Error(`${strategy} is not built on the shared round machinery (no rule)`);
  return {
    strategy,
    rule: definition.rule(parsed),
    ...(wrappers.clipping ? { clipping: wrappers.clipping } : {}),
    ...(wrappers.dp ? { dp: wrappers.dp } : {}),
  };
}

/** Spec-style strategy options: `{ strategy, ...options, clipping?, dp? }`. */
export type StrategyOptions = { strategy: string; [option: string]: unknown };
