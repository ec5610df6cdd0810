/**
 * `npm run bench:orchestration`: the federation app's orchestration cost on the embedded
 * host, with K local silos running an instant trainer (bench/fixtures/orchestration-trainer.js).
 *
 * Per K and per round it prints
 *  (a) the gap from the LAST silo job completion of round r to the FIRST job submission of round r+1,
 *      taken from the job folders (status.json.finishedAt written by the job's runner when the trainer
 *      exits; job.json.createdAt written when the submit activity creates the job), with the stages
 *      in between (completion event published, event raised on the silo's sub-orchestration, the
 *      sub-orchestration done, the round aggregated) from reported.json and the engine's history;
 *  (b) orchestrator CPU: CPU time of the main thread (Linux per-thread accounting; see
 *      threadCpuClock) of every invocation of the `federation`, `siloGroup` and `siloRound`
 *      orchestrator functions (payload -> SDK replay -> actions), each recorded live by wrapping the
 *      host's invoker and run again alone on the same payload after the federation (see
 *      remeasureAlone). Live figures are printed too: wall time, main-thread and process CPU while
 *      at least one orchestrator invocation was in flight (see LiveOrchestrationMeter);
 *  (c) history events per execution (the history the last replay of each execution saw): the round's
 *      `federation` execution, the largest `siloGroup` and the largest `siloRound` sub-orchestration.
 * Plus the round's wall time and the host process's CPU time during the round, and, after each K's
 * federation, its anchor (siloBaseline.ts): K instant trainers alone at the federation's peak
 * concurrency, each round's wall time against it (target: K = 100 within 1.5x, K = 1000 within 2x)
 * and CPU per silo (host, job runner, trainer) against the baseline's trainer CPU.
 *
 * Usage: node dist/bench/orchestration.js [--silos 10,100,1000] [--rounds 3] [--large-rounds 2]
 *        [--large-from 1000] [--json <file>] [--timeout-minutes 20]
 */
import { fork } from "node:child_process";
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { startLocalHost, type LocalHost } from "../lib/runtime/host";
import type { InvocationResult, Invoker } from "../lib/runtime/invoke";
import { EventType, type HistoryEvent } from "../lib/runtime/durable/history";
import type { LocalJobFile, LocalJobReportFile, LocalJobStatusFile } from "../lib/compute/local/jobFiles";
import { describeVerdict, measureSiloBaseline, peakConcurrency, readProcessCpu, roundVerdict, type BaselineRun, type RoundVerdict } from "./siloBaseline";
import { LiveOrchestrationMeter, roundTimeline, summarizeOrchestratorCalls, type JobTimes, type OrchestratorCall, type RoundTimeline, type SiloInstanceTimes } from "./orchestrationTimeline";

const REPO = resolve(__dirname, "..", "..");
const APP_ENTRY = join(REPO, "dist", "functions", "index.js");
const TRAINER_DIR = join(REPO, "bench", "fixtures");
const TRAINER = join(TRAINER_DIR, "orchestration-trainer.js");

/** Bad command-line flags. */
export class BenchOptionsError extends Error {
  override readonly name = "BenchOptionsError";
}

interface BenchOptions {
  silos: number[];
  rounds: number;
  /** Rounds for K >= largeFrom (1000 job processes per round is the cost of a large K). */
  largeRounds: number;
  largeFrom: number;
  json?: string;
  timeoutMs: number;
}

function parseArgs(argv: string[]): BenchOptions {
  const options: BenchOptions = { silos: [10, 100, 1000], rounds: 3, largeRounds: 2, largeFrom: 1000, timeoutMs: 20 * 60_000 };
  const positiveInt = (flag: string, text: string | undefined): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new BenchOptionsError(`${flag}: expected a positive integer, got ${JSON.stringify(text)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--silos") options.silos = (value ?? "").split(",").map((s) => positiveInt("--silos", s.trim()));
    else if (flag === "--rounds") options.rounds = positiveInt(flag, value);
    else if (flag === "--large-rounds") options.largeRounds = positiveInt(flag, value);
    else if (flag === "--large-from") options.largeFrom = positiveInt(flag, value);
    else if (flag === "--json") options.json = value;
    else if (flag === "--timeout-minutes") options.timeoutMs = positiveInt(flag, value) * 60_000;
    else throw new BenchOptionsError(`unknown flag ${JSON.stringify(flag)}: expected --silos, --rounds, --large-rounds, --large-from, --json, --timeout-minutes`);
  }
  return options;
}

function siloName(i: number): string {
  return `s${String(i).padStart(4, "0")}`;
}

function benchSpec(name: string, silos: number, rounds: number): Record<string, unknown> {
  return {
    name,
    rounds,
    silos: Array.from({ length: silos }, (_, i) => ({ name: siloName(i), compute: { type: "local" } })),
    training: {
      command: "node orchestration-trainer.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}}",
      code: TRAINER_DIR,
    },
    // A deadline far away: the benchmark measures the event path, never the deadline.
    policy: { roundTimeout: "PT30M" },
  };
}

/**
 * CPU time of the calling thread, in ms. Linux keeps it per thread in /proc/thread-self/schedstat
 * (nanoseconds; the running thread's figure lags by up to one scheduler tick, an error that
 * averages out over the thousands of invocations summed here). Node 20 has no per-thread CPU API
 * (`process.threadCpuUsage` came in Node 23), and `process.cpuUsage()` counts every thread of the
 * process: GC helpers and the worker thread that spawns the jobs' processes.
 */
function threadCpuClock(): { name: string; read: () => number } {
  try {
    const read = () => Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e6;
    if (Number.isFinite(read())) return { name: "main-thread CPU (/proc/thread-self/schedstat)", read };
  } catch {
    // not Linux: fall back to the process-wide figure
  }
  return { name: "process CPU (no per-thread CPU clock on this OS)", read: processCpuMs };
}

function processCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

const threadCpu = threadCpuClock();

/** A live orchestrator invocation kept to be run again alone (see remeasureAlone). */
interface RecordedInvocation {
  call: OrchestratorCall;
  payload: string;
  returned: unknown;
}

/**
 * Wraps the host's invoker so every orchestrator invocation is recorded (the engine calls the same
 * object), and meters what the host does while orchestrator invocations are in flight.
 */
function instrumentOrchestrators(host: LocalHost, recorded: RecordedInvocation[], live: LiveOrchestrationMeter): Invoker["invoke"] {
  const invoker: Invoker = host.invoker;
  const original = invoker.invoke.bind(invoker);
  invoker.invoke = async (functionName, triggerData, ...rest) => {
    if (!host.engine.isOrchestrator(functionName)) return original(functionName, triggerData, ...rest);
    const payload = typeof triggerData.string === "string" ? triggerData.string : "";
    const instanceId = stringField(payload, "instanceId", payload.lastIndexOf('"instanceId":"'));
    const round = roundOf(functionName, instanceId, payload);
    live.begin(round);
    let response: InvocationResult;
    try {
      response = await original(functionName, triggerData, ...rest);
    } finally {
      live.end();
    }
    const returned = response.returnValue?.json ?? response.returnValue?.string;
    const done = typeof returned === "string" && /"isDone":\s*true/.test(returned);
    const call: OrchestratorCall = { name: functionName, instanceId, round, cpuMs: NaN, at: Date.now(), done };
    if (done) call.historyEvents = (JSON.parse(payload) as { history: unknown[] }).history.length;
    recorded.push({ call, payload, returned });
    return response;
  };
  return original;
}

/**
 * (b): every recorded invocation run again, one after another, on the same payload through the
 * same invoker once the federation is over and the thread is otherwise idle; the result must equal
 * the live one (orchestrators are deterministic), so the work measured is the work that was done.
 */
async function remeasureAlone(invoke: Invoker["invoke"], recorded: RecordedInvocation[]): Promise<OrchestratorCall[]> {
  for (const r of recorded) {
    const before = threadCpu.read();
    const response = await invoke(r.call.name, { string: r.payload });
    r.call.cpuMs = threadCpu.read() - before;
    const returned = response.returnValue?.json ?? response.returnValue?.string;
    if (returned !== r.returned) throw new Error(`${r.call.name} ${r.call.instanceId}: the invocation run again returned something else than live`);
  }
  return recorded.map((r) => r.call);
}

function stringField(text: string, _name: string, at: number): string {
  if (at < 0) return "";
  const start = text.indexOf(':"', at) + 2;
  return text.slice(start, text.indexOf('"', start));
}

function roundOf(name: string, instanceId: string, payload: string): number {
  const sub = /:r(\d+):/.exec(instanceId);
  if (sub) return Number(sub[1]);
  // The federation's input ({federationId, spec, rounds, round, ...}) follows its history in the payload.
  const inputAt = payload.lastIndexOf('"input":{');
  const m = /"round":(\d+)/.exec(payload.slice(inputAt >= 0 ? inputAt : 0));
  if (!m) throw new Error(`cannot tell the round of a ${name} invocation of ${instanceId}`);
  return Number(m[1]);
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

function jobTimes(jobsDir: string): JobTimes[] {
  const out: JobTimes[] = [];
  for (const name of readdirSync(jobsDir)) {
    const job = readJson<LocalJobFile>(join(jobsDir, name, "job.json"));
    const status = readJson<LocalJobStatusFile>(join(jobsDir, name, "status.json"));
    const reported = readJson<LocalJobReportFile>(join(jobsDir, name, "reported.json"));
    if (!job) continue;
    out.push({
      round: job.request.round,
      silo: job.request.silo,
      createdAt: Date.parse(job.createdAt),
      startedAt: status?.startedAt ? Date.parse(status.startedAt) : undefined,
      finishedAt: status?.finishedAt ? Date.parse(status.finishedAt) : undefined,
      reportedAt: reported ? Date.parse(reported.reportedAt) : undefined,
      state: reported?.state ?? status?.state ?? "unknown",
    });
  }
  return out;
}

function siloInstanceTimes(host: LocalHost, federationId: string, rounds: number, silos: number): SiloInstanceTimes[] {
  const out: SiloInstanceTimes[] = [];
  for (let r = 1; r <= rounds; r++) {
    for (let i = 0; i < silos; i++) {
      const id = `${federationId}:r${r}:${siloName(i)}`;
      let history: HistoryEvent[];
      try {
        history = host.engine.history(id);
      } catch {
        continue;
      }
      const at = (type: EventType) => history.filter((e) => e.EventType === type).map((e) => Date.parse(e.Timestamp));
      out.push({ round: r, silo: siloName(i), raisedAt: at(EventType.EventRaised), completedAt: at(EventType.ExecutionCompleted)[0] });
    }
  }
  return out;
}

function executionCompletedAt(history: HistoryEvent[]): number {
  const completed = history.find((e) => e.EventType === EventType.ExecutionCompleted);
  if (!completed) throw new Error("the federation's last execution has no ExecutionCompleted event");
  return Date.parse(completed.Timestamp);
}

interface CpuSample {
  at: number;
  cpuMs: number;
}

/**
 * CPU of the federation's local job runners and their trainers. A runner exits once no job has been
 * pending for a while (between rounds, when an aggregation takes long), and its pid may then go to
 * another process: so a runner is read from /proc only while it is still this process's child (the
 * host runs in this process), and the CPU of the runners that exited, their trainers' included, is
 * this process's reaped-children CPU over the federation.
 */
interface RunnerCpu {
  /** Runners still running at the read: their own CPU, and their trainers'. */
  runnerMs: number;
  trainersMs: number;
  /** Runners that had exited: their CPU and their trainers' together. */
  exitedMs: number;
  runners: number;
  exited: number;
}

function runnerCpu(jobsDir: string, childrenMsBefore: number): RunnerCpu {
  const pids = new Set<number>();
  for (const name of readdirSync(jobsDir)) {
    // Job folders only (the jobs folder also holds the host secret and the finished markers).
    const pid = Number(readJson<number>(join(jobsDir, name, "runner.pid")));
    if (Number.isInteger(pid) && pid > 0) pids.add(pid);
  }
  const result: RunnerCpu = { runnerMs: 0, trainersMs: 0, exitedMs: readProcessCpu("self").childrenMs - childrenMsBefore, runners: pids.size, exited: 0 };
  for (const pid of pids) {
    if (parentPid(pid) !== process.pid) {
      result.exited++;
      continue;
    }
    const cpu = readProcessCpu(pid);
    result.runnerMs += cpu.ownMs;
    result.trainersMs += cpu.childrenMs;
  }
  return result;
}

/** The parent pid of a running process, or undefined once it is gone. */
function parentPid(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    return undefined;
  }
}

async function runK(silos: number, rounds: number, timeoutMs: number): Promise<{ timelines: RoundTimeline[]; wallMs: number; runner: RunnerCpu; trainerConcurrency: number }> {
  const dir = mkdtempSync(join(tmpdir(), `flo-bench-orch-${silos}-`));
  const jobsDir = join(dir, "jobs");
  mkdirSync(jobsDir);
  const recorded: RecordedInvocation[] = [];
  const cpuSamples: CpuSample[] = [];
  const sampleCpu = () => cpuSamples.push({ at: Date.now(), cpuMs: processCpuMs() });
  const host = await startLocalHost({
    appEntry: APP_ENTRY,
    port: 0,
    dataDir: dir,
    storage: "memory",
    settings: { FLO_LOCAL_COMPUTE: "enabled", FLO_LOCAL_JOBS_DIR: jobsDir, FLO_LOCAL_BASE_DIR: dir, FLO_LOCAL_ALLOWED_PATHS: TRAINER_DIR },
    log: (line) => (line.startsWith("[error]") ? console.error(line) : undefined),
  });
  const sampler = setInterval(sampleCpu, 250);
  try {
    const live = new LiveOrchestrationMeter({ wallMs: () => performance.now(), threadCpuMs: threadCpu.read, processCpuMs });
    const invoke = instrumentOrchestrators(host, recorded, live);
    const federationId = `bench-k${silos}`;
    sampleCpu();
    const childrenMsBefore = readProcessCpu("self").childrenMs;
    const started = Date.now();
    const res = await fetch(`${host.url}/api/federations`, {
      method: "POST",
      headers: { "x-functions-key": host.functionKey, "content-type": "application/json" },
      body: JSON.stringify(benchSpec(federationId, silos, rounds)),
    });
    if (res.status !== 202) throw new Error(`POST /api/federations: expected 202, got ${res.status}: ${await res.text()}`);
    const final = await host.engine.waitForStatus(federationId, (s) => ["Completed", "Failed", "Terminated"].includes(s.runtimeStatus), { timeoutMs });
    const wallMs = Date.now() - started;
    sampleCpu();
    const runner = runnerCpu(jobsDir, childrenMsBefore);
    if (final.runtimeStatus !== "Completed") throw new Error(`federation ${federationId} ended ${final.runtimeStatus}: ${JSON.stringify(final.output)}`);
    // The round history is in the checkpoint blob; the API serves it.
    const statusResponse = await fetch(`${host.url}/api/federations/${federationId}`, { headers: { "x-functions-key": host.functionKey } });
    const { history } = (await statusResponse.json()) as { history: { round: number; startedAt: string; aggregatedAt: string }[] };
    const calls = await remeasureAlone(invoke, recorded);
    const aggregatedAt = new Map(history.map((h) => [h.round, Date.parse(h.aggregatedAt)]));
    const jobs = jobTimes(jobsDir);
    const trainerConcurrency = peakConcurrency(jobs.filter((j) => j.startedAt !== undefined && j.finishedAt !== undefined).map((j) => ({ start: j.startedAt!, end: j.finishedAt! })));
    const timelines = roundTimeline({
      rounds,
      jobs,
      silos: siloInstanceTimes(host, federationId, rounds, silos),
      aggregatedAt,
      completedAt: executionCompletedAt(host.engine.history(federationId)),
      calls: summarizeOrchestratorCalls(calls),
      live: live.byRound,
      processCpuMs: (from, to) => cpuBetween(cpuSamples, from, to),
    });
    return { timelines, wallMs, runner, trainerConcurrency };
  } finally {
    clearInterval(sampler);
    await host.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Host-process CPU between two instants, interpolated from the 250 ms samples. */
function cpuBetween(samples: CpuSample[], from: number, to: number): number {
  const at = (t: number): number => {
    let prev = samples[0];
    for (const s of samples) {
      if (s.at >= t) {
        if (s.at === prev.at) return s.cpuMs;
        return prev.cpuMs + ((s.cpuMs - prev.cpuMs) * (t - prev.at)) / (s.at - prev.at);
      }
      prev = s;
    }
    return prev.cpuMs;
  };
  return at(to) - at(from);
}

const s = (ms: number | undefined) => (ms === undefined || Number.isNaN(ms) ? "-" : (ms / 1000).toFixed(2));

function printTable(silos: number, timelines: RoundTimeline[], wallMs: number): void {
  console.log(`\nK = ${silos} silos, ${timelines.length} rounds, federation wall ${s(wallMs)} s`);
  const header = [
    "round",
    "wall s",
    "(a) gap s",
    "events sent",
    "silos done",
    "aggregated",
    "(b) orch cpu ms",
    "fed",
    "group",
    "silo",
    "live: wall ms",
    "thread cpu ms",
    "process cpu ms",
    "episodes fed/group/silo",
    "(c) fed events",
    "group events max",
    "silo events max",
    "host cpu s",
  ];
  const rows = timelines.map((t) => {
    const { federation: fed, siloGroup: group, siloRound: silo } = t.calls;
    return [
      String(t.round),
      s(t.wallMs),
      s(t.gapMs),
      s(t.milestones.eventsPublishedMs),
      s(t.milestones.silosDoneMs),
      s(t.milestones.aggregatedMs),
      t.orchestratorCpuMs.toFixed(0),
      fed.cpuMs.toFixed(0),
      group.cpuMs.toFixed(0),
      silo.cpuMs.toFixed(0),
      t.live.wallMs.toFixed(0),
      t.live.threadCpuMs.toFixed(0),
      t.live.processCpuMs.toFixed(0),
      `${fed.episodes}/${group.episodes}/${silo.episodes}`,
      String(fed.historyEventsMax ?? "-"),
      String(group.historyEventsMax ?? "-"),
      String(silo.historyEventsMax ?? "-"),
      s(t.hostCpuMs),
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join("  ");
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

interface KResult {
  silos: number;
  rounds: number;
  wallMs: number;
  timelines: RoundTimeline[];
  runner: RunnerCpu;
  /** The most trainers running at once in any round (status.json startedAt -> finishedAt). */
  trainerConcurrency: number;
}

interface KBaseline {
  /** The most trainers that ran at once in the federation: the baseline's concurrency. */
  concurrency: number;
  /** The K trainers alone (siloBaseline.ts), measured twice right after the federation. */
  runs: BaselineRun[];
  meanMs: number;
  /** Their CPU (user + system), mean of the two runs. */
  trainersCpuMs: number;
  verdicts: RoundVerdict[];
}

/**
 * Each round against the anchor measured around it: K instant trainers alone, started at once.
 * Wall time is the target's measure; the CPU line says what it would be without other load: on an
 * otherwise idle machine a round and the baseline both keep every core busy, so their wall times
 * compare as their CPU times do (host + runner + trainers against the trainers alone).
 */
function printBaseline(result: KResult, baseline: KBaseline): void {
  const { silos, rounds, timelines, runner } = result;
  const s2 = (ms: number) => (ms / 1000).toFixed(2);
  const perSilo = (ms: number) => `${(ms / silos).toFixed(1)} ms`;
  console.log(
    `baseline, ${silos} instant trainers, at most ${baseline.concurrency} at once (as in the federation), no orchestration: ${baseline.runs.map((r) => `${s2(r.wallMs)} s`).join(", ")} (mean ${s2(baseline.meanMs)} s); trainer CPU ${perSilo(baseline.trainersCpuMs)} each`,
  );
  const trainersPerRound = runner.trainersMs / rounds;
  const runnerPerRound = runner.runnerMs / rounds;
  const exitedPerRound = runner.exitedMs / rounds;
  const exited = runner.exited > 0 ? ` + runners that had exited (${runner.exited} of ${runner.runners}) and their trainers ${perSilo(exitedPerRound)}` : "";
  for (const [i, t] of timelines.entries()) {
    const cpuRatio = (t.hostCpuMs + runnerPerRound + trainersPerRound + exitedPerRound) / baseline.trainersCpuMs;
    console.log(
      `  round ${t.round}: ${describeVerdict(t.wallMs, baseline.verdicts[i])}; CPU per silo: host ${perSilo(t.hostCpuMs)} + job runner ${perSilo(runnerPerRound)} + trainer ${perSilo(trainersPerRound)}${exited} = ${cpuRatio.toFixed(2)}x the baseline's CPU`,
    );
  }
}

/**
 * Each K runs in its own process: a fresh heap, and the Functions app registers its functions once
 * per process (a second host in the same process would see none).
 */
function runKInChild(silos: number, rounds: number, timeoutMs: number): Promise<KResult> {
  return new Promise((resolvePromise, reject) => {
    const child = fork(__filename, ["--child", String(silos), String(rounds), String(timeoutMs)], { execArgv: process.execArgv, stdio: "inherit" });
    let result: KResult | undefined;
    child.on("message", (m) => (result = m as KResult));
    child.on("error", reject);
    child.on("exit", (code) => (result ? resolvePromise(result) : reject(new Error(`the K = ${silos} run exited with code ${code} without a result`))));
  });
}

async function childMain(argv: string[]): Promise<void> {
  const [silos, rounds, timeoutMs] = argv.map(Number);
  const result: KResult = { silos, rounds, ...(await runK(silos, rounds, timeoutMs)) };
  await new Promise<void>((done) => process.send!(result, () => done()));
}

async function main(): Promise<void> {
  if (process.argv[2] === "--child") return childMain(process.argv.slice(3));
  const options = parseArgs(process.argv.slice(2));
  const load = () =>
    loadavg()
      .map((l) => l.toFixed(1))
      .join(" ");
  console.log(`flo orchestration benchmark: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model ?? "cpu"}, load average ${load()}`);
  const results: (KResult & { baseline: KBaseline })[] = [];
  for (const silos of options.silos) {
    const rounds = silos >= options.largeFrom ? Math.min(options.rounds, options.largeRounds) : options.rounds;
    const result = await runKInChild(silos, rounds, options.timeoutMs);
    const concurrency = result.trainerConcurrency;
    const runs = [await measureSiloBaseline(TRAINER, silos, concurrency), await measureSiloBaseline(TRAINER, silos, concurrency)];
    const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / values.length;
    const meanMs = mean(runs.map((r) => r.wallMs));
    const baseline: KBaseline = {
      concurrency,
      runs,
      meanMs,
      trainersCpuMs: mean(runs.map((r) => r.trainersCpuMs)),
      verdicts: result.timelines.map((t) => roundVerdict(silos, t.wallMs, meanMs)),
    };
    printTable(silos, result.timelines, result.wallMs);
    printBaseline(result, baseline);
    console.log(`load average after K = ${silos}: ${load()}`);
    results.push({ ...result, baseline });
  }
  console.log(
    "\n(a) last job exit of round r -> first job submission of round r+1 (last round: -> federation completed)." +
      `\n(b) ${threadCpu.name} of the round's federation, siloGroup and siloRound orchestrator invocations, each run again alone` +
      "\n    on its recorded payload after the federation. live: during the run, while at least one of them was in flight (overlaps" +
      "\n    counted once): wall time, main-thread CPU (theirs plus other work interleaved at their awaits), CPU of all threads." +
      "\n(c) history events seen by the last replay of the round's federation execution / largest siloGroup / largest siloRound execution.",
  );
  if (options.json) writeFileSync(options.json, JSON.stringify({ node: process.version, cpus: cpus().length, results }, null, 2));
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (err) => {
      console.error(err instanceof BenchOptionsError ? `error: ${err.message}` : err);
      process.exit(1);
    },
  );
}
