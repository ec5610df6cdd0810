/** Error families of the aggregation engine. */

export type AggregationErrorCode =
  | "TOO_FEW_UPDATES" // fewer valid updates than minUpdates (or than the strategy needs)
  | "GLOBAL_MISMATCH" // the global model does not match the updates' layout
  | "STATE_MISMATCH" // an input state tensor file does not match the model layout
  | "STATE_OUTPUT_MISSING" // the strategy keeps state tensors but no stateOutput was given
  | "NON_FINITE_RESULT" // the combined value overflowed although every input was finite
  | "BAD_OPTIONS"; // invalid aggregateUpdates options (chunk size, ids...)

/** A round that cannot be aggregated as asked (as opposed to one bad update, which is excluded). */
export class AggregationError extends Error {
  override readonly name = "AggregationError";
  constructor(
    readonly code: AggregationErrorCode,
    message: string,
    /** Updates excluded so far, with reasons (for TOO_FEW_UPDATES). */
    readonly excluded: readonly { id: string; reason: string }[] = [],
  ) {
    super(`${message} [${code}]`);
  }
}
