/**
 * How much of a round one silo may steer. FedAvg weighs each update by the `num_examples` its silo
 * reports, so a silo that claims 1e12 examples takes the whole average. Two remedies live here, both
 * pure: a per-silo ceiling on the claim (`maxExamples`, applied where updates are admitted) and a cap
 * on any silo's normalized weight (`maxWeightShare`), applied to the weights of the admitted updates.
 */

/** Above this normalized weight one silo outweighs all others together: reported when no cap is set. */
export const DOMINANT_SHARE = 0.5;

export interface WeightShares {
  /** Normalized weights (sum 1), in the order of the input. */
  shares: number[];
  /** Indices whose share was lowered to the cap. */
  capped: number[];
  /** True when the cap was below 1/m for m updates: no capped distribution exists, so all weigh the same. */
  equalized: boolean;
}

/**
 * Normalizes `weights` and, with `maxShare` (0 < x <= 1), lowers every share above x to x and
 * hands the excess to the others in proportion to their weights, repeating until no share exceeds x
 * (each pass caps at least one more update, so at most m passes). When x < 1/m no distribution can
 * keep every share at or below x; the shares are then equal (1/m each).
 */
export function capWeightShares(weights: readonly number[], maxShare?: number): WeightShares {
  const m = weights.length;
  if (m === 0) return { shares: [], capped: [], equalized: false };
  for (const [i, w] of weights.entries()) {
    if (!(Number.isFinite(w) && w > 0)) throw new RangeError(`weights[${i}]: expected a finite number > 0, got ${w}`);
  }
  if (maxShare !== undefined && !(maxShare > 0 && maxShare <= 1)) throw new RangeError(`maxShare: expected 0 < x <= 1, got ${maxShare}`);
  const total = weights.reduce((a, b) => a + b, 0);
  const shares = weights.map((w) => w / total);
  if (maxShare === undefined || maxShare === 1) return { shares, capped: [], equalized: false };
  if (maxShare * m < 1) return { shares: weights.map(() => 1 / m), capped: [], equalized: true };

  const isCapped = new Array<boolean>(m).fill(false);
  for (;;) {
    let cappedCount = 0;
    let freeWeight = 0;
    for (let i = 0; i < m; i++) {
      if (isCapped[i]) cappedCount++;
      else freeWeight += weights[i];
    }
    const freeShare = 1 - cappedCount * maxShare;
    let newlyCapped = false;
    for (let i = 0; i < m; i++) {
      if (isCapped[i]) continue;
      const share = (weights[i] / freeWeight) * freeShare;
      if (share > maxShare) {
        isCapped[i] = true;
        newlyCapped = true;
      }
    }
    if (!newlyCapped) {
      const capped: number[] = [];
      const out = weights.map((w, i) => {
        if (isCapped[i]) {
          capped.push(i);
          return maxShare;
        }
        return (w / freeWeight) * freeShare;
      });
      return { shares: out, capped, equalized: false };
    }
  }
}

/** Indices whose normalized share exceeds DOMINANT_SHARE (flagged in manifests when no cap is set). */
export function dominantShares(shares: readonly number[]): number[] {
  return shares.flatMap((s, i) => (s > DOMINANT_SHARE ? [i] : []));
}
