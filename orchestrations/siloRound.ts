/**
 * One silo's part of one round: submit its job (training, or another kind), wait for the job's completion event or the
 * round deadline, confirm the job's state with a status poll (so a lost event costs a poll, not a
 * round), and retry a failed job up to `jobRetries` times while the round is open.
 *
 * Deterministic control flow only: time is `currentUtcDateTime`, every I/O is an activity.
 */
import * as df from "durable-functions";
import type { OrchestrationContext, OrchestrationHandler, Task, TimerTask } from "durable-functions";
import { nextPollAt } from "../lib/federation/decisions";
import { Activities, Orchestrations } from "../lib/federation/types";
import type { JobAttempt, JobRefInput, SiloJobEvent, SiloRoundInput, SiloRoundResult, SiloStatus, SubmitJobInput } from "../lib/federation/types";
import type { SiloJobStatus } from "../lib/compute/siloCompute";
import { jobEventName, TERMINAL_JOB_STATES } from "../lib/compute/siloCompute";

/** Activities doing I/O are retried by the host on transient failure (network, throttling). */
export const ioRetry = new df.RetryOptions(2000, 4);
ioRetry.backoffCoefficient = 2;

export const siloRoundOrchestrator: OrchestrationHandler = function* (context: OrchestrationContext): Generator<Task, SiloRoundResult, unknown> {
  const input = context.df.getInput<SiloRoundInput>();
  const deadline = new Date(input.deadline);
  const attempts: JobAttempt[] = [];
  const status = (state: SiloStatus["state"], attempt: number, jobName?: string) =>
    context.df.setCustomStatus({ silo: input.silo, round: input.round, state, attempt, jobName, since: context.df.currentUtcDateTime.toISOString() } satisfies SiloStatus);

  for (let attempt = input.attemptBase + 1; attempt <= input.attemptBase + input.jobRetries + 1; attempt++) {
    if (context.df.currentUtcDateTime >= deadline) break;
    status("submitting", attempt);
    const submit: SubmitJobInput = {
      federationId: input.federationId,
      spec: input.spec,
      round: input.round,
      silo: input.silo,
      kind: input.kind,
      attempt,
      global: input.global,
      parameters: input.parameters,
      secure: input.secure,
    };
    const submittedAt = context.df.currentUtcDateTime.toISOString();
    let job: SiloJobStatus;
    try {
      job = (yield context.df.callActivityWithRetry(Activities.submitSiloJob, ioRetry, submit)) as SiloJobStatus;
    } catch (err) {
      // This silo could not take the job (bad credentials, missing compute...): its attempt fails, the round goes on.
      attempts.push({ attempt, jobName: "", state: "failed", error: `submit failed: ${errorMessage(err)}`, submittedAt, finishedAt: context.df.currentUtcDateTime.toISOString() });
      continue;
    }
    const record: JobAttempt = { attempt, jobName: job.jobName, state: job.state, submittedAt };
    attempts.push(record);
    const jobRef: JobRefInput = { federationId: input.federationId, spec: input.spec, round: input.round, silo: input.silo, kind: input.kind, jobName: job.jobName };

    while (!TERMINAL_JOB_STATES.includes(job.state)) {
      status(job.state, attempt, job.jobName);
      const now = context.df.currentUtcDateTime;
      if (now >= deadline) break;
      // A fresh timer per wait, cancelled when the event wins: re-yielding one timer across several
      // Task.any calls makes the real host create duplicate timers (durable-js #574).
      const timer: TimerTask = context.df.createTimer(nextPollAt(now, deadline, input.statusPollSeconds));
      const event = context.df.waitForExternalEvent(jobEventName({ round: input.round, silo: input.silo, kind: input.kind }));
      const winner = yield context.df.Task.any([event, timer]);
      if (winner === event) {
        timer.cancel();
        // An event from an earlier attempt's job is stale: keep waiting for this one.
        if ((event.result as SiloJobEvent | undefined)?.jobName !== job.jobName) continue;
      }
      // Events are hints: the job's own status decides.
      try {
        job = (yield context.df.callActivityWithRetry(Activities.getSiloJobStatus, ioRetry, jobRef)) as SiloJobStatus;
      } catch (err) {
        job = { ...job, state: "failed", rawStatus: "Unknown", error: `status unavailable: ${errorMessage(err)}` };
      }
    }

    record.state = job.state;
    record.rawStatus = job.rawStatus;
    record.error = job.error;
    record.logUri = job.logUri;
    record.finishedAt = context.df.currentUtcDateTime.toISOString();

    if (job.state === "completed") {
      status("completed", attempt, job.jobName);
      return { silo: input.silo, outcome: "succeeded", attempts, outputUri: job.outputUri };
    }
    if (!TERMINAL_JOB_STATES.includes(job.state)) {
      // The round closed while the job was still running: its result would be stale, so stop it.
      record.state = "late";
      try {
        yield context.df.callActivityWithRetry(Activities.cancelSiloJob, ioRetry, jobRef);
      } catch (err) {
        record.error = `cancel failed: ${errorMessage(err)}`;
      }
      status("late", attempt, job.jobName);
      return { silo: input.silo, outcome: "late", attempts, reason: `job ${job.jobName} still ${job.state} at the round deadline ${input.deadline}` };
    }
  }

  const last = attempts[attempts.length - 1];
  if (!last) {
    status("late", input.attemptBase + 1);
    return { silo: input.silo, outcome: "late", attempts, reason: `round deadline ${input.deadline} passed before a job could be submitted` };
  }
  status(last.state === "late" ? "late" : last.state, last.attempt, last.jobName || undefined);
  const lastJob = last.jobName ? `job ${last.jobName} ${last.state}` : "no job (submit failed)";
  return {
    silo: input.silo,
    outcome: "failed",
    attempts,
    reason: `${attempts.length} attempt(s) failed; last: ${lastJob}${last.error ? `: ${last.error}` : ""}`,
  };
};

/** The first line of an activity failure, without the host's "Activity function 'x' failed:" prefix. */
export function errorMessage(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text
    .replace(/^Activity function '[^']+' failed: /, "")
    .split("\n")[0]
    .trim();
}

df.app.orchestration(Orchestrations.siloRound, siloRoundOrchestrator);
