/**
 * Errors of the aggregation strategies. One class per family so callers can tell a bad option
 * (fix the spec/flags) from input the rule cannot handle this round (too few updates, no global
 * model) from corrupt persisted state (a checkpoint that does not match the model).
 */

/** An option value is out of range or of the wrong kind. `field` is the option path, e.g. `aggregation.beta`. */
export class StrategyConfigError extends Error {
  override readonly name = "StrategyConfigError";
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly got: unknown,
  ) {
    super(`${field}: expected ${expected}, got ${formatGot(got)}`);
  }
}

/** The round's inputs do not satisfy the rule's preconditions (e.g. Bulyan with K < 4f+3). */
export class StrategyInputError extends Error {
  override readonly name = "StrategyInputError";
  constructor(
    readonly strategy: string,
    message: string,
  ) {
    super(`${strategy}: ${message}`);
  }
}

/** Persisted strategy state does not match this strategy or this model. */
export class StrategyStateError extends Error {
  override readonly name = "StrategyStateError";
  constructor(message: string) {
    super(message);
  }
}

export function formatGot(got: unknown): string {
  if (typeof got === "string") return JSON.stringify(got);
  if (got === undefined) return "undefined";
  try {
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- no JSON form (function, symbol): String() is the last resort
    return JSON.stringify(got) ?? String(got);
  } catch {
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- JSON.stringify threw (bigint, cycle): String() is the last resort
    return String(got);
  }
}
