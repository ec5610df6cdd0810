/** Public surface of the aggregation engine (the orchestrator's activity and `flo aggregate` use this). */
export { aggregateUpdates, DEFAULT_CHUNK_ELEMENTS } from "./engine";
export type { UpdateMetrics } from "./metrics";
export type { AggregateOptions, AggregationProgress, AggregationResult, IncludedUpdate, RoundWeighting, StrategyStateInput, UpdateInput } from "./engine";
export { AggregationError } from "./errors";
export { defineStrategy } from "./definition";
export type { StrategyCapabilities, StrategyDefinition, StrategyWrappers } from "./definition";
export { createStrategy, findStrategy, registerStrategy, registeredStrategyModules, resolveStrategyOptions, strategyDefinitions, strategyNames } from "./registry";
export type { AggregationRule, RuleSelection } from "./strategies/rule";
export type { Strategy } from "./strategy";
