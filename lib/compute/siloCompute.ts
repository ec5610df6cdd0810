/**
 * The SiloCompute port: how the orchestrator's activities run one silo's training job for one round.
 * Implementations: `local` (child process on this machine) and `azureml` (an Azure ML command job in
 * the silo's workspace). Both follow the silo job contract in docs/ARCHITECTURE (inputs.global_model,
 * literal inputs, outputs.model_update with model.safetensors + metrics.json).
 */
import type { ByteSource } from "../models/bytes";

/** flo's job states; every backend maps its own statuses onto these. */
export type JobState = "queued" | "running" | "completed" | "failed" | "canceled";

export const TERMINAL_JOB_STATES: readonly JobState[] = ["completed", "failed", "canceled"];

export type JobInput =
  | { kind: "literal"; value: string }
  /** A folder (model store URI or local path) the job reads, e.g. the round's global model. */
  | { kind: "folder"; uri: string };

export interface SiloJobRequest {
  federationId: string;
  round: number;
  silo: string;
  /** Deterministic, already validated against the backend's naming rules. */
  jobName: string;
  /** The spec's training.command, placeholders not yet substituted (the backend does that, like Azure ML). */
  command: string;
  /** All inputs by name, including `round`, `silo`, `federation_id` and, when present, `global_model`. */
  inputs: Record<string, JobInput>;
  /** Where `outputs.model_update` must end up (a model store URI of a folder). */
  outputUri: string;
  /** Where a backend that keeps job logs in the model store puts this job's log (Azure ML keeps its own). */
  logUri?: string;
  /** Optional code folder, working directory of the command. */
  code?: string;
  environment?: string;
  timeoutSeconds: number;
  tags: Record<string, string>;
}

export interface SiloJobStatus {
  jobName: string;
  state: JobState;
  /** The backend's own status word, for the manifest and logs. */
  rawStatus: string;
  /** Why it failed, when it did. */
  error?: string;
  /** Where the job's model_update output lives once completed. */
  outputUri?: string;
  /** Where the job's log lives, when the backend keeps one. */
  logUri?: string;
}

/** A completed job's `model_update` output, ready for aggregation. */
export interface SiloOutput {
  /** `model.safetensors`, read by ranges. */
  model: ByteSource;
  /** `metrics.json`: its bytes, or the parsed object. */
  metrics: unknown;
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface SiloCompute {
  /** Submits the job; resubmitting an existing job name returns that job's status (idempotent). */
  submit(request: SiloJobRequest, options?: CallOptions): Promise<SiloJobStatus>;
  status(jobName: string, options?: CallOptions): Promise<SiloJobStatus>;
  cancel(jobName: string, options?: CallOptions): Promise<void>;
  /** Opens a completed job's output folder (`SiloJobStatus.outputUri`) with the orchestrator's read access. */
  openOutput(outputUri: string, options?: CallOptions): Promise<SiloOutput>;
}
