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
  ms: number;
  at: number;
  /** The invocation ended the execution (completed, failed or continued as new). */
  done: boolean;
  /** History length of the payload, recorded for the execution's last invocation. */
  historyEvents?: number;
}

export interface RoundCalls {
  federationMs: number;
  siloRoundMs: number;
  federationEpisodes: number;
  siloRoundEpisodes: number;
  federationHistoryEvents?: number;
  siloRoundHistoryEventsMax?: number;
  siloRoundHistoryEventsMean?: number;
}

export const FEDERATION = "federation";
export const SILO_ROUND = "siloRound";

export function summarizeOrchestratorCalls(calls: readonly OrchestratorCall[]): Map<number, RoundCalls> {
  const byRound = new Map<number, RoundCalls & { siloHistories: number[] }>();
  for (const c of calls) {
    let r = byRound.get(c.round);
    if (!r) byRound.set(c.round, (r = { federationMs: 0, siloRoundMs: 0, federationEpisodes: 0, siloRoundEpisodes: 0, siloHistories: [] }));
    if (c.name === FEDERATION) {
      r.federationMs += c.ms;
      r.federationEpisodes++;
      if (c.done && c.historyEvents !== undefined) r.federationHistoryEvents = c.historyEvents;
    } else if (c.name === SILO_ROUND) {
      r.siloRoundMs += c.ms;
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
  /** The gap, cut at the last occurrence of each step; the stages add up to gapMs. */
  stages: {
    exitToEventMs: number;
    eventToRaisedMs: number;
    raisedToSiloDoneMs: number;
    siloDoneToAggregatedMs: number;
    aggregatedToNextSubmitMs: number;
  };
  orchestratorMs: number;
  hostCpuMs: number;
}

export interface RoundTimelineInput {
  rounds: number;
  jobs: readonly JobTimes[];
  silos: readonly SiloInstanceTimes[];
  aggregatedAt: ReadonlyMap<number, number>;
  /** When the federation completed (epoch ms). */
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
    const calls = input.calls.get(round) ?? { federationMs: 0, siloRoundMs: 0, federationEpisodes: 0, siloRoundEpisodes: 0 };
    out.push({
      round,
      jobs: jobs.length,
      wallMs: next - firstSubmit,
      gapMs: next - lastExit,
      stages: {
        exitToEventMs: lastEvent - lastExit,
        eventToRaisedMs: lastRaised - lastEvent,
        raisedToSiloDoneMs: lastSiloDone - lastRaised,
        siloDoneToAggregatedMs: aggregated - lastSiloDone,
        aggregatedToNextSubmitMs: next - aggregated,
      },
      ...calls,
      orchestratorMs: calls.federationMs + calls.siloRoundMs,
      hostCpuMs: input.processCpuMs(firstSubmit, next),
    });
  }
  return out;
}
