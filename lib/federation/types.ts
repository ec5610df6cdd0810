/**
 * What the federation's orchestrations, activities and HTTP API exchange. Everything here is small
 * JSON: ids, URIs, digests, counts and metric means; never tensors (Durable history payloads above
 * 64 KB spill to blob and slow every replay).
 */
import type { JobKind, JobState } from "../compute/siloCompute";
import type { SiloOutcomeKind } from "./decisions";

/** A model stored in the model store, pinned by its digest. */
export interface ModelRef {
  uri: string;
  sha256: string;
  size?: number;
}

/** The federation policy as the orchestrator needs it (durations in seconds). */
export interface RunPolicy {
  minSilos: number;
  sampleFraction: number;
  roundTimeoutSeconds: number;
  jobRetries: number;
  /** How often a silo waiting for its job's completion event polls the job instead. */
  statusPollSeconds: number;
}

/** Input of each execution of the `federation` orchestration (one execution per round). */
export interface FederationRunInput {
  federationId: string;
  /** The validated spec, stored once at start; activities read it from here. */
  spec: ModelRef;
  rounds: number;
  /** The round this execution runs, 1-based. */
  round: number;
  silos: string[];
  policy: RunPolicy;
  /** The global model this round starts from; absent in round 1 without an initial model. */
  global?: ModelRef;
  /** The strategy state checkpointed by the previous round, absent before the first aggregation. */
  strategyState?: ModelRef;
  /**
   * The latest completed rounds (at most `RECENT_ROUNDS`), for the custom status. The whole history
   * is in the checkpoint blob: carrying it here would grow every execution's input with the rounds.
   */
  recent: RoundDigest[];
  /** The checkpoint blob (model, strategy state, every completed round's summary), once a round completed. */
  checkpointUri?: string;
  /** When round 1 started (or the resume), for the summary. */
  startedAt: string;
  /** Set when this run resumed from a checkpoint. */
  resumedFromRound?: number;
  /** How many times the federation was resumed; resumed rounds number their job attempts after the earlier runs'. */
  generation?: number;
  /** The spec asks for secure aggregation (the round masks, fixes survivors, unmasks). */
  secure?: boolean;
  /** When the spec has an evaluation section: which round outputs are evaluated and the quorum. */
  evaluation?: EvaluationPlan;
  /** When the spec has a registration section: the delivered model is registered in Azure ML. */
  registers?: boolean;
}

/** The evaluation section as the orchestrator needs it. */
export interface EvaluationPlan {
  /** Also evaluate the outputs of rounds every, 2 x every, ... (0: only the final model). */
  every: number;
  minSilos: number;
}

/** Input of the `recordEvaluation` activity: one evaluation of one model on every silo. */
export interface RecordEvaluationInput {
  federationId: string;
  spec: ModelRef;
  /** The round whose output is evaluated. */
  round: number;
  /** Whether it is the model of the last round (its evaluation must reach the quorum). */
  final: boolean;
  model: ModelRef;
  results: SiloRoundResult[];
  minSilos: number;
  startedAt: string;
}

/** An evaluation in a few hundred bytes, for the orchestration (the manifest has the detail). */
export interface EvaluationDigest {
  round: number;
  final: boolean;
  /** Whether enough silos' evaluations were valid (evaluation.minSilos). */
  ok: boolean;
  reason?: string;
  modelSha256: string;
  manifestUri: string;
  /** Silos whose evaluation was valid, and silos without one. */
  evaluated: number;
  failed: number;
  /** A few of the num_examples-weighted means. */
  metrics: Record<string, number>;
}

/** Input of the `finalizeFederation` activity. */
export interface FinalizeInput {
  federationId: string;
  spec: ModelRef;
  /** The model the last round produced. */
  lastModel: ModelRef;
  lastRound: number;
}

/** Which model the federation delivers, and why. */
export interface ModelSelection {
  /** The round whose output is delivered. */
  round: number;
  /** Whether it is the last round's model. */
  last: boolean;
  /** With evaluation.select: the metric, its mode and the delivered model's weighted mean. */
  metric?: string;
  mode?: "max" | "min";
  value?: number;
  /** A sentence for humans: what was compared and what won. */
  reason: string;
}

/** What `finalizeFederation` returns: the delivered model (a copy in the final folder), the last one, the card. */
export interface FinalizeOutput {
  finalModel: ModelRef;
  lastModel: ModelRef;
  selection: ModelSelection;
  modelCardUri: string;
  /** The final evaluation, when the spec has one. */
  finalEvaluation?: EvaluationDigest;
}

/** Input of the `registerModel` activity: the delivered model and what its version records. */
export interface RegisterModelInput {
  federationId: string;
  spec: ModelRef;
  /** The delivered model (in the federation's final folder). */
  model: ModelRef;
  selection: ModelSelection;
  finalEvaluation?: EvaluationDigest;
}

/** What `registerModel` returns: the model version in the owner's workspace. */
export interface ModelRegistration {
  /** ARM id of the model version. */
  id: string;
  name: string;
  version: string;
  /** Whether this call created it (false: an earlier attempt or run of this federation had). */
  created: boolean;
}

/** Literal inputs a job gets besides its spec section's parameters (passed to the job as text). */
export type JobParameters = Record<string, string | number | boolean>;

export interface SiloRoundInput {
  federationId: string;
  spec: ModelRef;
  round: number;
  silo: string;
  /** The kind of job the silo runs; default `train`. */
  kind?: JobKind;
  /** This silo's extra literal inputs for the job, when its kind takes some. */
  parameters?: JobParameters;
  /** ISO time the round (or the kind's phase) closes. */
  deadline: string;
  /** The model the job reads as `inputs.global_model` (the round's global model for training). */
  global?: ModelRef;
  jobRetries: number;
  statusPollSeconds: number;
  /** Attempts of this run are numbered after this many earlier attempts (resumed federations). */
  attemptBase: number;
  /** Secure aggregation: the session attempt the job belongs to, and the re-run of the round (0 first). */
  secure?: SecureJobRef;
}

/** Which session of a secure round a job serves. */
export interface SecureJobRef {
  /** The session's attempt number (unique per round across re-runs and resumes). */
  attempt: number;
  /** Re-runs of the round under a new session in this execution, 0 for the first. */
  rerun: number;
}

/** Input of a `siloGroup` sub-orchestration: the silos it runs and what each silo's `siloRound` gets. */
export interface SiloGroupInput extends Omit<SiloRoundInput, "silo" | "parameters"> {
  silos: string[];
  /** Extra literal inputs by silo (only this group's silos: the input stays about sqrt(K) silos long). */
  siloParameters?: Record<string, JobParameters>;
}

/** One attempt at running a silo's job in a round. */
export interface JobAttempt {
  attempt: number;
  jobName: string;
  state: JobState | "late";
  rawStatus?: string;
  error?: string;
  submittedAt: string;
  finishedAt?: string;
  logUri?: string;
}

/** What a silo's sub-orchestration reports back to the round. */
export interface SiloRoundResult {
  silo: string;
  outcome: SiloOutcomeKind;
  attempts: JobAttempt[];
  /** The update folder (model.safetensors + metrics.json) of the successful attempt. */
  outputUri?: string;
  reason?: string;
}

export interface SubmitJobInput {
  federationId: string;
  spec: ModelRef;
  round: number;
  silo: string;
  /** Default `train`. */
  kind?: JobKind;
  attempt: number;
  global?: ModelRef;
  parameters?: JobParameters;
  secure?: SecureJobRef;
}

export interface JobRefInput {
  federationId: string;
  spec: ModelRef;
  round: number;
  silo: string;
  /** Default `train`. */
  kind?: JobKind;
  jobName: string;
}

export interface AggregateRoundInput {
  federationId: string;
  spec: ModelRef;
  round: number;
  sampled: string[];
  results: SiloRoundResult[];
  global?: ModelRef;
  strategyState?: ModelRef;
  roundStartedAt: string;
  minSilos: number;
}

/** Input of `aggregateSecureRound`: the round, the session whose masked sum to unmask, its split and the unmask jobs' results. */
export interface AggregateSecureRoundInput extends AggregateRoundInput {
  secure: SecureAggregateInput;
}

/** The survivors S and dropped D of a session, fixed once (lib/federation/secure.ts). */
export interface SecureSplitOutput {
  ok: boolean;
  /** Silo names; S and D partition the round's roster. */
  survivors: string[];
  dropped: string[];
  /** Why each dropped silo was dropped. */
  droppedReasons: { silo: string; reason: string }[];
  /** When not ok: why nothing may be unmasked under this session. */
  reason?: string;
  session: string;
}

export interface SecureSplitInput {
  federationId: string;
  spec: ModelRef;
  round: number;
  secure: SecureJobRef;
  results: SiloRoundResult[];
  global?: ModelRef;
  minSilos: number;
}

export interface SecureAggregateInput {
  secure: SecureJobRef;
  split: SecureSplitOutput;
  /** The unmask jobs of the survivors, in the survivors' order. */
  unmask: SiloRoundResult[];
  /** Earlier sessions of this round that could not be unmasked, and why. */
  failedSessions: { attempt: number; session: string; reason: string }[];
}

export interface RoundSummary {
  round: number;
  /** The global model this round produced. */
  model: ModelRef;
  manifestUri: string;
  included: string[];
  excluded: { silo: string; reason: string }[];
  /** num_examples-weighted means of the silos' post-training metrics. */
  metrics: Record<string, number>;
  /** num_examples-weighted means of the silos' evaluation of the received global model. */
  globalMetrics: Record<string, number>;
  startedAt: string;
  aggregatedAt: string;
}

/** A completed round as the custom status and the orchestration input carry it (see payloads.ts). */
export interface RoundDigest {
  round: number;
  modelSha256: string;
  manifestUri: string;
  /** How many silos' updates were aggregated, and how many sampled silos were not. */
  included: number;
  excluded: number;
  /** A few of the round's metric means (the manifest has them all). */
  metrics: Record<string, number>;
  globalMetrics: Record<string, number>;
}

export type AggregateRoundOutput = { ok: true; summary: RoundSummary; strategyState?: ModelRef; checkpointUri: string } | { ok: false; reason: string; manifestUri: string };

/** `aggregateSecureRound`: aggregated, or this session cannot be unmasked (nothing was): re-run the round under a new one. */
export type SecureAggregateRoundOutput = Extract<AggregateRoundOutput, { ok: true }> | { ok: false; rerun: true; reason: string; session: string };

export interface RecordRoundFailureInput {
  federationId: string;
  spec: ModelRef;
  round: number;
  sampled: string[];
  results: SiloRoundResult[];
  global?: ModelRef;
  reason: string;
  roundStartedAt: string;
}

export interface FederationSummary {
  federationId: string;
  status: "completed";
  rounds: number;
  /** The delivered model: the last round's, or the best evaluated one with evaluation.select. */
  finalModel: ModelRef;
  /** The last round's model, when it is not the delivered one's blob. */
  lastModel?: ModelRef;
  /** Which model was delivered and why (absent in runs without finalization records). */
  selection?: ModelSelection;
  /** The delivered model's evaluation on every silo, when the spec has an evaluation section. */
  finalEvaluation?: EvaluationDigest;
  modelCardUri?: string;
  registration?: ModelRegistration;
  /** The checkpoint blob: its `history` has every round's summary (GET /api/federations/{id} shows it). */
  historyUri: string;
  /** The last round, compact. */
  lastRound: RoundDigest;
  startedAt: string;
  finishedAt: string;
}

/**
 * Custom status of the federation orchestration, shown by GET /federations/{id}. Its size is bounded
 * whatever the rounds and silos (payloads.ts): counts instead of silo lists, a short tail of rounds.
 */
export interface FederationStatus {
  round: number;
  rounds: number;
  phase: "training" | "unmasking" | "aggregating" | "evaluating" | "finalizing" | "completed" | "failed";
  roundStartedAt: string;
  deadline?: string;
  /** How many silos the round sampled and, once their jobs ended, how many succeeded, failed or were late. */
  counts: { sampled: number; succeeded?: number; failed?: number; late?: number };
  /** The latest completed rounds, oldest first. */
  recent: RoundDigest[];
  /** The checkpoint blob and the latest round manifest, when they exist. */
  links: { checkpoint?: string; manifest?: string; evaluation?: string };
  /** The latest evaluation, compact (its manifest has every silo). */
  evaluation?: EvaluationDigest;
}

/** Custom status of a silo's sub-orchestration. */
export interface SiloStatus {
  silo: string;
  round: number;
  state: JobState | "submitting" | "late";
  attempt: number;
  jobName?: string;
  since: string;
}

/** The payload raised on a silo's sub-orchestration when its job reports a status. */
export interface SiloJobEvent {
  jobName: string;
  state?: JobState;
  rawStatus?: string;
  eventId?: string;
}

/** Names of the activities, shared by orchestrations and their registrations. */
export const Activities = {
  submitSiloJob: "submitSiloJob",
  getSiloJobStatus: "getSiloJobStatus",
  cancelSiloJob: "cancelSiloJob",
  aggregateRound: "aggregateRound",
  aggregateSecureRound: "aggregateSecureRound",
  fixSecureSplit: "fixSecureSplit",
  recordRoundFailure: "recordRoundFailure",
  recordEvaluation: "recordEvaluation",
  finalizeFederation: "finalizeFederation",
  registerModel: "registerModel",
  notifyPartners: "notifyPartners",
} as const;

export const Orchestrations = {
  federation: "federation",
  siloGroup: "siloGroup",
  siloRound: "siloRound",
} as const;
