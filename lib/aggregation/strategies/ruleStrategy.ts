/**
 * Turns a rule (rule.ts) plus its wrappers (clipping, central DP) into the streaming engine's
 * `Strategy` (../strategy.ts). One statistics pass (pairwise distances and/or delta norms in one
 * accumulator) when the rule or clipping needs it, then the combine pass: at most two reads of
 * every update.
 */
import type { StrategyWrappers } from "../definition";
import type { CombineChunk, Json, RoundContext, StatisticsChunk, StatisticsPass, Strategy } from "../strategy";
import { createGaussianSource, newNoiseKey } from "../privacy/gaussian";
import { StrategyInputError, StrategyStateError } from "./errors";
import {
  CombineScratch,
  combineChunk,
  finishRound,
  initialStrategyState,
  needsGlobalModel,
  planRound,
  requiredStatistics,
  type ResolvedStrategyConfig,
  type RoundPlan,
  stateTensorKinds,
  type StrategyState,
} from "./roundPlan";
import type { AggregationRule } from "./rule";
import { accumulateDeltaSquaredNorms, accumulatePairwiseSquaredDistances } from "./statistics";

/** Engine plan: the pure RoundPlan plus the round's secret noise key (hex). Never persist it. */
export type EnginePlan = RoundPlan & { noiseKey?: string } & { [key: string]: Json };

function parseState(config: ResolvedStrategyConfig, json: Json | undefined): StrategyState {
  if (json === undefined || json === null) return initialStrategyState(config);
  if (typeof json !== "object" || Array.isArray(json) || typeof json.strategy !== "string" || typeof json.optimizerSteps !== "number") {
    throw new StrategyStateError(`strategy state must be an object with "strategy" and "optimizerSteps", got ${JSON.stringify(json).slice(0, 200)}`);
  }
  return json as unknown as StrategyState;
}

/**
 * The strategy of rule `name` with its wrappers. `options` is filled in by the registry (the JSON
 * the strategy was created from, so that a kernel worker can re-create it).
 */
export function createRuleStrategy(name: string, rule: AggregationRule, wrappers: StrategyWrappers): Strategy<EnginePlan> {
  const { insecureTestNoiseSeed } = wrappers;
  const config: ResolvedStrategyConfig = {
    strategy: name,
    rule,
    ...(wrappers.clipping ? { clipping: wrappers.clipping } : {}),
    ...(wrappers.dp ? { dp: wrappers.dp } : {}),
  };
  const need = requiredStatistics(config);
  const k = (ctx: RoundContext) => ctx.updates.length;
  const distancesSize = (ctx: RoundContext) => (need.pairwiseDistances ? k(ctx) * k(ctx) : 0);

  const statistics: StatisticsPass[] = [];
  if (need.pairwiseDistances || need.deltaNorms) {
    statistics.push({
      name: [need.pairwiseDistances ? "pairwise-distances" : "", need.deltaNorms ? "delta-norms" : ""].filter(Boolean).join("+"),
      size: (ctx) => distancesSize(ctx) + (need.deltaNorms ? k(ctx) : 0),
      accumulate(chunk: StatisticsChunk, acc: Float64Array, ctx: RoundContext) {
        const d = distancesSize(ctx);
        if (need.pairwiseDistances) accumulatePairwiseSquaredDistances(chunk.rows, chunk.length, acc.subarray(0, d));
        if (need.deltaNorms) accumulateDeltaSquaredNorms(chunk.rows, chunk.global!, chunk.length, acc.subarray(d, d + k(ctx)));
      },
    });
  }
  const kinds = stateTensorKinds(config);
  const scratch = new CombineScratch(); // combine runs sequentially per instance (one per worker)
  // Sorting per coordinate or K^2 distances cost ~10x a weighted mean per byte: worth a second core.
  const costly = rule.usesPairwiseDistances || rule.combine !== undefined;

  return {
    name,
    options: {},
    needsGlobal: needsGlobalModel(config),
    stateTensors: kinds.map((kind) => ({ name: kind, dtype: "F64" as const })), // exact resume
    // Only a plain weighted mean of all updates is sure to turn a NaN row into a NaN output; other
    // rules may discard the bad value, and clipping turns a NaN norm into a plan error, so rows are scanned.
    propagatesNonFinite: false,
    statistics,
    ...(costly ? { parallelKernels: { statistics: true, combine: (plan: EnginePlan) => plan.noiseKey === undefined } } : {}),

    checkRound(ctx: RoundContext, hasGlobal: boolean) {
      if (needsGlobalModel(config) && !hasGlobal) {
        throw new StrategyInputError(name, "needs the current global model (--global): server optimizers and clipping work on deltas w - x");
      }
      rule.checkRound?.(ctx.updates.length);
      const state = parseState(config, ctx.state);
      if (state.strategy !== config.strategy) {
        throw new StrategyStateError(`strategy state was written by "${state.strategy}", but this round runs "${config.strategy}"; start without --state-in or use the same strategy`);
      }
      // A resumed optimizer must get its moments back: silently restarting them at zero is Flower's bug.
      const missing = kinds.filter((kind) => !ctx.stateTensorsPresent.includes(kind));
      if (state.optimizerSteps > 0 && missing.length > 0) {
        throw new StrategyStateError(`strategy state says ${state.optimizerSteps} optimizer step(s) were taken but state tensor file(s) ${missing.join(", ")} are missing`);
      }
      if (state.optimizerSteps === 0 && ctx.stateTensorsPresent.length > 0 && ctx.state === undefined) {
        throw new StrategyStateError(`state tensor file(s) ${ctx.stateTensorsPresent.join(", ")} given without the strategy state JSON`);
      }
    },

    plan(ctx: RoundContext, stats: readonly Float64Array[]): EnginePlan {
      const state = parseState(config, ctx.state);
      const n = ctx.updates.length;
      const acc = stats[0];
      const d = need.pairwiseDistances ? n * n : 0;
      const noiseKey = config.dp ? newNoiseKey(insecureTestNoiseSeed, state.accountant?.steps ?? 0) : undefined;
      const plan = planRound(config, {
        numExamples: ctx.updates.map((u) => u.numExamples),
        statistics: {
          ...(need.pairwiseDistances ? { pairwiseSquaredDistances: acc.subarray(0, d) } : {}),
          ...(need.deltaNorms ? { deltaSquaredNorms: acc.subarray(d, d + n) } : {}),
        },
        state,
        ...(noiseKey ? { noise: createGaussianSource({ key: { secret: noiseKey, label: "plan" } }) } : {}),
      });
      if (noiseKey && insecureTestNoiseSeed !== undefined) plan.deterministicNoise = true;
      return { ...plan, ...(noiseKey ? { noiseKey: noiseKey.toString("hex") } : {}) };
    },

    integerTensorSource: (plan: EnginePlan) => plan.integerSource,

    combine(chunk: CombineChunk, plan: EnginePlan) {
      const state: Record<string, Float64Array> = {};
      for (const kind of kinds) {
        const into = chunk.stateOut[kind];
        into.set(chunk.state[kind].subarray(0, chunk.length));
        state[kind] = into;
      }
      const noise = plan.noiseKey ? createGaussianSource({ key: { secret: Buffer.from(plan.noiseKey, "hex"), label: `${chunk.tensor.name}\u0000${chunk.start}` } }) : undefined;
      combineChunk(config, plan, { rows: chunk.rows, out: chunk.out, global: chunk.global, state, noise, scratch });
    },

    finish(ctx: RoundContext, plan: EnginePlan) {
      const next = finishRound(config, plan, parseState(config, ctx.state));
      const report: { [key: string]: Json } = { strategy: config.strategy };
      if (!plan.weights || plan.selected.length !== plan.k) report.selected = plan.selected.map((i) => ctx.updates[i].id);
      if (plan.report) Object.assign(report, plan.report);
      if (plan.clipScales) {
        report.clipNorm = plan.clipNorm!;
        report.unclipped = plan.unclippedCount!;
        if (next.clipNorm !== plan.clipNorm) report.nextClipNorm = next.clipNorm!;
      }
      if (config.dp) {
        report.noiseStddev = plan.noiseStddev;
        report.privacy = next.privacy as unknown as Json;
        if (plan.deterministicNoise) report.insecureDeterministicNoise = true;
      }
      return { state: next as unknown as Json, report };
    },
  };
}
