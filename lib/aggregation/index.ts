/** Public surface of the aggregation engine (the orchestrator's activity and `flo aggregate` use this). */
export { aggregateUpdates, DEFAULT_CHUNK_ELEMENTS } from "./engine";
export type { UpdateMetrics } from "./metrics";
export type { AggregateOptions, AggregationProgress, AggregationResult, IncludedUpdate, StrategyStateInput, UpdateInput } from "./engine";
export { AggregationError } from "./errors";
export { createStrategy, registerStrategy, strategyNames } from "./registry";
export type { Strategy } from "./strategy";
