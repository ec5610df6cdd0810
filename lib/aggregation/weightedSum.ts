/**
 * THE weighted-sum kernel: every rule whose result is a weighted combination of (clipped) updates
 * (FedAvg, the server optimizers' mean, Multi-Krum, the geometric median) combines with it.
 * Accumulated in float64; rows read by the engine live in its shared arena and use the
 * WebAssembly SIMD kernel there (same summation order).
 */
import { arenaOf } from "./simdKernel";

/** out[i] = sum_k weights[k] * rows[k][i]; two rows per sweep to halve passes over `out`. */
export function weightedSum(rows: readonly (Float32Array | Float64Array)[], weights: readonly number[], out: Float64Array, length: number): void {
  // F32 rows read by the engine live in its shared arena: use the WebAssembly SIMD kernel there.
  const arena = arenaOf(rows, out);
  if (arena) {
    arena.weightedSum(rows as readonly Float32Array[], weights, out, length);
    return;
  }
  const k = rows.length;
  if (k === 0) {
    out.fill(0, 0, length);
    return;
  }
  const r0 = rows[0];
  const w0 = weights[0];
  let start = 1;
  if (k >= 2) {
    const r1 = rows[1];
    const w1 = weights[1];
    for (let i = 0; i < length; i++) out[i] = w0 * r0[i] + w1 * r1[i];
    start = 2;
  } else {
    for (let i = 0; i < length; i++) out[i] = w0 * r0[i];
  }
  for (let j = start; j + 1 < k; j += 2) {
    const a = rows[j];
    const b = rows[j + 1];
    const wa = weights[j];
    const wb = weights[j + 1];
    for (let i = 0; i < length; i++) out[i] += wa * a[i] + wb * b[i];
  }
  if ((k - start) % 2 === 1) {
    const a = rows[k - 1];
    const wa = weights[k - 1];
    for (let i = 0; i < length; i++) out[i] += wa * a[i];
  }
}
