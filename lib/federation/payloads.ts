/**
 * Bounds on what the federation passes through Durable Functions. The Durable extension refuses a
 * custom status whose JSON is above 16 KB of UTF-16 text (the orchestration fails), and every input,
 * output and event payload is replayed and stored with the history. So the federation's Durable
 * payloads never grow with the number of rounds: the round history lives in the checkpoint blob,
 * the status and the inputs carry a short tail of compact round digests.
 *
 * Pure functions: the orchestrator calls them during replay, tests call them on recorded payloads.
 */
import type { FederationStatus, RoundDigest, RoundSummary } from "./types";

/** The extension's custom-status limit, in UTF-16 bytes of the JSON text. */
export const MAX_CUSTOM_STATUS_BYTES = 16 * 1024;
/** How many completed rounds the custom status and the orchestration input carry. */
export const RECENT_ROUNDS = 3;
/** Metric means kept per digest and per kind (post-training, global); the manifest has them all. */
export const MAX_DIGEST_METRICS = 4;

/**
 * Size of a Durable payload as the host measures it: the JSON text's UTF-16 size, a JS string's
 * length x 2 bytes (the .NET host holds strings as UTF-16).
 */
export function durablePayloadBytes(value: unknown): number {
  const text = JSON.stringify(value);
  return text === undefined ? 0 : text.length * 2;
}

/** The first `MAX_DIGEST_METRICS` metric means by name, so digests stay small whatever a trainer reports. */
function firstMetrics(metrics: Record<string, number>): Record<string, number> {
  return Object.fromEntries(
    Object.entries(metrics)
      .sort(([a], [b]) => a.localeCompare(b))
      .slice(0, MAX_DIGEST_METRICS),
  );
}

/** A completed round in a few hundred bytes: its model digest, manifest, counts and a few metric means. */
export function roundDigest(summary: RoundSummary): RoundDigest {
  return {
    round: summary.round,
    modelSha256: summary.model.sha256,
    manifestUri: summary.manifestUri,
    included: summary.included.length,
    excluded: summary.excluded.length,
    metrics: firstMetrics(summary.metrics),
    globalMetrics: firstMetrics(summary.globalMetrics),
  };
}

/** The last `RECENT_ROUNDS` digests after adding `latest`, oldest first. */
export function recentRounds(previous: readonly RoundDigest[], latest: RoundDigest): RoundDigest[] {
  return [...previous.filter((d) => d.round < latest.round), latest].slice(-RECENT_ROUNDS);
}

/**
 * `status` made to fit the custom-status limit. With flo's own URIs it always fits as is; metric
 * names and URIs come from users and deployments, so past the limit the digests' metrics (and the
 * evaluation digest's) go first,
 * then the oldest digests: the status stays valid and the manifests keep the detail.
 */
export function fitCustomStatus(status: FederationStatus): FederationStatus {
  if (durablePayloadBytes(status) <= MAX_CUSTOM_STATUS_BYTES) return status;
  let recent = status.recent.map((d) => ({ ...d, metrics: {}, globalMetrics: {} }));
  const evaluation = status.evaluation ? { evaluation: { ...status.evaluation, metrics: {} } } : {};
  let fitted: FederationStatus = { ...status, ...evaluation, recent };
  while (recent.length > 0 && durablePayloadBytes(fitted) > MAX_CUSTOM_STATUS_BYTES) {
    recent = recent.slice(1);
    fitted = { ...status, ...evaluation, recent };
  }
  return fitted;
}
