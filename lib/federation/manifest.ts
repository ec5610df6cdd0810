/**
 * The round manifest: everything a round decided, written as JSON next to the round's models so a
 * run can be audited and resumed from it. One per round, aggregated or failed.
 */
import type { JobAttempt, ModelRef, RoundSummary } from "./types";
import type { EvaluationSummary } from "./evaluation";
import type { SiloOutcomeKind } from "./decisions";
import type { SecureAggregationRecord } from "./secure";

export const MANIFEST_SCHEMA = "flo.round-manifest/1";

export interface SiloManifestEntry {
  silo: string;
  outcome: SiloOutcomeKind;
  /** Every job attempt: job name, final state, error, times. */
  attempts: JobAttempt[];
  /** Set when the silo's update was aggregated. */
  included: boolean;
  /** Why the silo contributed nothing (job failed, late, update rejected by validation). */
  reason?: string;
  update?: { uri: string; sha256?: string };
  /** As the silo's metrics.json claimed it. */
  numExamples?: number;
  /** The silo's normalized weight in the aggregate (after aggregation.maxWeightShare), when included. */
  weightShare?: number;
  /** Metrics of the silo's model after local training, as its metrics.json reported them. */
  metrics?: Record<string, number>;
  /** The received global model evaluated on the silo's data before local training. */
  globalMetrics?: Record<string, number>;
}

export interface RoundManifest {
  schema: typeof MANIFEST_SCHEMA;
  federationId: string;
  round: number;
  status: "aggregated" | "failed";
  reason?: string;
  spec: ModelRef;
  sampled: string[];
  silos: SiloManifestEntry[];
  /** The job code the round's silos ran, when it is a folder flo uploaded (content-addressed). */
  code?: { uri: string; sha256: string };
  /** The global model the round's silos trained from. */
  globalIn?: ModelRef;
  /** The global model the round produced. */
  globalOut?: ModelRef;
  strategy: { name: string; options: unknown; stateIn?: ModelRef; stateOut?: ModelRef; report?: unknown };
  /** num_examples-weighted means over included silos. */
  metrics: Record<string, number>;
  globalMetrics: Record<string, number>;
  totalExamples: number;
  /** How the included updates were weighted (aggregated rounds). */
  weighting?: RoundWeightingRecord;
  /** Secure aggregation: session, t, survivors S and dropped D, quantization and the error bound. */
  secureAggregation?: SecureAggregationRecord;
  timings: { roundStartedAt: string; aggregationStartedAt?: string; aggregatedAt?: string; aggregationSeconds?: number };
}

/** A round's weighting: the cap and whom it lowered, equal weights, or silos weighing more than half with no cap. */
export interface RoundWeightingRecord {
  maxWeightShare?: number;
  capped: string[];
  equalized: boolean;
  /** Without a cap: silos whose share exceeded 0.5. */
  dominant: string[];
  /** What happened, for humans. */
  note?: string;
}

/** The latest completed round, the one thing resume needs; rewritten after every aggregation. */
export interface FederationCheckpoint {
  schema: "flo.checkpoint/1";
  federationId: string;
  round: number;
  model: ModelRef;
  strategyState?: ModelRef;
  history: RoundSummary[];
  manifestUri: string;
  /** Every evaluation so far, by round (evaluation manifests have the per-silo detail). */
  evaluations?: EvaluationSummary[];
}

/** num_examples-weighted mean of each numeric metric present in any entry. */
export function weightedMeans(entries: readonly { numExamples: number; values?: Record<string, number> }[]): Record<string, number> {
  const sums = new Map<string, { sum: number; weight: number }>();
  for (const e of entries) {
    for (const [name, value] of Object.entries(e.values ?? {})) {
      if (typeof value !== "number" || !Number.isFinite(value)) continue;
      const acc = sums.get(name) ?? { sum: 0, weight: 0 };
      acc.sum += e.numExamples * value;
      acc.weight += e.numExamples;
      sums.set(name, acc);
    }
  }
  const out: Record<string, number> = {};
  for (const [name, { sum, weight }] of [...sums].sort(([a], [b]) => a.localeCompare(b))) if (weight > 0) out[name] = sum / weight;
  return out;
}
