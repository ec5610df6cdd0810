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

/** One orchestrator invocation (one episode's replay). */
export interface OrchestratorCall {
  name: string;
  instanceId: string;
  round: number;
  /**
   * CPU time of the invocation run again, alone, on the same payload after the federation: the
   * orchestrator's own cost. (Live, an invocation's window also holds whatever other work ran on the
   * thread between its awaits, including other invocations: see LiveOrchestrationMeter.)
   */
  cpuMs: number;
  at: number;
  /** The invocation ended the execution (completed, failed or continued as new). */
  done: boolean;
  /** History length of the payload, recorded for the execution's last invocation. */
  historyEvents?: number;
}

/** One orchestrator's invocations in one round. */
export interface OrchestratorTotals {
  cpuMs: number;
  episodes: number;
  /** Largest and mean history length seen by the last replay of each of its executions. */
  historyEventsMax?: number;
  historyEventsMean?: number;
}

export type RoundCalls = Record<OrchestratorName, OrchestratorTotals>;

/** What the host did while at least one orchestrator invocation of the round was in flight, live. */
export interface LiveOrchestration {
  wallMs: number;
  /** CPU of the thread running the orchestrators: theirs plus any other work interleaved at their awaits. */
  threadCpuMs: number;
  /** CPU of every thread of the process (GC helpers, the job spawner too). */
  processCpuMs: number;
}

export interface Meters {
  wallMs(): number;
  threadCpuMs(): number;
  processCpuMs(): number;
}

/**
 * Accumulates, per round, the wall time and CPU during which at least one orchestrator invocation
 * is in flight. Invocations overlap (the engine runs instances concurrently and an invocation
 * awaits between the SDK's steps), so summing each invocation's own window would count the same
 * CPU several times; here overlapping windows count once, charged to the round that opened them.
 */
export class LiveOrchestrationMeter {
  private inFlight = 0;
  private opened?: { round: number; wallMs: number; threadCpuMs: number; processCpuMs: number };
  readonly byRound = new Map<number, LiveOrchestration>();

  constructor(private readonly meters: Meters) {}

  begin(round: number): void {
    if (this.inFlight++ > 0) return;
    const m = this.meters;
    this.opened = { round, wallMs: m.wallMs(), threadCpuMs: m.threadCpuMs(), processCpuMs: m.processCpuMs() };
  }

  end(): void {
    if (--this.inFlight > 0 || !this.opened) return;
    const { round, ...at } = this.opened;
    const m = this.meters;
    const total = this.byRound.get(round) ?? { wallMs: 0, threadCpuMs: 0, processCpuMs: 0 };
    total.wallMs += m.wallMs() - at.wallMs;
    total.threadCpuMs += m.threadCpuMs() - at.threadCpuMs;
    total.processCpuMs += m.processCpuMs() - at.processCpuMs;
    this.byRound.set(round, total);
    this.opened = undefined;
  }
}

const noCalls = (): RoundCalls => ({
  federation: { cpuMs: 0, episodes: 0 },
  siloGroup: { cpuMs: 0, episodes: 0 },
  siloRound: { cpuMs: 0, episodes: 0 },
});

const isOrchestrator = (name: string): name is OrchestratorName => (ORCHESTRATORS as readonly string[]).includes(name);

export function summarizeOrchestratorCalls(calls: readonly OrchestratorCall[]): Map<number, RoundCalls> {
  const byRound = new Map<number, { totals: RoundCalls; histories: Record<OrchestratorName, number[]> }>();
  for (const c of calls) {
    if (!isOrchestrator(c.name)) throw new Error(`unexpected orchestrator ${JSON.stringify(c.name)}: expected ${ORCHESTRATORS.join(", ")}`);
    let r = byRound.get(c.round);
    if (!r) byRound.set(c.round, (r = { totals: noCalls(), histories: { federation: [], siloGroup: [], siloRound: [] } }));
    const t = r.totals[c.name];
    t.cpuMs += c.cpuMs;
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
  /** (b): the three orchestrators' cpuMs. */
  orchestratorCpuMs: number;
  live: LiveOrchestration;
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
  live: ReadonlyMap<number, LiveOrchestration>;
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
      orchestratorCpuMs: ORCHESTRATORS.reduce((total, name) => total + calls[name].cpuMs, 0),
      live: input.live.get(round) ?? { wallMs: 0, threadCpuMs: 0, processCpuMs: 0 },
      hostCpuMs: input.processCpuMs(firstSubmit, next),
    });
  }
  return out;
}
