/** A strategy was misconfigured or misused (bad option, too few updates for the rule, missing global model). */
export class StrategyError extends Error {
  override readonly name = "StrategyError";
  constructor(
    readonly strategy: string,
    message: string,
  ) {
    super(`strategy ${strategy}: ${message}`);
  }
}
