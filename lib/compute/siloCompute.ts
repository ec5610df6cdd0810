/**
 * The SiloCompute port and the silo job contract every compute backend follows: how the
 * orchestrator's activities run one silo's job for one round (inputs.global_model, literal inputs,
 * outputs.model_update with model.safetensors + metrics.json), flo's job states, job kinds, tags
 * and names, and the typed output of a completed job. Backends live in sub-folders and are listed
 * in backends.ts.
 */
import { createHash } from "node:crypto";
import type { TokenCredential } from "@azure/core-auth";
import type { z } from "zod";
import type { ByteSource, WrittenObject } from "../models/bytes";
import { METRICS_FILE, MODEL_FILE } from "../models/storeLayout";
import type { UpdateMetrics } from "../aggregation/metrics";
import type { ParsedJobEvent } from "./jobEvents";
import { REVEAL_FILE } from "../secagg/files";

/** flo's job states; every backend maps its own statuses onto these. */
export type JobState = "queued" | "running" | "completed" | "failed" | "canceled";

export const TERMINAL_JOB_STATES: readonly JobState[] = ["completed", "failed", "canceled"];

/** What the job contract says about one kind of silo job, whatever the backend. */
export interface JobKindContract {
  /** Prefix of the completion event the silo's orchestration waits on: `<prefix>:<round>:<silo>`. */
  eventPrefix: string;
  /** The job's one output folder, `${{outputs.<output>}}` in its command. */
  output: string;
  /** Files a completed job's output folder must hold (otherwise the job counts as failed). */
  outputFiles: readonly string[];
}

/**
 * The kinds of silo job flo runs, with what each one's name, tags, completion event and output
 * look like. A new kind is one entry here (plus its variant of `SiloOutput` and its request recipe
 * in lib/federation/jobKinds.ts).
 */
export const JOB_KINDS = {
  /** A training job: produces a model update and its metrics. */
  train: { eventPrefix: "silo-done", output: "model_update", outputFiles: [MODEL_FILE, METRICS_FILE] },
  /** Secure aggregation: a survivor reveals what removes the masks of the round's sum (lib/secagg/siloJob.ts). */
  unmask: { eventPrefix: "unmask-done", output: "reveal", outputFiles: [REVEAL_FILE] },
  /** An evaluation job: scores a given model on the silo's held-out data; writes metrics.json only. */
  evaluate: { eventPrefix: "silo-evaluated", output: "evaluation", outputFiles: [METRICS_FILE] },
} as const satisfies Record<string, JobKindContract>;

export type JobKind = keyof typeof JOB_KINDS;

/** The kind of a job that does not say (names and tags of training jobs carry no kind). */
export const DEFAULT_JOB_KIND: JobKind = "train";

export function isJobKind(value: unknown): value is JobKind {
  return typeof value === "string" && Object.prototype.hasOwnProperty.call(JOB_KINDS, value);
}

/** The contract of a job's kind (`train` when it does not say). */
export function jobKindContract(kind: JobKind | undefined): JobKindContract {
  return JOB_KINDS[kind ?? DEFAULT_JOB_KIND];
}

/** Tag keys flo puts on every job (no dots: Event Grid advanced filters use dots as path separators). */
export const FLO_TAGS = {
  federation: "floFederation",
  round: "floRound",
  silo: "floSilo",
  /** Absent on jobs submitted before kinds existed: those are training jobs. */
  kind: "floKind",
  /** A secure round's re-run session (1, 2, ...), only on re-run jobs: their orchestrations have ids of their own. */
  rerun: "floRerun",
  app: "floApp",
} as const;
/** Value of the `floApp` tag; the Event Grid subscription filters on `data.runTags.floApp`. */
export const FLO_APP_TAG_VALUE = "flo";

/** Which job of which federation, round and silo. */
export interface SiloJobRef {
  federationId: string;
  round: number;
  silo: string;
  /** Default `train`. */
  kind?: JobKind;
  /** A secure round's re-run session; 0 or absent for the round's first session. */
  rerun?: number;
}

/** flo's tags for a silo job, whatever the backend (Event Grid filters Azure ML's on `floApp`). */
export function floJobTags(job: SiloJobRef): Record<string, string> {
  return {
    [FLO_TAGS.federation]: job.federationId,
    [FLO_TAGS.round]: String(job.round),
    [FLO_TAGS.silo]: job.silo,
    [FLO_TAGS.kind]: job.kind ?? DEFAULT_JOB_KIND,
    ...(job.rerun ? { [FLO_TAGS.rerun]: String(job.rerun) } : {}),
    [FLO_TAGS.app]: FLO_APP_TAG_VALUE,
  };
}

/**
 * The external event a silo's orchestration waits on for a job of `kind`: `silo-done:<round>:<silo>`
 * for training. Silo names never contain ":", so the name reads back unambiguously.
 */
export function jobEventName(job: { round: number; silo: string; kind?: JobKind }): string {
  return `${jobKindContract(job.kind).eventPrefix}:${job.round}:${job.silo}`;
}

/** Azure ML's job name rule (also the run id in Event Grid events); every backend accepts it. */
export const JOB_NAME_PATTERN = /^[a-zA-Z0-9][a-zA-Z0-9\-_]{0,254}$/;
const JOB_NAME_MAX = 255;
/**
 * Separates a job's kind from the rest of its name. Federation ids and silo names are
 * `[a-z0-9-]` (lib/spec/schema.ts), so "_" can only be this separator: `flo-f-r5-east-eval` is
 * the training job of silo `east-eval`, never an `eval` job of silo `east`.
 */
const KIND_SEPARATOR = "_";

export interface FloJobNameParts extends SiloJobRef {
  /** Resubmission attempt (`-a2`); 1 (the first submission) has no suffix. */
  attempt?: number;
}

/**
 * The deterministic job name: `flo-<federationId>-r<round>-<silo>`, plus `-a<attempt>` for attempts
 * after the first (Azure ML names are unique per workspace, so a retry needs its own), plus
 * `_<kind>` for kinds other than training (training names predate kinds and do not change).
 * Characters outside [A-Za-z0-9-] become "-". If the result exceeds 255 characters the federation
 * id is shortened and followed by 8 hex of its sha256, so distinct ids stay distinct and the
 * round/silo/attempt/kind suffix is always kept whole.
 */
export function floJobName(parts: FloJobNameParts): string {
  const { federationId, round, silo, attempt = 1, kind = DEFAULT_JOB_KIND } = parts;
  if (!Number.isSafeInteger(round) || round < 1) throw new RangeError(`floJobName: round must be an integer >= 1, got ${round}`);
  if (!Number.isSafeInteger(attempt) || attempt < 1) throw new RangeError(`floJobName: attempt must be an integer >= 1, got ${attempt}`);
  if (!federationId) throw new RangeError("floJobName: federationId must be non-empty");
  if (!silo) throw new RangeError("floJobName: silo must be non-empty");
  if (!isJobKind(kind)) throw new RangeError(`floJobName: kind must be one of ${Object.keys(JOB_KINDS).join(", ")}, got ${JSON.stringify(kind)}`);
  const clean = (s: string) => s.replace(/[^a-zA-Z0-9-]/g, "-");
  const kindSuffix = kind === DEFAULT_JOB_KIND ? "" : `${KIND_SEPARATOR}${String(kind)}`;
  const suffix = `-r${round}-${clean(silo)}${attempt > 1 ? `-a${attempt}` : ""}${kindSuffix}`;
  let id = clean(federationId);
  const room = JOB_NAME_MAX - "flo-".length - suffix.length;
  if (id.length > room) {
    const digest = createHash("sha256").update(federationId).digest("hex").slice(0, 8);
    if (room < digest.length + 2) throw new RangeError(`floJobName: silo name too long to fit a job name, got ${silo.length} characters`);
    id = `${id.slice(0, room - digest.length - 1)}-${digest}`;
  }
  return `flo-${id}${suffix}`;
}

/**
 * Federation ids and silo names may themselves contain dashes, so the split is: the federation id is
 * the longest prefix followed by `-r<digits>-`, the silo is the rest minus an optional `-a<digits>`
 * and an optional `_<kind>`.
 */
const FLO_JOB_NAME = /^flo-([A-Za-z0-9-]+)-r(\d{1,9})-([A-Za-z0-9-]+?)(?:-a(\d{1,4}))?(?:_([a-z]+))?$/;

/**
 * Reads a flo job name back, or returns undefined when the name does not follow flo's pattern or
 * names an unknown kind. Tags are the primary correlation of job events; this is the fallback.
 */
export function parseFloJobName(jobName: string): (FloJobNameParts & { kind: JobKind }) | undefined {
  const match = FLO_JOB_NAME.exec(jobName);
  if (!match) return undefined;
  const [, federationId, round, silo, attempt, kind = DEFAULT_JOB_KIND] = match;
  if (!isJobKind(kind) || (kind === DEFAULT_JOB_KIND && match[5] !== undefined)) return undefined;
  return { federationId, round: Number(round), silo, kind, ...(attempt === undefined ? {} : { attempt: Number(attempt) }) };
}

export type JobInput =
  | { kind: "literal"; value: string }
  /** A folder (model store URI or local path) the job reads, e.g. the round's global model. */
  | { kind: "folder"; uri: string }
  /** A typed data input of the spec (`silos[].inputs.<name>: {type, path, mode}`), mounted or downloaded by the backend. */
  | { kind: "asset"; type: DataInputType; path: string; mode: DataInputMode };

/** Azure ML's asset input types a spec may name (REST `jobInputType`). */
export const DATA_INPUT_TYPES = ["uri_folder", "uri_file", "mltable", "custom_model"] as const;
export type DataInputType = (typeof DATA_INPUT_TYPES)[number];
/** How an asset input reaches the job, in Azure ML YAML's words. */
export const DATA_INPUT_MODES = ["ro_mount", "download", "direct"] as const;
export type DataInputMode = (typeof DATA_INPUT_MODES)[number];

export interface SiloJobRequest {
  federationId: string;
  round: number;
  silo: string;
  /** Default `train`. */
  kind?: JobKind;
  /** A secure round's re-run session (tagged, so the job's events reach the re-run's orchestration). */
  rerun?: number;
  /** Deterministic (`floJobName`), already valid for every backend (`JOB_NAME_PATTERN`). */
  jobName: string;
  /** The kind's command from the spec (training.command for `train`), placeholders not yet substituted (the backend does that, like Azure ML). */
  command: string;
  /** All inputs by name, including `round`, `silo`, `federation_id` and, when present, `global_model`. */
  inputs: Record<string, JobInput>;
  /** Where the kind's output folder (`outputs.model_update` for training) must end up (a model store URI of a folder). */
  outputUri: string;
  /** Where a backend that keeps job logs in the model store puts this job's log (Azure ML keeps its own). */
  logUri?: string;
  /** Optional code folder, working directory of the command. */
  code?: string;
  environment?: string;
  timeoutSeconds: number;
  tags: Record<string, string>;
  /** Files the job's output folder must hold once it completes, when not its kind's (a secure training job's masked output). */
  outputFiles?: readonly string[];
  /**
   * Secure aggregation: the backend masks the trainer's output inside the silo before anything is
   * uploaded (lib/secagg/siloJob.ts), so only the masked update and the encrypted shares leave it.
   */
  secureAggregation?: SecureMasking;
  /**
   * Further read-write output folders by name, as Azure ML datastore URIs (`${{outputs.<name>}}` in
   * the command): the Azure ML unmask job keeps its reveal records in the silo's private datastore.
   * Backends whose jobs keep such files on the silo's own disk ignore them.
   */
  extraOutputs?: Record<string, string>;
}

/** Where a secure training job finds what masking needs, by input name. */
export interface SecureMasking {
  /** The folder input holding the session file. */
  sessionInput: string;
  /** The session file's name inside that folder. */
  sessionFile: string;
  /** The input naming the silo's secret key file. */
  keyInput: string;
  /** Keep the silo's metrics other than counts (the spec opted in). */
  publishMetrics: boolean;
}

export interface SiloJobStatus {
  jobName: string;
  state: JobState;
  /** The backend's own status word, for the manifest and logs. */
  rawStatus: string;
  /** Why it failed, when it did. */
  error?: string;
  /** Where the job's output folder (its kind's `output`) lives once completed. */
  outputUri?: string;
  /** Where the job's log lives, when the backend keeps one. */
  logUri?: string;
}

/** The files of a training job's `model_update` output (the model store lays folders out with the same names). */
export { METRICS_FILE, MODEL_FILE };
/** Largest metrics.json read; anything larger is not a metrics file. */
export const MAX_METRICS_BYTES = 1024 * 1024;

/**
 * A training job's metrics.json, validated: `num_examples` (an integer > 0: an update from no
 * examples carries no weight), `metrics` and `global_metrics` (optional objects of finite numbers).
 */
export interface SiloMetrics extends UpdateMetrics {
  /** The received global model evaluated on the silo's data before local training, when reported. */
  globalMetrics?: Record<string, number>;
}

/** A completed job's output, validated, by job kind. */
export interface TrainingOutput {
  kind: "train";
  /** `model.safetensors`, read by ranges. */
  model: ByteSource;
  metrics: SiloMetrics;
}

/** A completed evaluation job's output: the evaluated model's metrics on the silo's data. */
export interface EvaluationOutput {
  kind: "evaluate";
  metrics: SiloMetrics;
}

export type SiloOutput = TrainingOutput | EvaluationOutput;

/** What a silo wrote breaks the job contract (missing files, invalid metrics.json): exclude that silo's update with this reason. */
export class SiloOutputError extends Error {
  override name = "SiloOutputError";
  constructor(
    /** The file or folder, as a URI or path. */
    readonly location: string,
    /** The field inside it, e.g. `num_examples` or `metrics.loss`, or the file name. */
    readonly field: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`Invalid silo output at ${location}: ${field}: expected ${expected}, got ${got}`);
  }
}

/** Validates metrics.json text; `location` names the file in errors. */
export function parseSiloMetrics(text: string, location: string): SiloMetrics {
  let value: unknown;
  try {
    value = JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (error) {
    throw new SiloOutputError(location, METRICS_FILE, "JSON", `unparseable text (${(error as Error).message})`);
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SiloOutputError(location, METRICS_FILE, 'a JSON object {"num_examples": int > 0, "metrics": {...}}', Array.isArray(value) ? "an array" : String(value));
  }
  const object = value as Record<string, unknown>;
  const numExamples = object.num_examples;
  if (typeof numExamples !== "number" || !Number.isSafeInteger(numExamples) || numExamples <= 0) {
    throw new SiloOutputError(location, "num_examples", "an integer > 0", JSON.stringify(numExamples) ?? "nothing");
  }
  const result: SiloMetrics = { numExamples, metrics: finiteNumberRecord(object.metrics, "metrics", location) ?? {} };
  const globalMetrics = finiteNumberRecord(object.global_metrics, "global_metrics", location);
  if (globalMetrics) result.globalMetrics = globalMetrics;
  return result;
}

function finiteNumberRecord(value: unknown, field: string, location: string): Record<string, number> | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new SiloOutputError(location, field, "an object of metric name -> number", JSON.stringify(value) ?? "nothing");
  }
  const record: Record<string, number> = {};
  for (const [name, metric] of Object.entries(value as Record<string, unknown>)) {
    if (typeof metric !== "number" || !Number.isFinite(metric)) {
      throw new SiloOutputError(location, `${field}.${name}`, "a finite number", JSON.stringify(metric) ?? "nothing");
    }
    record[name] = metric;
  }
  return record;
}

/** Reads and validates a metrics.json (at most MAX_METRICS_BYTES) from a ByteSource. */
export async function readSiloMetrics(source: ByteSource, options: { signal?: AbortSignal } = {}): Promise<SiloMetrics> {
  const size = await source.size(options);
  if (size > MAX_METRICS_BYTES) throw new SiloOutputError(source.name, METRICS_FILE, `at most ${MAX_METRICS_BYTES} bytes`, `${size} bytes`);
  const bytes = await source.read(0, size, options);
  return parseSiloMetrics(bytes.toString("utf8"), source.name);
}

export interface CallOptions {
  signal?: AbortSignal;
}

export interface OpenOutputOptions extends CallOptions {
  /** The kind of the job that wrote the folder (default `train`): it says which files to expect. */
  kind?: JobKind;
}

export interface SiloCompute {
  /** Submits the job; resubmitting an existing job name returns that job's status (idempotent). */
  submit(request: SiloJobRequest, options?: CallOptions): Promise<SiloJobStatus>;
  status(jobName: string, options?: CallOptions): Promise<SiloJobStatus>;
  cancel(jobName: string, options?: CallOptions): Promise<void>;
  /**
   * Opens a completed job's output folder (`SiloJobStatus.outputUri`) with the orchestrator's read
   * access, validating metrics.json; throws SiloOutputError when the silo broke the job contract.
   */
  openOutput(outputUri: string, options?: OpenOutputOptions): Promise<SiloOutput>;
  /**
   * One file of a completed job's output folder, read with the orchestrator's access (secure jobs'
   * masked outputs and reveals). Backends without it write their outputs to the model store, at the
   * request's `outputUri`.
   */
  openOutputFile?(outputUri: string, file: string, options?: CallOptions): Promise<ByteSource>;
}

/** Moves job folders between the model store and a job's local folder. */
export interface JobFolderTransfer {
  source(uri: string): ByteSource;
  downloadFolder(uri: string, localDir: string, options?: CallOptions): Promise<void>;
  uploadFolder(localDir: string, uri: string, options?: CallOptions): Promise<WrittenObject[]>;
  uploadFile(localPath: string, uri: string, options?: CallOptions): Promise<WrittenObject>;
}

/** What the federation's services give a backend to build its SiloCompute. */
export interface ComputeContext {
  /** App settings (never read from process.env by a backend). */
  env: Record<string, string | undefined>;
  /** The orchestrator's Azure identity, created on first use. */
  credential(): TokenCredential;
  /** The model store, for backends that move job folders themselves. */
  transfer: JobFolderTransfer;
  /** Sends a job event to the job-events queue (for backends that raise their own events). */
  publishJobEvent(event: { id: string }, options?: CallOptions): Promise<void>;
}

/** A SiloCompute the services may have to release (timers, connections); running jobs go on. */
export type ClosableSiloCompute = SiloCompute & { close?(): void };

/**
 * A compute backend: the spec's `compute` block for it (a strict object with a literal `type`), how
 * to build its SiloCompute, and the parser of its job completion events. Listed in backends.ts.
 */
export interface ComputeBackend<Schema extends z.ZodObject = z.ZodObject> {
  specSchema: Schema;
  /** Silos whose compute blocks have the same key share one SiloCompute. */
  instanceKey(config: z.output<Schema>): string;
  create(config: z.output<Schema>, context: ComputeContext): ClosableSiloCompute;
  /**
   * Reads a job-events message body (object, JSON text or bytes) as this backend's event: undefined
   * when it is not this backend's event shape; throws EventParseError when it is, malformed.
   */
  parseEvent?(body: unknown): ParsedJobEvent | undefined;
}
