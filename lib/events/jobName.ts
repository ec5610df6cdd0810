/**
 * Reading flo's deterministic job names back (`flo-<federation>-r<round>-<silo>[-a<attempt>]`), the
 * fallback correlation when an event carries no flo tags. Names are produced by lib/spec/command.ts.
 */

export interface FloJobNameParts {
  federationId: string;
  round: number;
  silo: string;
  /** Resubmission attempt (`-a2`), absent for the first submission. */
  attempt?: number;
}

/**
 * Federation ids and silo names may themselves contain dashes, so the split is: the federation id is
 * the longest prefix followed by `-r<digits>-`, the silo is the rest minus an optional `-a<digits>`
 * suffix. Tags are the primary correlation; this is only the fallback.
 */
const FLO_JOB_NAME = /^flo-(.+)-r(\d{1,9})-(.+?)(?:-a(\d{1,4}))?$/;

/** Parses a flo job name, or returns undefined when the name does not follow flo's pattern. */
export function parseFloJobName(jobName: string): FloJobNameParts | undefined {
  const match = FLO_JOB_NAME.exec(jobName);
  if (!match) return undefined;
  const [, federationId, round, silo, attempt] = match;
  return attempt === undefined
    ? { federationId, round: Number(round), silo }
    : { federationId, round: Number(round), silo, attempt: Number(attempt) };
}
