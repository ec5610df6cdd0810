/**
 * The federation: one execution per round. Samples the round's silos, runs one `siloRound`
 * sub-orchestration per silo (each closes at the round deadline) through `siloGroup`
 * sub-orchestrations of about sqrt(K) silos each, aggregates when the quorum holds,
 * then continues as new with the next round's small state. After the last round it returns the
 * summary; a round without quorum fails the federation with the reason (resumable from the last
 * completed round's checkpoint). With an evaluation section, the outputs of every `every`-th round
 * and of the last round are evaluated on every silo (the same sub-orchestrations, kind `evaluate`);
 * a final evaluation without its quorum fails the federation (resumable: resume re-runs it). Then
 * the delivered model is chosen, copied to the final folder with its model card, and registered.
 *
 * Deterministic control flow only: decisions are pure functions from lib/federation/decisions.ts,
 * time is `currentUtcDateTime`, every I/O is an activity.
 */
import * as df from "durable-functions";
import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import { evaluationDue, roundDeadline, roundQuorum, sampleSilos, siloGroupInstanceId, siloGroups } from "../lib/federation/decisions";
import { Activities, Orchestrations } from "../lib/federation/types";
import type {
  AggregateRoundInput,
  AggregateSecureRoundInput,
  SecureAggregateRoundOutput,
  AggregateRoundOutput,
  EvaluationDigest,
  FederationRunInput,
  FederationStatus,
  FederationSummary,
  FinalizeInput,
  FinalizeOutput,
  ModelRef,
  ModelRegistration,
  RecordEvaluationInput,
  RecordRoundFailureInput,
  SecureAggregateInput,
  SecureJobRef,
  SecureSplitInput,
  SecureSplitOutput,
  RegisterModelInput,
  RoundDigest,
  RoundSummary,
  SiloGroupInput,
  SiloRoundResult,
} from "../lib/federation/types";
import { fitCustomStatus, recentRounds, roundDigest } from "../lib/federation/payloads";
import { errorMessage, ioRetry } from "./siloRound";
import type { PartnerNotice } from "../lib/federation/notify";
import type { JobKind } from "../lib/compute/siloCompute";

/**
 * Tells partners about progress. Notifications are best effort: a topic that stays unreachable
 * through the retries must not fail a federation whose rounds succeeded.
 */
function* notify(context: OrchestrationContext, notice: PartnerNotice): Generator<Task, void, unknown> {
  try {
    yield context.df.callActivityWithRetry(Activities.notifyPartners, ioRetry, notice);
  } catch {
    // the activity's failure is in the history; the federation goes on
  }
}

/** How the round's silos fared, as counts (lists of silos would grow the status with K). */
function outcomeCounts(sampled: number, results: readonly SiloRoundResult[]): FederationStatus["counts"] {
  const count = (outcome: SiloRoundResult["outcome"]) => results.filter((r) => r.outcome === outcome).length;
  return { sampled, succeeded: count("succeeded"), failed: count("failed"), late: count("late") };
}

/** Runs one job of `kind` per silo through `siloGroup` sub-orchestrations; results in the silos' order. */
function* runSiloJobs(
  context: OrchestrationContext,
  shared: Omit<SiloGroupInput, "silos">,
  silos: readonly string[],
  ids: { kind?: JobKind; rerun?: number },
): Generator<Task, SiloRoundResult[], unknown> {
  const groupTasks = siloGroups(silos).map((group, index) =>
    context.df.callSubOrchestrator(Orchestrations.siloGroup, { ...shared, silos: group } satisfies SiloGroupInput, siloGroupInstanceId(shared.federationId, shared.round, index, ids.kind, ids.rerun)),
  );
  // Groups are consecutive runs of `silos`: their results, concatenated, are in the silos' order.
  const groupResults = (yield context.df.Task.all(groupTasks)) as SiloRoundResult[][];
  return groupResults.flat();
}

type StatusUpdate = Pick<FederationStatus, "phase"> & Partial<FederationStatus>;

/** Runs one evaluation job on every silo (all silos, not a round's sample) for `model`, and records the evaluation. */
function* evaluateModel(context: OrchestrationContext, args: { run: FederationRunInput; round: number; model: ModelRef }): Generator<Task, EvaluationDigest, unknown> {
  const { run, round, model } = args;
  const plan = run.evaluation!;
  const startedAt = context.df.currentUtcDateTime;
  const shared: Omit<SiloGroupInput, "silos"> = {
    federationId: run.federationId,
    spec: run.spec,
    round,
    kind: "evaluate",
    deadline: roundDeadline(startedAt, run.policy.roundTimeoutSeconds).toISOString(),
    global: model,
    jobRetries: run.policy.jobRetries,
    statusPollSeconds: run.policy.statusPollSeconds,
    attemptBase: (run.generation ?? 0) * (run.policy.jobRetries + 1),
  };
  const results = yield* runSiloJobs(context, shared, run.silos, { kind: "evaluate" });
  const record: RecordEvaluationInput = {
    federationId: run.federationId,
    spec: run.spec,
    round,
    final: round >= run.rounds,
    model,
    results,
    minSilos: plan.minSilos,
    startedAt: startedAt.toISOString(),
  };
  return (yield context.df.callActivityWithRetry(Activities.recordEvaluation, ioRetry, record)) as EvaluationDigest;
}

/**
 * After the last round: evaluates the last model when the spec asks (a final evaluation without its
 * quorum fails the federation), delivers the chosen model with its card, registers it, and returns
 * the summary.
 */
function* finishFederation(
  context: OrchestrationContext,
  args: { run: FederationRunInput; lastModel: ModelRef; lastRound: RoundDigest; lastSummary?: RoundSummary; checkpointUri: string; status: (update: StatusUpdate) => void },
): Generator<Task, FederationSummary, unknown> {
  const { run, lastModel, lastRound, status } = args;
  const { federationId } = run;
  let evaluation: EvaluationDigest | undefined;
  const fail = function* (reason: string): Generator<Task, never, unknown> {
    status({ phase: "failed", deadline: undefined, ...(evaluation ? { evaluation } : {}) });
    yield* notify(context, { type: "federation-failed", federationId, round: run.rounds, reason });
    throw new Error(reason);
  };
  if (run.evaluation) {
    status({ phase: "evaluating" });
    evaluation = yield* evaluateModel(context, { run, round: run.rounds, model: lastModel });
    status({ phase: "evaluating", evaluation, links: { checkpoint: args.checkpointUri, manifest: lastRound.manifestUri, evaluation: evaluation.manifestUri } });
    if (!evaluation.ok) yield* fail(`final evaluation: ${evaluation.reason ?? "quorum not reached"}`);
  }
  status({ phase: "finalizing", deadline: undefined });
  const finalize: FinalizeInput = { federationId, spec: run.spec, lastModel, lastRound: run.rounds };
  const finalized = (yield context.df.callActivityWithRetry(Activities.finalizeFederation, ioRetry, finalize)) as FinalizeOutput;
  let registration: ModelRegistration | undefined;
  if (run.registers) {
    const register: RegisterModelInput = { federationId, spec: run.spec, model: finalized.finalModel, selection: finalized.selection, finalEvaluation: finalized.finalEvaluation };
    try {
      registration = (yield context.df.callActivityWithRetry(Activities.registerModel, ioRetry, register)) as ModelRegistration;
    } catch (err) {
      yield* fail(`model registration: ${errorMessage(err)}`);
    }
  }
  const summary: FederationSummary = {
    federationId,
    status: "completed",
    rounds: run.rounds,
    finalModel: finalized.finalModel,
    lastModel: finalized.lastModel,
    selection: finalized.selection,
    ...(finalized.finalEvaluation ? { finalEvaluation: finalized.finalEvaluation } : {}),
    modelCardUri: finalized.modelCardUri,
    ...(registration ? { registration } : {}),
    historyUri: args.checkpointUri,
    lastRound,
    startedAt: run.startedAt,
    finishedAt: context.df.currentUtcDateTime.toISOString(),
  };
  status({ phase: "completed", deadline: undefined, ...(finalized.finalEvaluation ? { evaluation: finalized.finalEvaluation } : {}) });
  yield* notify(context, { type: "federation-completed", federationId, round: run.rounds, summary: args.lastSummary, finalModel: finalized.finalModel, selectedRound: finalized.selection.round });
  return summary;
}

export const federationOrchestrator: OrchestrationHandler = function* (context: OrchestrationContext): Generator<Task, FederationSummary | undefined, unknown> {
  const run = context.df.getInput<FederationRunInput>();
  const { federationId, round } = run;
  const roundStartedAt = context.df.currentUtcDateTime.toISOString();
  const sampled = sampleSilos(federationId, round, run.silos, run.policy);
  const deadline = roundDeadline(context.df.currentUtcDateTime, run.policy.roundTimeoutSeconds).toISOString();
  const latestManifest = run.recent.at(-1)?.manifestUri;
  const status = (update: StatusUpdate) =>
    context.df.setCustomStatus(
      fitCustomStatus({
        round,
        rounds: run.rounds,
        roundStartedAt,
        deadline,
        counts: { sampled: sampled.length },
        recent: run.recent,
        links: { checkpoint: run.checkpointUri, manifest: latestManifest },
        ...update,
      }),
    );

  if (round > run.rounds) {
    // A resumed federation whose rounds are all checkpointed: what is left is the final evaluation,
    // the delivered model and its registration.
    const lastRound = run.recent.at(-1);
    if (!run.global || !lastRound || !run.checkpointUri) throw new Error(`federation ${federationId}: resumed after round ${run.rounds} without its checkpoint`);
    return yield* finishFederation(context, {
      run: { ...run, round: run.rounds },
      lastModel: run.global,
      lastRound,
      checkpointUri: run.checkpointUri,
      status: (update) => status({ round: run.rounds, ...update }),
    });
  }

  status({ phase: "training" });
  const shared: Omit<SiloGroupInput, "silos"> = {
    federationId,
    spec: run.spec,
    round,
    kind: "train",
    deadline,
    global: run.global,
    jobRetries: run.policy.jobRetries,
    statusPollSeconds: run.policy.statusPollSeconds,
    attemptBase: (run.generation ?? 0) * (run.policy.jobRetries + 1),
  };
  const failRound = function* (reason: string, results: SiloRoundResult[], counts: FederationStatus["counts"]): Generator<Task, never, unknown> {
    status({ phase: "failed", counts });
    const failure: RecordRoundFailureInput = { federationId, spec: run.spec, round, sampled, results, global: run.global, reason, roundStartedAt };
    const recorded = (yield context.df.callActivityWithRetry(Activities.recordRoundFailure, ioRetry, failure)) as { manifestUri: string };
    status({ phase: "failed", counts, links: { checkpoint: run.checkpointUri, manifest: recorded.manifestUri } });
    yield* notify(context, { type: "federation-failed", federationId, round, reason });
    throw new Error(`round ${round}: ${reason}`);
  };
  const aggregateInput = (results: SiloRoundResult[]): AggregateRoundInput => ({
    federationId,
    spec: run.spec,
    round,
    sampled,
    results,
    global: run.global,
    strategyState: run.strategyState,
    roundStartedAt,
    minSilos: run.policy.minSilos,
  });

  let aggregated: AggregateRoundOutput;
  let counts: FederationStatus["counts"];
  if (!run.secure) {
    const results = yield* runSiloJobs(context, shared, sampled, {});
    counts = outcomeCounts(sampled.length, results);
    const quorum = roundQuorum(results, run.policy.minSilos);
    if (!quorum.ok) return yield* failRound(quorum.reason!, results, counts);
    status({ phase: "aggregating", counts });
    aggregated = (yield context.df.callActivityWithRetry(Activities.aggregateRound, ioRetry, aggregateInput(results))) as AggregateRoundOutput;
  } else {
    // Secure aggregation: train and mask under a session, fix survivors and dropped once, unmask;
    // a session that cannot be unmasked is abandoned (nothing unmasked) and the round re-run under a new one.
    const failedSessions: SecureAggregateInput["failedSessions"] = [];
    for (let rerun = 0; ; rerun++) {
      const secure: SecureJobRef = { attempt: (run.generation ?? 0) * (run.policy.jobRetries + 1) + rerun, rerun };
      // A re-run gets the round's full time again, as the unmask jobs do after training.
      const freshDeadline = () => roundDeadline(context.df.currentUtcDateTime, run.policy.roundTimeoutSeconds).toISOString();
      const sessionShared = { ...shared, deadline: rerun === 0 ? deadline : freshDeadline(), attemptBase: secure.attempt * (run.policy.jobRetries + 1), secure };
      status({ phase: "training" });
      const results = yield* runSiloJobs(context, sessionShared, sampled, { rerun });
      counts = outcomeCounts(sampled.length, results);
      const quorum = roundQuorum(results, run.policy.minSilos);
      if (!quorum.ok) return yield* failRound(quorum.reason!, results, counts);
      const splitInput: SecureSplitInput = { federationId, spec: run.spec, round, secure, results, global: run.global, minSilos: run.policy.minSilos };
      const split = (yield context.df.callActivityWithRetry(Activities.fixSecureSplit, ioRetry, splitInput)) as SecureSplitOutput;
      let reason = split.reason;
      if (split.ok) {
        status({ phase: "unmasking", counts });
        const unmask = yield* runSiloJobs(context, { ...sessionShared, deadline: freshDeadline(), kind: "unmask" }, split.survivors, { kind: "unmask", rerun });
        status({ phase: "aggregating", counts });
        const input: AggregateSecureRoundInput = { ...aggregateInput(results), secure: { secure, split, unmask, failedSessions } };
        const outcome = (yield context.df.callActivityWithRetry(Activities.aggregateSecureRound, ioRetry, input)) as SecureAggregateRoundOutput;
        if (outcome.ok) {
          aggregated = outcome;
          break;
        }
        reason = outcome.reason;
      }
      failedSessions.push({ attempt: secure.attempt, session: split.session, reason: reason ?? "unknown" });
      if (rerun >= run.policy.jobRetries) {
        // The manifest says why each silo was dropped from the last session (e.g. a bad upload).
        const droppedReason = new Map(split.droppedReasons.map((d) => [d.silo, d.reason]));
        const recorded = results.map((r) => ({ ...r, reason: droppedReason.get(r.silo) ?? r.reason }));
        return yield* failRound(
          `secure aggregation: no session of the round could be unmasked (${failedSessions.length} tried, policy.jobRetries is ${run.policy.jobRetries}); last: ${reason}`,
          recorded,
          counts,
        );
      }
    }
  }
  if (!aggregated.ok) {
    status({ phase: "failed", counts, links: { checkpoint: run.checkpointUri, manifest: aggregated.manifestUri } });
    yield* notify(context, { type: "federation-failed", federationId, round, reason: aggregated.reason });
    throw new Error(`round ${round}: ${aggregated.reason}`);
  }

  const digest = roundDigest(aggregated.summary);
  const recent = recentRounds(run.recent, digest);
  const links = { checkpoint: aggregated.checkpointUri, manifest: aggregated.summary.manifestUri };
  yield* notify(context, { type: "round-completed", federationId, round, summary: aggregated.summary });

  if (round >= run.rounds) {
    return yield* finishFederation(context, {
      run,
      lastModel: aggregated.summary.model,
      lastRound: digest,
      lastSummary: aggregated.summary,
      checkpointUri: aggregated.checkpointUri,
      status: (update) => status({ counts, recent, links, ...update }),
    });
  }
  if (evaluationDue(run, round)) {
    status({ phase: "evaluating", deadline: undefined, counts, recent, links });
    // An intermediate evaluation without its quorum is recorded and the federation goes on.
    const evaluation = yield* evaluateModel(context, { run, round, model: aggregated.summary.model });
    status({ phase: "evaluating", deadline: undefined, counts, recent, links: { ...links, evaluation: evaluation.manifestUri }, evaluation });
  }

  const next: FederationRunInput = {
    ...run,
    round: round + 1,
    global: aggregated.summary.model,
    strategyState: aggregated.strategyState,
    recent,
    checkpointUri: aggregated.checkpointUri,
  };
  context.df.continueAsNew(next);
  return undefined;
};

df.app.orchestration(Orchestrations.federation, federationOrchestrator);
