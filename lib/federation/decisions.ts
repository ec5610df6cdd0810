/**
 * The federation's decisions as pure functions: which silos train in a round, whether a round has
 * a quorum, when its deadline is, and the deterministic names that correlate jobs, events and
 * instances. The orchestrators call these during replay, so they must stay deterministic: no clock,
 * no randomness, no I/O.
 */
import { createHash } from "node:crypto";
import { DEFAULT_JOB_KIND, type JobKind } from "../compute/siloCompute";

export interface SamplingPolicy {
  /** Fraction of the federation's silos asked to train each round, in (0, 1]. */
  sampleFraction: number;
  /** Minimum number of silos whose updates must be aggregated for a round to count. */
  minSilos: number;
}

/**
 * How many silos a round samples: `ceil(fraction * n)`, never fewer than `minSilos` (a round that
 * samples fewer silos than its quorum could never succeed), never more than `n`.
 */
export function sampleSize(siloCount: number, policy: SamplingPolicy): number {
  const wanted = Math.ceil(policy.sampleFraction * siloCount - 1e-9);
  return Math.min(siloCount, Math.max(policy.minSilos, wanted, 1));
}

/**
 * The silos that train in `round`: a uniform sample without replacement, drawn by ranking each
 * silo by sha256(federationId, round, silo). Deterministic from its arguments (replays and resumed
 * runs sample the same silos), independent of the order silos are listed in, and different per round.
 * Returned in the spec's order.
 */
export function sampleSilos(federationId: string, round: number, silos: readonly string[], policy: SamplingPolicy): string[] {
  const count = sampleSize(silos.length, policy);
  if (count >= silos.length) return [...silos];
  const ranked = silos
    .map((silo) => ({ silo, rank: createHash("sha256").update(`${federationId}\u0000${round}\u0000${silo}`).digest("hex") }))
    .sort((a, b) => (a.rank < b.rank ? -1 : a.rank > b.rank ? 1 : 0))
    .slice(0, count);
  const chosen = new Set(ranked.map((r) => r.silo));
  return silos.filter((s) => chosen.has(s));
}

export type SiloOutcomeKind = "succeeded" | "failed" | "late";

export interface QuorumVerdict {
  ok: boolean;
  succeeded: number;
  /** Why the round cannot aggregate, when it can't. */
  reason?: string;
}

/** A round aggregates only when at least `minSilos` silos delivered an update in time. */
export function roundQuorum(outcomes: readonly { silo: string; outcome: SiloOutcomeKind }[], minSilos: number): QuorumVerdict {
  const succeeded = outcomes.filter((o) => o.outcome === "succeeded").length;
  if (succeeded >= minSilos) return { ok: true, succeeded };
  const missing = outcomes
    .filter((o) => o.outcome !== "succeeded")
    .map((o) => `${o.silo} ${o.outcome}`)
    .join(", ");
  return {
    ok: false,
    succeeded,
    reason: `quorum not reached: ${succeeded} of ${outcomes.length} sampled silos succeeded, policy.minSilos is ${minSilos}${missing ? ` (${missing})` : ""}`,
  };
}

/** The moment a round closes, from its start (orchestration time) and the policy's timeout. */
export function roundDeadline(roundStart: Date, roundTimeoutSeconds: number): Date {
  return new Date(roundStart.getTime() + roundTimeoutSeconds * 1000);
}

/** When a waiting silo next polls its job: every `pollSeconds`, but never past the deadline. */
export function nextPollAt(now: Date, deadline: Date, pollSeconds: number): Date {
  return new Date(Math.min(deadline.getTime(), now.getTime() + pollSeconds * 1000));
}

/**
 * What ends the instance ids of a kind's sub-orchestrations: nothing for training (its ids predate
 * kinds), `:<kind>` otherwise. Silo names never contain ":", so the ids of two kinds never meet.
 */
function kindSuffix(kind: JobKind = DEFAULT_JOB_KIND): string {
  return kind === DEFAULT_JOB_KIND ? "" : `:${String(kind)}`;
}

/** Instance id of the sub-orchestration that runs one silo's job of `kind` (default `train`) for one round. */
export function siloInstanceId(federationId: string, round: number, silo: string, kind?: JobKind, rerun = 0): string {
  return `${federationId}:r${round}${rerunSuffix(rerun)}:${silo}${kindSuffix(kind)}`;
}

/**
 * A secure round re-run under a new session (`rerun` > 0) runs new instances,
 * `<fed>:r<round>.s<rerun>:...`; their jobs carry the `floRerun` tag, so the inbox raises their events there.
 */
function rerunSuffix(rerun: number): string {
  return rerun > 0 ? `.s${rerun}` : "";
}

/**
 * The round's silos split into groups, each run by one `siloGroup` sub-orchestration. A flat
 * fan-out of K sub-orchestrations makes every completion replay the federation's whole history
 * (O(K^2) replay work per round); with groups of about sqrt(K) silos both levels replay about
 * sqrt(K) completions each (O(K^1.5)). Groups are consecutive runs of `silos` whose sizes differ
 * by at most one, so concatenating the groups' results gives back the silos' order.
 */
export function siloGroups(silos: readonly string[]): string[][] {
  if (silos.length === 0) return [];
  const count = Math.ceil(silos.length / Math.ceil(Math.sqrt(silos.length)));
  const groups: string[][] = [];
  for (let g = 0, start = 0; g < count; g++) {
    const size = Math.floor(silos.length / count) + (g < silos.length % count ? 1 : 0);
    groups.push(silos.slice(start, start + size));
    start += size;
  }
  return groups;
}

/** Instance id of the sub-orchestration that runs one group of silos' jobs of `kind` for one round ('.' is never in a silo name). */
export function siloGroupInstanceId(federationId: string, round: number, group: number, kind?: JobKind, rerun = 0): string {
  return `${federationId}:r${round}${rerunSuffix(rerun)}:group.${group}${kindSuffix(kind)}`;
}

/** Whether the output of `round` is evaluated: every `every`-th round's, and the last round's (never without an evaluation plan). */
export function evaluationDue(run: { rounds: number; evaluation?: { every: number } }, round: number): boolean {
  if (!run.evaluation) return false;
  return round >= run.rounds || (run.evaluation.every > 0 && round % run.evaluation.every === 0);
}
