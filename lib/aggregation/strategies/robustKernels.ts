/**
 * Per-coordinate robust kernels over K aligned rows (row i = the same coordinates of update i).
 * All kernels are unweighted (the sample counts are ignored, as in Flower and the papers): a
 * Byzantine silo could otherwise claim a huge `num_examples` and dominate.
 * Pure functions; `scratch` buffers are reused across chunks to avoid allocation per coordinate.
 */
import { StrategyInputError } from "./errors";

/** One update's values for a chunk: float32 for F32/F16/BF16 tensors (exact), float64 for F64. */
export type Row = Float32Array | Float64Array;

function checkRows(rows: readonly Row[], out: Float64Array, kernel: string): number {
  if (rows.length === 0) throw new StrategyInputError(kernel, "needs at least one update row, got 0");
  const n = out.length;
  for (let i = 0; i < rows.length; i++) {
    if (rows[i].length < n) {
      throw new StrategyInputError(kernel, `row ${i} has ${rows[i].length} coordinates, expected at least ${n}`);
    }
  }
  return n;
}

/** Sorts the first k entries of `a` ascending (insertion sort: K is small, typically < 100). */
function sortPrefix(a: Float64Array, k: number): void {
  for (let i = 1; i < k; i++) {
    const v = a[i];
    let j = i - 1;
    while (j >= 0 && a[j] > v) {
      a[j + 1] = a[j];
      j--;
    }
    a[j + 1] = v;
  }
}

/** Coordinate-wise median; with an even K the two middle values are averaged. */
export function medianChunk(rows: readonly Row[], out: Float64Array): void {
  const n = checkRows(rows, out, "median");
  const k = rows.length;
  const column = new Float64Array(k);
  const mid = k >> 1;
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < k; i++) column[i] = rows[i][c];
    sortPrefix(column, k);
    out[c] = k % 2 === 1 ? column[mid] : (column[mid - 1] + column[mid]) / 2;
  }
}

/**
 * scipy `trim_mean` cut points: lowercut = int(beta*K) computed in float64 and truncated
 * (0.29*100 = 28.999999999999996 -> 28), uppercut = K - lowercut. Throws when nothing is left.
 */
export function trimmedMeanCuts(beta: number, k: number): { lowercut: number; uppercut: number } {
  const lowercut = Math.trunc(beta * k);
  const uppercut = k - lowercut;
  if (lowercut >= uppercut) {
    throw new StrategyInputError(
      "trimmed-mean",
      `beta=${beta} with ${k} updates cuts int(${beta}*${k})=${lowercut} from each end and leaves nothing to average; ` + `use a smaller beta or more updates`,
    );
  }
  return { lowercut, uppercut };
}

/** Coordinate-wise trimmed mean (scipy `trim_mean` semantics, see `trimmedMeanCuts`). */
export function trimmedMeanChunk(rows: readonly Row[], beta: number, out: Float64Array): void {
  const n = checkRows(rows, out, "trimmed-mean");
  const k = rows.length;
  const { lowercut, uppercut } = trimmedMeanCuts(beta, k);
  const count = uppercut - lowercut;
  const column = new Float64Array(k);
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < k; i++) column[i] = rows[i][c];
    sortPrefix(column, k);
    let sum = 0;
    for (let i = lowercut; i < uppercut; i++) sum += column[i];
    out[c] = sum / count;
  }
}

/**
 * Bulyan's aggregation step over the theta selected rows: per coordinate, the median of the
 * theta values, then the mean of the `beta` values closest to it (ties in distance: lower value
 * first after sorting, which is deterministic).
 */
export function bulyanChunk(selectedRows: readonly Row[], beta: number, out: Float64Array): void {
  const n = checkRows(selectedRows, out, "bulyan");
  const theta = selectedRows.length;
  if (!Number.isInteger(beta) || beta < 1 || beta > theta) {
    throw new StrategyInputError("bulyan", `beta (values averaged per coordinate) must be in 1..${theta}, got ${beta}`);
  }
  const column = new Float64Array(theta);
  const mid = theta >> 1;
  for (let c = 0; c < n; c++) {
    for (let i = 0; i < theta; i++) column[i] = selectedRows[i][c];
    sortPrefix(column, theta);
    const median = theta % 2 === 1 ? column[mid] : (column[mid - 1] + column[mid]) / 2;
    // The beta closest values to the median form a contiguous window of the sorted column:
    // grow it from the median outwards, taking the nearer neighbour each time.
    // lo/hi: next candidates on each side; ties in distance take the left (smaller) value.
    let lo = theta % 2 === 1 ? mid : mid - 1;
    let hi = lo + 1;
    let taken = 0;
    let sum = 0;
    while (taken < beta) {
      const left = lo >= 0 ? median - column[lo] : Infinity;
      const right = hi < theta ? column[hi] - median : Infinity;
      if (left <= right) {
        sum += column[lo];
        lo--;
      } else {
        sum += column[hi];
        hi++;
      }
      taken++;
    }
    out[c] = sum / beta;
  }
}
