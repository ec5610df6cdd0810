/**
 * Azure ML job statuses and their meaning for flo. Pure and SDK-free, so the event parser and the
 * local compute (which emits Azure ML-shaped events) can share it without loading the ARM SDK.
 */
import type { JobState } from "../siloCompute";

/** Every status of `KnownJobStatus` in @azure/arm-machinelearning 2.1.1 (api-version 2022-10-01). */
export const AZURE_ML_JOB_STATUSES = [
  "NotStarted",
  "Starting",
  "Provisioning",
  "Preparing",
  "Queued",
  "Running",
  "Finalizing",
  "CancelRequested",
  "Completed",
  "Failed",
  "Canceled",
  "NotResponding",
  "Paused",
  "Unknown",
] as const;

export type AzureMlJobStatus = (typeof AZURE_ML_JOB_STATUSES)[number];

/**
 * Waiting states (nothing is executing yet, or execution is suspended) map to "queued"; states where
 * the job holds compute or is winding down map to "running". CancelRequested is not terminal: the job
 * still runs until Azure ML reports Canceled. NotResponding can return to any earlier state, so it is
 * "running" (not terminal). Unknown is treated like "queued": the status poll will learn more.
 */
const STATE_BY_LOWERCASE_STATUS: ReadonlyMap<string, JobState> = new Map<string, JobState>([
  ["notstarted", "queued"],
  ["starting", "queued"],
  ["provisioning", "queued"],
  ["preparing", "queued"],
  ["queued", "queued"],
  ["paused", "queued"],
  ["unknown", "queued"],
  ["running", "running"],
  ["finalizing", "running"],
  ["cancelrequested", "running"],
  ["notresponding", "running"],
  ["completed", "completed"],
  ["failed", "failed"],
  ["canceled", "canceled"],
  // Event Grid and older run history spell it with two l's.
  ["cancelled", "canceled"],
]);

/** True when `status` (any case) is one of the statuses flo knows. */
export function isKnownAzureMlStatus(status: string): boolean {
  return STATE_BY_LOWERCASE_STATUS.has(status.trim().toLowerCase());
}

/**
 * Maps an Azure ML job status (compared case-insensitively; events spell them in lower case) to flo's
 * JobState. A job that has no status yet was just created: "queued". A status word this table does not
 * know is reported as "running" (not terminal) so a future Azure ML status never ends a round early;
 * the round deadline still bounds the wait.
 */
export function jobStateFromAzureMlStatus(status: string | null | undefined): JobState {
  if (status === undefined || status === null || status.trim() === "") return "queued";
  return STATE_BY_LOWERCASE_STATUS.get(status.trim().toLowerCase()) ?? "running";
}

/** The Azure ML status word a flo JobState corresponds to (used to emit Azure ML-shaped events locally). */
export function azureMlStatusFromJobState(state: JobState): AzureMlJobStatus {
  switch (state) {
    case "queued":
      return "Queued";
    case "running":
      return "Running";
    case "completed":
      return "Completed";
    case "failed":
      return "Failed";
    case "canceled":
      return "Canceled";
  }
}
