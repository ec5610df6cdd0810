/**
 * Whole-model statistics accumulated chunk by chunk (first pass of a two-pass round): pairwise
 * squared distances for Krum/Bulyan, and squared norms of each update's delta for clipping.
 * Accumulators are plain data (`toJSON`/`fromJSON`) so partial sums from parallel workers can be
 * merged with `add`.
 */
import { StrategyInputError } from "./errors";
import type { Row } from "./robustKernels";

/** acc[i*K+j] += sum_c (rows[i][c] - rows[j][c])^2 for i != j (additive: safe to split across workers). */
export function accumulatePairwiseSquaredDistances(rows: readonly Row[], length: number, acc: Float64Array): void {
  const k = rows.length;
  if (acc.length !== k * k) throw new StrategyInputError("pairwise-distances", `accumulator has ${acc.length} entries, expected ${k}x${k}`);
  // Blocked over coordinates so the K row slices stay in cache while all K(K-1)/2 pairs use them
  // (unblocked, every pair would stream the whole chunk from memory again).
  const block = 2048;
  for (let start = 0; start < length; start += block) {
    const end = Math.min(length, start + block);
    for (let i = 0; i < k; i++) {
      const a = rows[i];
      for (let j = i + 1; j < k; j++) {
        const b = rows[j];
        let sum = 0;
        for (let c = start; c < end; c++) {
          const d = a[c] - b[c];
          sum += d * d;
        }
        acc[i * k + j] += sum;
        acc[j * k + i] += sum;
      }
    }
  }
}

/** acc[i] += sum_c (rows[i][c] - global[c])^2 (additive). */
export function accumulateDeltaSquaredNorms(rows: readonly Row[], global: Row, length: number, acc: Float64Array): void {
  if (acc.length !== rows.length) throw new StrategyInputError("delta-norms", `accumulator has ${acc.length} entries, expected ${rows.length}`);
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i];
    let sum = 0;
    for (let c = 0; c < length; c++) {
      const d = row[c] - global[c];
      sum += d * d;
    }
    acc[i] += sum;
  }
}

export class PairwiseSquaredDistances {
  readonly values: Float64Array;
  constructor(readonly k: number) {
    this.values = new Float64Array(k * k);
  }

  /** Adds the contribution of one aligned chunk (rows[i] = coordinates of update i). */
  accumulate(rows: readonly Row[], length = rows[0]?.length ?? 0): void {
    if (rows.length !== this.k) throw new StrategyInputError("pairwise-distances", `expected ${this.k} rows, got ${rows.length}`);
    accumulatePairwiseSquaredDistances(rows, length, this.values);
  }

  add(other: PairwiseSquaredDistances): void {
    if (other.k !== this.k) throw new StrategyInputError("pairwise-distances", `cannot merge ${other.k}x${other.k} into ${this.k}x${this.k}`);
    for (let i = 0; i < this.values.length; i++) this.values[i] += other.values[i];
  }

  toJSON(): { k: number; values: number[] } {
    return { k: this.k, values: Array.from(this.values) };
  }
}

/** Squared L2 norm of each update's delta w_i - x over the whole model. */
export class DeltaSquaredNorms {
  readonly values: Float64Array;
  constructor(readonly k: number) {
    this.values = new Float64Array(k);
  }

  accumulate(rows: readonly Row[], global: Row, length = global.length): void {
    if (rows.length !== this.k) throw new StrategyInputError("delta-norms", `expected ${this.k} rows, got ${rows.length}`);
    accumulateDeltaSquaredNorms(rows, global, length, this.values);
  }

  add(other: DeltaSquaredNorms): void {
    for (let i = 0; i < this.values.length; i++) this.values[i] += other.values[i];
  }

  norms(): number[] {
    return Array.from(this.values, Math.sqrt);
  }
}
