/**
 * Pure bookkeeping of the orchestration benchmark: turns job-folder timestamps, engine history
 * timestamps and timed orchestrator invocations into one line per round. No I/O.
 */

/** One local job's timestamps (epoch ms), from its folder. */
export interface JobTimes {
  round: number;
  silo: string;
  /** job.json.createdAt: the submit activity created the job. */
  createdAt: number;
  startedAt?: number;
  /** status.json.finishedAt: the runner saw the trainer exit. */
  finishedAt?: number;
  /** reported.json.reportedAt: outputs uploaded, the completion event is being published. */
  reportedAt?: number;
  state: string;
}

/** One silo sub-orchestration's timestamps (epoch ms), from the engine's history. */
export interface SiloInstanceTimes {
  round: number;
  silo: string;
  /** EventRaised events (job status events delivered to the instance). */
  raisedAt: number[];
  /** ExecutionCompleted. */
  completedAt?: number;
}

/** One timed orchestrator invocation (one episode's replay). */
export interface OrchestratorCall {
  name: string;
  instanceId: string;
  round: number;
  /** Wall time of the invocation. */
  ms: number;
  /** Process CPU time (user + system) during the invocation. */
  cpuMs: number;
  at: number;
  /** The invocation ended the execution (completed, failed or continued as new). */
  done: boolean;
  /** History length of the payload, recorded for the execution's last invocation. */
  historyEvents?: number;
}

export interface RoundCalls {
  federationMs: number;
  siloRoundMs: number;
  federationCpuMs: number;
  siloRoundCpuMs: number;
  federationEpisodes: number;
  siloRoundEpisodes: number;
  federationHistoryEvents?: number;
  siloRoundHistoryEventsMax?: number;
  siloRoundHistoryEventsMean?: number;
}

const NO_CALLS: RoundCalls = { federationMs: 0, siloRoundMs: 0, federationCpuMs: 0, siloRoundCpuMs: 0, federationEpisodes: 0, siloRoundEpisodes: 0 };

export const FEDERATION = "federation";
export const SILO_ROUND = "siloRound";

export function summarizeOrchestratorCalls(calls: readonly OrchestratorCall[]): Map<number, RoundCalls> {
  const byRound = new Map<number, RoundCalls & { siloHistories: number[] }>();
  for (const c of calls) {
    let r = byRound.get(c.round);
    if (!r) byRound.set(c.round, (r = { ...NO_CALLS, siloHistories: [] }));
    if (c.name === FEDERATION) {
      r.federationMs += c.ms;
      r.federationCpuMs += c.cpuMs;
      r.federationEpisodes++;
      if (c.done && c.historyEvents !== undefined) r.federationHistoryEvents = c.historyEvents;
    } else if (c.name === SILO_ROUND) {
      r.siloRoundMs += c.ms;
      r.siloRoundCpuMs += c.cpuMs;
      r.siloRoundEpisodes++;
      if (c.done && c.historyEvents !== undefined) r.siloHistories.push(c.historyEvents);
    } else {
      throw new Error(`unexpected orchestrator ${JSON.stringify(c.name)}: expected ${FEDERATION} or ${SILO_ROUND}`);
    }
  }
  const out = new Map<number, RoundCalls>();
  for (const [round, { siloHistories, ...rest }] of byRound) {
    out.set(round, {
      ...rest,
      siloRoundHistoryEventsMax: siloHistories.length ? Math.max(...siloHistories) : undefined,
      siloRoundHistoryEventsMean: siloHistories.length ? siloHistories.reduce((a, b) => a + b, 0) / siloHistories.length : undefined,
    });
  }
  return out;
}

export interface RoundTimeline extends RoundCalls {
  round: number;
  jobs: number;
  /** First job submission of this round -> first of the next (last round: -> federation completed). */
  wallMs: number;
  /** (a) Last job exit of this round -> first job submission of the next (last round: -> completed). */
  gapMs: number;
  /**
   * Milestones of the gap, each measured from the last job exit: every completion event published,
   * every silo sub-orchestration done, the round aggregated (the last one equals gapMs).
   */
  milestones: {
    eventsPublishedMs: number;
    silosDoneMs: number;
    aggregatedMs: number;
  };
  /** The last job status event raised on a silo sub-orchestration, from the last job exit (NaN if none). */
  lastRaisedMs: number;
  orchestratorMs: number;
  orchestratorCpuMs: number;
  hostCpuMs: number;
}

export interface RoundTimelineInput {
  rounds: number;
  jobs: readonly JobTimes[];
  silos: readonly SiloInstanceTimes[];
  aggregatedAt: ReadonlyMap<number, number>;
  /** When the federation completed (epoch ms, the last execution's ExecutionCompleted). */
  completedAt: number;
  calls: ReadonlyMap<number, RoundCalls>;
  processCpuMs(from: number, to: number): number;
}

const max = (values: readonly number[]): number => (values.length ? Math.max(...values) : NaN);
const min = (values: readonly number[]): number => (values.length ? Math.min(...values) : NaN);
const defined = (values: readonly (number | undefined)[]): number[] => values.filter((v): v is number => v !== undefined && !Number.isNaN(v));

export function roundTimeline(input: RoundTimelineInput): RoundTimeline[] {
  const out: RoundTimeline[] = [];
  for (let round = 1; round <= input.rounds; round++) {
    const jobs = input.jobs.filter((j) => j.round === round);
    const nextJobs = input.jobs.filter((j) => j.round === round + 1);
    const silos = input.silos.filter((s) => s.round === round);
    const firstSubmit = min(jobs.map((j) => j.createdAt));
    const lastExit = max(defined(jobs.map((j) => j.finishedAt)));
    const lastEvent = max(defined(jobs.map((j) => j.reportedAt)));
    const lastRaised = max(silos.flatMap((s) => s.raisedAt));
    const lastSiloDone = max(defined(silos.map((s) => s.completedAt)));
    const aggregated = input.aggregatedAt.get(round) ?? NaN;
    const next = round < input.rounds ? min(nextJobs.map((j) => j.createdAt)) : input.completedAt;
    const calls = input.calls.get(round) ?? NO_CALLS;
    out.push({
      round,
      jobs: jobs.length,
      wallMs: next - firstSubmit,
      gapMs: next - lastExit,
      milestones: {
        eventsPublishedMs: lastEvent - lastExit,
        silosDoneMs: lastSiloDone - lastExit,
        aggregatedMs: aggregated - lastExit,
      },
      lastRaisedMs: lastRaised - lastExit,
      ...calls,
      orchestratorMs: calls.federationMs + calls.siloRoundMs,
      orchestratorCpuMs: calls.federationCpuMs + calls.siloRoundCpuMs,
      hostCpuMs: input.processCpuMs(firstSubmit, next),
    });
  }
  return out;
}
