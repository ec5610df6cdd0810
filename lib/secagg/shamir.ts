/**
 * Shamir secret sharing over the prime field F_p, p = 2^255 - 19. Secrets and share values are field
 * elements encoded as 32 little-endian bytes; share x-coordinates are the recipients' 1-based roster
 * indexes (never 0, where the secret sits). Any t shares give the secret by Lagrange interpolation at
 * 0; any t-1 shares are consistent with every secret.
 */

import * as crypto from "node:crypto";
import { SecAggError } from "./errors";

export const FIELD_PRIME = 2n ** 255n - 19n;

export interface Share {
  x: number;
  y: bigint;
}

export function mod(a: bigint): bigint {
  const r = a % FIELD_PRIME;
  return r < 0n ? r + FIELD_PRIME : r;
}

export function fieldToBytes(v: bigint): Buffer {
  const out = Buffer.alloc(32);
  let x = mod(v);
  for (let i = 0; i < 32; i++) {
    out[i] = Number(x & 0xffn);
    x >>= 8n;
  }
  return out;
}

/** Decodes 32 little-endian bytes; values >= p are refused (they are no field element). */
export function fieldFromBytes(bytes: Uint8Array, field: string): bigint {
  if (bytes.length !== 32) throw new SecAggError("BAD_SHARE", field, `expected 32 bytes, got ${bytes.length}`);
  let v = 0n;
  for (let i = 31; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  if (v >= FIELD_PRIME) throw new SecAggError("BAD_SHARE", field, "value is not below the field prime 2^255-19");
  return v;
}

/** A uniformly random field element (rejection sampling over 255-bit strings). */
export function randomFieldElement(): bigint {
  for (;;) {
    const bytes = crypto.randomBytes(32);
    bytes[31] &= 0x7f;
    const v = fieldFromBytesUnchecked(bytes);
    if (v < FIELD_PRIME) return v;
  }
}

function fieldFromBytesUnchecked(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = 31; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

function pow(base: bigint, exp: bigint): bigint {
  let result = 1n;
  let b = mod(base);
  let e = exp;
  while (e > 0n) {
    if (e & 1n) result = (result * b) % FIELD_PRIME;
    b = (b * b) % FIELD_PRIME;
    e >>= 1n;
  }
  return result;
}

function inverse(a: bigint): bigint {
  if (mod(a) === 0n) throw new SecAggError("BAD_SHARE", "x", "no inverse of 0 (two shares with the same x?)");
  return pow(a, FIELD_PRIME - 2n);
}

/**
 * Splits `secret` into shares at x = 1..count with threshold t. `coefficients` (t-1 of them, for test
 * vectors) replace the random ones.
 */
export function splitSecret(options: { secret: bigint; threshold: number; count: number; coefficients?: readonly bigint[] }): Share[] {
  const { secret, threshold, count } = options;
  if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > count) {
    throw new SecAggError("BAD_PARAMETERS", "threshold", `expected 1 <= t <= ${count} shares, got ${threshold}`);
  }
  if (secret < 0n || secret >= FIELD_PRIME) throw new SecAggError("BAD_PARAMETERS", "secret", "must be a field element in [0, 2^255-19)");
  const coefficients = options.coefficients ?? Array.from({ length: threshold - 1 }, randomFieldElement);
  if (coefficients.length !== threshold - 1) throw new SecAggError("BAD_PARAMETERS", "coefficients", `expected ${threshold - 1}, got ${coefficients.length}`);
  const poly = [secret, ...coefficients.map(mod)];
  const shares: Share[] = [];
  for (let x = 1; x <= count; x++) shares.push({ x, y: evaluate(poly, BigInt(x)) });
  return shares;
}

function evaluate(poly: readonly bigint[], x: bigint): bigint {
  let acc = 0n;
  for (let k = poly.length - 1; k >= 0; k--) acc = (acc * x + poly[k]) % FIELD_PRIME;
  return acc;
}

/** Lagrange interpolation of the shares' polynomial at `at` (0 gives the secret). */
export function interpolate(shares: readonly Share[], at = 0n): bigint {
  const xs = new Set<number>();
  for (const s of shares) {
    if (!Number.isSafeInteger(s.x) || s.x < 1) throw new SecAggError("BAD_SHARE", "x", `share x-coordinates start at 1, got ${s.x}`);
    if (xs.has(s.x)) throw new SecAggError("BAD_SHARE", "x", `two shares at x = ${s.x}`);
    xs.add(s.x);
  }
  let acc = 0n;
  for (const si of shares) {
    let num = 1n;
    let den = 1n;
    for (const sj of shares) {
      if (sj.x === si.x) continue;
      num = (num * mod(at - BigInt(sj.x))) % FIELD_PRIME;
      den = (den * mod(BigInt(si.x) - BigInt(sj.x))) % FIELD_PRIME;
    }
    acc = (acc + si.y * num * inverse(den)) % FIELD_PRIME;
  }
  return acc;
}

/**
 * Reconstructs the secret from at least t shares. Extra shares are checked against the polynomial the
 * first t define, so one corrupted share is reported instead of silently giving a wrong mask.
 */
export function reconstructSecret(shares: readonly Share[], threshold: number, field: string): bigint {
  if (shares.length < threshold) throw new SecAggError("UNRECOVERABLE", field, `${shares.length} shares, need at least t = ${threshold}`);
  const base = shares.slice(0, threshold);
  for (const extra of shares.slice(threshold)) {
    if (interpolate(base, BigInt(extra.x)) !== mod(extra.y)) {
      throw new SecAggError("BAD_SHARE", field, `share at x = ${extra.x} does not lie on the polynomial of the shares at x = ${base.map((s) => s.x).join(", ")}`);
    }
  }
  return interpolate(base, 0n);
}
