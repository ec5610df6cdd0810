/** Files a local silo job keeps in its folder, shared by the runner process and LocalSiloCompute. */
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { JobState, SiloJobRequest } from "../siloCompute";

/** job.json: everything the runner needs, written before it starts. */
export interface LocalJobFile {
  request: SiloJobRequest;
  argv: string[];
  cwd: string;
  env: Record<string, string>;
  /** Proves this host created the folder for this job (see jobBinding.ts); a folder without it is never trusted. */
  binding: string;
  timeoutSeconds: number;
  outputDir: string;
  createdAt: string;
  /** Secure aggregation: the runner masks the trainer's output in place before the host uploads it. */
  mask?: { sessionFile: string; keyFile: string; globalModelFile: string; publishMetrics: boolean };
}

/** status.json: the runner's view of the job, replaced atomically on every change. */
export interface LocalJobStatusFile {
  state: JobState;
  runnerPid?: number;
  childPid?: number;
  startedAt?: string;
  finishedAt?: string;
  exitCode?: number | null;
  error?: string;
}

/** reported.json: written by the host once the outputs are uploaded and the event is sent. */
export interface LocalJobReportFile {
  state: JobState;
  rawStatus: string;
  error?: string;
  outputUri?: string;
  logUri?: string;
  reportedAt: string;
}

export function writeJsonAtomic(path: string, value: unknown): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value, null, 2));
  renameSync(tmp, path);
}

export function writeJobStatus(jobDir: string, status: LocalJobStatusFile): void {
  writeJsonAtomic(join(jobDir, "status.json"), status);
}

/**
 * Folder (in the jobs root) where a runner leaves an empty `<jobName>` file once the job's final
 * state is written, so the host's monitor lists one folder per tick instead of reading every
 * pending job's status.json.
 */
export const FINISHED_MARKERS_DIR = ".finished";

export function finishedMarkerPath(jobDir: string): string {
  return join(dirname(jobDir), FINISHED_MARKERS_DIR, basename(jobDir));
}

/** Best effort: without the marker the monitor's periodic full check still finds the job. */
export function markJobFinished(jobDir: string): void {
  try {
    mkdirSync(join(dirname(jobDir), FINISHED_MARKERS_DIR), { recursive: true });
    writeFileSync(finishedMarkerPath(jobDir), "");
  } catch {
    // the slower full check covers it
  }
}
