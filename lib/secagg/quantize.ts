/**
 * Fixed-point encoding of clipped, weighted updates into Z_2^k.
 *
 * A silo clips its update x (all float tensors as one vector) to L2 norm C, clamps its weight to
 * w = min(numExamples, maxExamples), and encodes each coordinate as the integer
 *   q = round(w * x * s),  s = Q / C,  Q = 2^(b-1) - 1   (b = quantization bits),
 * clamped to [-w*Q, w*Q] (|x| <= C per coordinate, so only float rounding can reach past it).
 * The sum over silos satisfies |sum q| <= Q * W < 2^(b-1+L), W = sum of maxExamples, L = ceil(log2 W),
 * so it never wraps in Z_2^k when k >= b + L + 1; k is the smallest of 32 and 64 that satisfies it.
 * b + L <= 48 keeps every value and sum exact in float64 arithmetic.
 *
 * Rounding: "nearest" is floor(v + 0.5); "stochastic" is floor(v) + (u < v - floor(v)), u uniform in
 * [0, 1) (unbiased). Error per coordinate of the decoded weighted sum sum_i w_i x_i, over n silos:
 *   nearest: <= n * (1/2 + 1/32) / s;  stochastic: < n * (1 + 1/32) / s
 * (the 1/32 quantum per silo covers float64 rounding of w * x * s, whose magnitude is < 2^47 so its
 * rounding error is < 2^-6 quantum; dividing by s and by the weight sum adds only relative 2^-52).
 */

import * as crypto from "node:crypto";
import { SecAggError } from "./errors";
import type { RingBits } from "./session";

export type Rounding = "nearest" | "stochastic";

export interface QuantizationPlan {
  bits: number;
  clipNorm: number;
  /** W: sum of every roster silo's maxExamples. */
  totalMaxExamples: number;
  /** L = ceil(log2 W). */
  headroomBits: number;
  ringBits: RingBits;
  /** Q = 2^(b-1) - 1: the largest code of one example's coordinate. */
  levels: number;
  /** s = Q / C. */
  scale: number;
}

export const MAX_EXACT_BITS = 48;

export function planQuantization(options: { bits: number; clipNorm: number; maxExamples: readonly number[] }): QuantizationPlan {
  const { bits, clipNorm, maxExamples } = options;
  if (!Number.isSafeInteger(bits) || bits < 2 || bits > 32) throw new SecAggError("BAD_PARAMETERS", "bits", `expected an integer in [2, 32], got ${bits}`);
  if (!(typeof clipNorm === "number" && Number.isFinite(clipNorm) && clipNorm > 0)) throw new SecAggError("BAD_PARAMETERS", "clipping.norm", `expected a finite number > 0, got ${clipNorm}`);
  if (maxExamples.length === 0) throw new SecAggError("BAD_PARAMETERS", "maxExamples", "expected one per roster silo, got none");
  maxExamples.forEach((m, i) => {
    if (!Number.isSafeInteger(m) || m < 1) throw new SecAggError("BAD_PARAMETERS", `silos[${i}].maxExamples`, `expected an integer >= 1, got ${m}`);
  });
  const total = maxExamples.reduce((a, b) => a + b, 0);
  let exactHeadroom = 0;
  while (2 ** exactHeadroom < total) exactHeadroom++;
  if (bits + exactHeadroom > MAX_EXACT_BITS) {
    throw new SecAggError("BAD_PARAMETERS", "bits", `b + ceil(log2(sum of maxExamples)) = ${bits} + ${exactHeadroom} exceeds ${MAX_EXACT_BITS}: lower bits or maxExamples`);
  }
  const needed = bits + exactHeadroom + 1;
  const levels = 2 ** (bits - 1) - 1;
  return { bits, clipNorm, totalMaxExamples: total, headroomBits: exactHeadroom, ringBits: needed <= 32 ? 32 : 64, levels, scale: levels / clipNorm };
}

/** Bound on |decoded - exact| per coordinate of the weighted sum over `silos` silos (see the file comment). */
export function sumErrorBound(plan: QuantizationPlan, silos: number, rounding: Rounding): number {
  return (silos * ((rounding === "nearest" ? 0.5 : 1) + 1 / 32)) / plan.scale;
}

/** Clamps the declared example count to maxExamples; counts must be non-negative integers. */
export function clampWeight(numExamples: number, maxExamples: number): number {
  if (!Number.isSafeInteger(numExamples) || numExamples < 0) throw new SecAggError("BAD_INPUT", "num_examples", `expected a non-negative integer, got ${numExamples}`);
  return Math.min(numExamples, maxExamples);
}

/** Random 32-bit words for stochastic rounding, drawn from the OS CSPRNG into a reused buffer. */
export class UniformSource {
  private block = new Uint32Array(0);

  /** `count` fresh random words (valid until the next call). */
  words(count: number): Uint32Array {
    if (this.block.length < count) this.block = new Uint32Array(count);
    const view = this.block.subarray(0, count);
    crypto.randomFillSync(view);
    return view;
  }
}

const TWO_POW_32 = 4294967296;

/**
 * Encodes values (multiplied by `factor` = clip factor * w * s) into elements
 * [offset, offset + values.length) of `words`, clamped to +-limit (= w * Q).
 */
export function quantizeInto(options: {
  values: ArrayLike<number>;
  factor: number;
  limit: number;
  rounding: Rounding;
  words: Uint32Array;
  offset: number;
  ringBits: RingBits;
  uniform?: UniformSource;
}): void {
  const { values, factor, limit, words, offset, ringBits } = options;
  const n = values.length;
  const random = options.rounding === "stochastic" ? (options.uniform ?? new UniformSource()).words(n) : undefined;
  for (let i = 0; i < n; i++) {
    const v = values[i] * factor;
    let q: number;
    if (random) {
      const low = Math.floor(v);
      q = low + (random[i] / TWO_POW_32 < v - low ? 1 : 0);
    } else {
      q = Math.floor(v + 0.5);
    }
    if (!(q >= -limit && q <= limit)) {
      if (Number.isNaN(q)) throw new SecAggError("BAD_INPUT", "update", `coordinate ${i} of the chunk is not a number`);
      q = q > 0 ? limit : -limit;
    }
    if (ringBits === 32) {
      words[offset + i] = q;
    } else {
      const hi = Math.floor(q / TWO_POW_32);
      words[2 * (offset + i)] = q - hi * TWO_POW_32;
      words[2 * (offset + i) + 1] = hi;
    }
  }
}
