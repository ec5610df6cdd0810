/** The orchestration benchmark's bookkeeping: rounds, gaps and milestones from timestamps. */
import { LiveOrchestrationMeter, roundTimeline, summarizeOrchestratorCalls, type JobTimes, type OrchestratorCall } from "../bench/orchestrationTimeline";

const call = (name: string, round: number, cpuMs: number, done = false, historyEvents?: number): OrchestratorCall => ({
  name,
  instanceId: name === "federation" ? "f" : `f:r${round}:s`,
  round,
  cpuMs,
  at: 0,
  done,
  historyEvents,
});

describe("summarizeOrchestratorCalls", () => {
  it("sums CPU and episodes per round and keeps the history size of each execution's last replay", () => {
    const summary = summarizeOrchestratorCalls([
      call("federation", 1, 1),
      call("siloGroup", 1, 2, true, 10),
      call("siloRound", 1, 2),
      call("siloRound", 1, 3, true, 14),
      call("siloRound", 1, 4, true, 18),
      call("federation", 1, 5, true, 50),
      call("federation", 2, 7, true, 54),
    ]);
    expect(summary.get(1)).toEqual({
      federation: { cpuMs: 6, episodes: 2, historyEventsMax: 50, historyEventsMean: 50 },
      siloGroup: { cpuMs: 2, episodes: 1, historyEventsMax: 10, historyEventsMean: 10 },
      siloRound: { cpuMs: 9, episodes: 3, historyEventsMax: 18, historyEventsMean: 16 },
    });
    expect(summary.get(2)).toEqual({
      federation: { cpuMs: 7, episodes: 1, historyEventsMax: 54, historyEventsMean: 54 },
      siloGroup: { cpuMs: 0, episodes: 0 },
      siloRound: { cpuMs: 0, episodes: 0 },
    });
  });

  it("rejects an orchestrator the benchmark does not know", () => {
    expect(() => summarizeOrchestratorCalls([call("other", 1, 1)])).toThrow('unexpected orchestrator "other": expected federation, siloGroup, siloRound');
  });
});

describe("LiveOrchestrationMeter", () => {
  it("counts overlapping invocations once, charged to the round that opened the window", () => {
    let now = 0;
    const meter = new LiveOrchestrationMeter({ wallMs: () => now, threadCpuMs: () => now / 2, processCpuMs: () => now * 2 });
    meter.begin(1); // 0
    now = 5;
    meter.begin(1); // overlaps
    now = 10;
    meter.end();
    now = 20;
    meter.end(); // window 0..20
    now = 100;
    meter.begin(2);
    now = 104;
    meter.end(); // window 100..104
    now = 200;
    meter.begin(1);
    now = 201;
    meter.begin(2); // opened by round 1: charged to round 1
    now = 203;
    meter.end();
    meter.end(); // window 200..203
    expect(meter.byRound.get(1)).toEqual({ wallMs: 23, threadCpuMs: 11.5, processCpuMs: 46 });
    expect(meter.byRound.get(2)).toEqual({ wallMs: 4, threadCpuMs: 2, processCpuMs: 8 });
  });
});

describe("roundTimeline", () => {
  const job = (round: number, silo: string, createdAt: number, finishedAt: number, reportedAt: number): JobTimes => ({ round, silo, createdAt, finishedAt, reportedAt, state: "completed" });
  const jobs = [job(1, "a", 1000, 3000, 3100), job(1, "b", 1200, 3500, 3700), job(2, "a", 6000, 8000, 8050), job(2, "b", 5800, 8200, 8300)];
  const silos = [
    { round: 1, silo: "a", raisedAt: [3150], completedAt: 3300 },
    { round: 1, silo: "b", raisedAt: [3750], completedAt: 3900 },
    { round: 2, silo: "a", raisedAt: [8100], completedAt: 8200 },
    { round: 2, silo: "b", raisedAt: [8350], completedAt: 8400 },
  ];
  const timelines = roundTimeline({
    rounds: 2,
    jobs,
    silos,
    aggregatedAt: new Map([
      [1, 4500],
      [2, 8900],
    ]),
    completedAt: 9000,
    calls: summarizeOrchestratorCalls([call("federation", 1, 1), call("siloGroup", 1, 2), call("siloRound", 1, 4)]),
    live: new Map([[1, { wallMs: 30, threadCpuMs: 20, processCpuMs: 25 }]]),
    processCpuMs: (from, to) => (to - from) / 10,
  });

  it("measures the gap from the round's last job exit to the next round's first submission", () => {
    expect(timelines[0]).toMatchObject({ round: 1, jobs: 2, wallMs: 5800 - 1000, gapMs: 5800 - 3500, lastRaisedMs: 250, hostCpuMs: 480 });
    expect(timelines[0].milestones).toEqual({ eventsPublishedMs: 200, silosDoneMs: 400, aggregatedMs: 1000 });
    expect(timelines[0]).toMatchObject({ orchestratorCpuMs: 7, live: { wallMs: 30, threadCpuMs: 20, processCpuMs: 25 } });
  });

  it("ends the last round at the federation's completion", () => {
    expect(timelines[1]).toMatchObject({ round: 2, wallMs: 9000 - 5800, gapMs: 9000 - 8200 });
    expect(timelines[1].milestones).toEqual({ eventsPublishedMs: 100, silosDoneMs: 200, aggregatedMs: 700 });
    expect(timelines[1]).toMatchObject({ orchestratorCpuMs: 0, live: { wallMs: 0, threadCpuMs: 0, processCpuMs: 0 } });
    expect(timelines[1].calls.federation.episodes).toBe(0);
  });
});
