/**
 * An update's metrics as the engine weighs them, and the num_examples-weighted mean of metrics
 * across updates. Parsing metrics.json is the silo job contract's (lib/compute/siloCompute.ts).
 */

export interface UpdateMetrics {
  /** The update's weight: how many examples it was trained on, an integer > 0. */
  numExamples: number;
  /** Finite numbers by metric name. */
  metrics: Record<string, number>;
}

/** num_examples-weighted mean of each metric over the updates that report it. Pure. */
export function weightedMetricMeans(updates: readonly UpdateMetrics[]): Record<string, number> {
  const sums = new Map<string, { weighted: number; weight: number }>();
  for (const u of updates) {
    for (const [k, v] of Object.entries(u.metrics)) {
      const s = sums.get(k) ?? { weighted: 0, weight: 0 };
      s.weighted += u.numExamples * v;
      s.weight += u.numExamples;
      sums.set(k, s);
    }
  }
  const out: Record<string, number> = {};
  for (const k of [...sums.keys()].sort()) out[k] = sums.get(k)!.weighted / sums.get(k)!.weight;
  return out;
}
