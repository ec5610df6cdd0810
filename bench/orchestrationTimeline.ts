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

/** The orchestrators of the federation app, in call order (federation -> siloGroup -> siloRound). */
export const ORCHESTRATORS = ["federation", "siloGroup", "siloRound"] as const;
export type OrchestratorName = (typeof ORCHESTRATORS)[number];

/** One timed orchestrator invocation (one episode's replay). */
export interface OrchestratorCall {
  name: string;
  instanceId: string;
  round: number;
  /** Wall time of the invocation. */
  ms: number;
  /**
   * CPU time of the invocation run again, alone, on the same payload after the federation: the
   * orchestrator's own cost (the live invocation's figures below also count whatever other work
   * ran on the thread in between its awaits).
   */
  cpuMs: number;
  /** CPU time of the main thread during the live invocation. */
  inSituCpuMs: number;
  /** CPU time of the whole process during the live invocation: also other threads (GC helpers, the job spawner). */
  processCpuMs: number;
  at: number;
  /** The invocation ended the execution (completed, failed or continued as new). */
  done: boolean;
  /** History length of the payload, recorded for the execution's last invocation. */
  historyEvents?: number;
}

/** One orchestrator's invocations in one round. */
export interface OrchestratorTotals {
  ms: number;
  cpuMs: number;
  inSituCpuMs: number;
  processCpuMs: number;
  episodes: number;
  /** Largest and mean history length seen by the last replay of each of its executions. */
  historyEventsMax?: number;
  historyEventsMean?: number;
}

export type RoundCalls = Record<OrchestratorName, OrchestratorTotals>;

const noCalls = (): RoundCalls => ({
  federation: { ms: 0, cpuMs: 0, inSituCpuMs: 0, processCpuMs: 0, episodes: 0 },
  siloGroup: { ms: 0, cpuMs: 0, inSituCpuMs: 0, processCpuMs: 0, episodes: 0 },
  siloRound: { ms: 0, cpuMs: 0, inSituCpuMs: 0, processCpuMs: 0, episodes: 0 },
});

const isOrchestrator = (name: string): name is OrchestratorName => (ORCHESTRATORS as readonly string[]).includes(name);

export function summarizeOrchestratorCalls(calls: readonly OrchestratorCall[]): Map<number, RoundCalls> {
  const byRound = new Map<number, { totals: RoundCalls; histories: Record<OrchestratorName, number[]> }>();
  for (const c of calls) {
    if (!isOrchestrator(c.name)) throw new Error(`unexpected orchestrator ${JSON.stringify(c.name)}: expected ${ORCHESTRATORS.join(", ")}`);
    let r = byRound.get(c.round);
    if (!r) byRound.set(c.round, (r = { totals: noCalls(), histories: { federation: [], siloGroup: [], siloRound: [] } }));
    const t = r.totals[c.name];
    t.ms += c.ms;
    t.cpuMs += c.cpuMs;
    t.inSituCpuMs += c.inSituCpuMs;
    t.processCpuMs += c.processCpuMs;
    t.episodes++;
    if (c.done && c.historyEvents !== undefined) r.histories[c.name].push(c.historyEvents);
  }
  const out = new Map<number, RoundCalls>();
  for (const [round, { totals, histories }] of byRound) {
    for (const name of ORCHESTRATORS) {
      const h = histories[name];
      if (h.length) Object.assign(totals[name], { historyEventsMax: Math.max(...h), historyEventsMean: h.reduce((a, b) => a + b, 0) / h.length });
    }
    out.set(round, totals);
  }
  return out;
}

export interface RoundTimeline {
  round: number;
  calls: RoundCalls;
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
  /** Sums over the three orchestrators. */
  orchestratorMs: number;
  orchestratorCpuMs: number;
  orchestratorInSituCpuMs: number;
  orchestratorProcessCpuMs: number;
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
    const calls = input.calls.get(round) ?? noCalls();
    const sum = (field: "ms" | "cpuMs" | "inSituCpuMs" | "processCpuMs") => ORCHESTRATORS.reduce((total, name) => total + calls[name][field], 0);
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
      calls,
      orchestratorMs: sum("ms"),
      orchestratorCpuMs: sum("cpuMs"),
      orchestratorInSituCpuMs: sum("inSituCpuMs"),
      orchestratorProcessCpuMs: sum("processCpuMs"),
      hostCpuMs: input.processCpuMs(firstSubmit, next),
    });
  }
  return out;
}
