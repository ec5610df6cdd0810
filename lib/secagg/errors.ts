/** Errors of the secure-aggregation core: `code` names the rule, `field` the input at fault. */

export type SecAggErrorCode =
  | "BAD_KEY" // a public or secret key that is not 32 raw bytes of base64, or a malformed key file
  | "KEY_FILE_EXISTS" // keygen refuses to overwrite a key file
  | "BAD_ROSTER" // duplicate silo ids or public keys, empty roster, index out of range
  | "BAD_PARAMETERS" // threshold, quantization bits, clipping norm or maxExamples out of range
  | "BAD_SHARE" // a share that fails authentication, or a share set that is inconsistent
  | "BAD_UPLOAD" // a masked vector or share file that does not match the session, roster or model
  | "BAD_INPUT" // an update tensor that does not match the global model
  | "TOO_FEW_SURVIVORS" // fewer than t survivors: nothing may be unmasked
  | "UNRECOVERABLE" // a dropped silo's pairwise seeds are missing from a survivor, or fewer than t shares
  | "SECOND_ROSTER"; // a silo asked to reveal for a second survivor/dropped split of the same session

export class SecAggError extends Error {
  override readonly name = "SecAggError";
  constructor(
    readonly code: SecAggErrorCode,
    readonly field: string,
    /** What is wrong, without the field and code. */
    readonly detail: string,
  ) {
    super(`${field}: ${detail} [${code}]`);
  }
}
