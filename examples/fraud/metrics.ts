/** Binary-classification metrics for the fraud demo (plain functions over probabilities and 0/1 labels). */

/** The evaluation a trainer reports (validation split). */
export interface BinaryMetrics {
  /** ROC AUC (NaN-free: 0.5 when only one class is present). */
  auc: number;
  /** Accuracy at `threshold`. */
  accuracy: number;
  /** Mean binary cross-entropy (unweighted). */
  loss: number;
  /** Precision and recall of the fraud class at `threshold` (precision 0 when nothing is flagged). */
  precision: number;
  recall: number;
}

/**
 * ROC AUC by the rank-sum (Mann-Whitney U) formula: rank all scores ascending, ties get the mean
 * of their ranks, AUC = (sum of positive ranks - P(P+1)/2) / (P N). Equals the probability that a
 * random positive scores above a random negative, counting ties as one half. Returns 0.5 when a
 * class is absent (AUC is undefined there; 0.5 = no information, and keeps means finite).
 */
export function rocAuc(scores: ArrayLike<number>, labels: ArrayLike<number>): number {
  const n = scores.length;
  if (labels.length !== n) throw new RangeError(`rocAuc: ${n} scores but ${labels.length} labels`);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => scores[a] - scores[b]);
  let positives = 0;
  let positiveRankSum = 0;
  for (let start = 0; start < n;) {
    let end = start + 1;
    while (end < n && scores[order[end]] === scores[order[start]]) end++;
    const meanRank = (start + 1 + end) / 2; // ranks start..end-1 are 1-based start+1..end
    for (let k = start; k < end; k++) {
      if (labels[order[k]] === 1) {
        positives++;
        positiveRankSum += meanRank;
      }
    }
    start = end;
  }
  const negatives = n - positives;
  if (positives === 0 || negatives === 0) return 0.5;
  return (positiveRankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** Mean binary cross-entropy, probabilities clipped to [1e-7, 1 - 1e-7]. */
export function logLoss(probabilities: ArrayLike<number>, labels: ArrayLike<number>): number {
  const eps = 1e-7;
  let sum = 0;
  for (let i = 0; i < probabilities.length; i++) {
    const p = Math.min(1 - eps, Math.max(eps, probabilities[i]));
    sum -= labels[i] === 1 ? Math.log(p) : Math.log(1 - p);
  }
  return probabilities.length ? sum / probabilities.length : 0;
}

export function binaryMetrics(probabilities: ArrayLike<number>, labels: ArrayLike<number>, threshold = 0.5): BinaryMetrics {
  let tp = 0;
  let fp = 0;
  let fn = 0;
  let correct = 0;
  for (let i = 0; i < probabilities.length; i++) {
    const flagged = probabilities[i] >= threshold;
    const fraud = labels[i] === 1;
    if (flagged === fraud) correct++;
    if (flagged && fraud) tp++;
    else if (flagged) fp++;
    else if (fraud) fn++;
  }
  return {
    auc: rocAuc(probabilities, labels),
    accuracy: probabilities.length ? correct / probabilities.length : 0,
    loss: logLoss(probabilities, labels),
    precision: tp + fp > 0 ? tp / (tp + fp) : 0,
    recall: tp + fn > 0 ? tp / (tp + fn) : 0,
  };
}

/** Weighted mean of each metric over parts (weights e.g. silos' num_examples). */
export function weightedMean(parts: readonly { weight: number; metrics: Record<string, number> }[]): Record<string, number> {
  const total = parts.reduce((s, p) => s + p.weight, 0);
  const out: Record<string, number> = {};
  if (total <= 0) return out;
  for (const name of Object.keys(parts[0]?.metrics ?? {})) {
    out[name] = parts.reduce((s, p) => s + p.weight * p.metrics[name], 0) / total;
  }
  return out;
}
