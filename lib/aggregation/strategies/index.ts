/** Issue #6 aggregation strategies: public surface (see docs/aggregation.md). */
export { STRATEGY_NAMES, resolveStrategyConfig, isStrategyName, type StrategyName, type StrategyOptions, type ResolvedStrategyConfig, type ClippingConfig, type DpConfig } from "./config";
export { StrategyConfigError, StrategyInputError, StrategyStateError } from "./errors";
export { createEngineStrategy, engineStrategyFactories, type EnginePlan, type EngineStrategyOptions } from "./engineStrategies";
export { aggregateInMemory, type InMemoryUpdate, type InMemoryRoundResult, type TensorMap } from "./inMemory";
export {
  initialStrategyState,
  planRound,
  combineChunk,
  finishRound,
  requiredStatistics,
  stateTensorKinds,
  needsGlobalModel,
  CombineScratch,
  type StrategyState,
  type RoundPlan,
  type RoundStatistics,
} from "./roundPlan";
export { medianChunk, trimmedMeanChunk, trimmedMeanCuts, bulyanChunk, weightedSumChunk, type Row } from "./robustKernels";
export { krumScores, krumRanking, krumSelect, multiKrumSelect, bulyanSelect, bulyanSizes, type DistanceMatrix } from "./krum";
export { SERVER_OPTIMIZER_DEFAULTS, resolveServerOptimizerOptions, fedAvgMChunk, fedAdaptiveChunk, type ServerOptimizerName, type ServerOptimizerOptions } from "./serverOptimizers";
export { accumulatePairwiseSquaredDistances, accumulateDeltaSquaredNorms, PairwiseSquaredDistances, DeltaSquaredNorms } from "./statistics";
export { loadStateDir, stateDirOutput, writeStateDirJson, addStrategyFlags, strategyOptionsFromFlags, STATE_JSON_FILE } from "./stateFiles";
