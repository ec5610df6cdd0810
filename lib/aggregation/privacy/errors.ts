/** Errors of the privacy wrappers (clipping, DP noise, accountant). */
export class PrivacyConfigError extends Error {
  override readonly name = "PrivacyConfigError";
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly got: unknown,
  ) {
    super(`${field}: expected ${expected}, got ${typeof got === "string" ? JSON.stringify(got) : String(got)}`);
  }
}

export class PrivacyAccountingError extends Error {
  override readonly name = "PrivacyAccountingError";
}
