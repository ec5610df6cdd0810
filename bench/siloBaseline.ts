/**
 * The orchestration benchmark's anchor: the cost of K instant trainer processes alone. It runs K
 * `node orchestration-trainer.js --global <dir> --out <dir>` processes with at most C running at
 * once, C being the most trainers that ran at once during the federation (from the jobs' start and
 * exit times), with the environment local jobs get, from a process at the local job runner's
 * niceness (the trainers inherit it, as they do from the runner), and times the first start to the
 * last exit. No storage, no events, no
 * orchestration: what a round would cost if flo added nothing.
 */
import { fork, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { jobEnvironment } from "../lib/compute/local/jobEnv";

/** The local job runner's niceness (lib/compute/local/jobRunner.ts), which its trainers inherit. */
const JOB_NICENESS = 10;
const BASELINE_FLAG = "--silo-baseline";

/** Round time over the baseline that a K must stay within; undefined when the benchmark sets none for K. */
export function roundTarget(silos: number): number | undefined {
  if (silos >= 1000) return 2;
  if (silos >= 100) return 1.5;
  return undefined;
}

export interface RoundVerdict {
  ratio: number;
  target?: number;
  /** undefined when there is no target for this K. */
  met?: boolean;
}

export function roundVerdict(silos: number, roundWallMs: number, baselineMs: number): RoundVerdict {
  if (!(baselineMs > 0)) throw new Error(`baselineMs: expected a positive duration, got ${baselineMs}`);
  const ratio = roundWallMs / baselineMs;
  const target = roundTarget(silos);
  return target === undefined ? { ratio } : { ratio, target, met: ratio <= target };
}

/** One line per verdict: "4.10 s = 1.28x the baseline (target <= 1.5x: met)". */
export function describeVerdict(roundWallMs: number, verdict: RoundVerdict): string {
  const target = verdict.target === undefined ? "no target for this K" : `target <= ${verdict.target}x: ${verdict.met ? "met" : "MISSED"}`;
  return `${(roundWallMs / 1000).toFixed(2)} s = ${verdict.ratio.toFixed(2)}x the baseline (${target})`;
}

/** The most intervals [start, end) that overlap at one instant (0 for none). */
export function peakConcurrency(intervals: readonly { start: number; end: number }[]): number {
  const edges = intervals.flatMap((i) => [
    { at: i.start, delta: 1 },
    { at: i.end, delta: -1 },
  ]);
  // At equal times an end comes before a start: a job that starts as another ends does not overlap it.
  edges.sort((a, b) => a.at - b.at || a.delta - b.delta);
  let running = 0;
  let peak = 0;
  for (const edge of edges) {
    running += edge.delta;
    peak = Math.max(peak, running);
  }
  return peak;
}

/** A model the trainers copy, as they copy the global model in rounds after the first. */
function writeGlobalModel(dir: string): void {
  let header = JSON.stringify({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } });
  while ((8 + header.length) % 8 !== 0) header += " ";
  const bytes = Buffer.alloc(8 + header.length + 16);
  bytes.writeBigUInt64LE(BigInt(header.length), 0);
  bytes.write(header, 8, "utf8");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "model.safetensors"), bytes);
}

/**
 * CPU time (user + system, ms) of a process (`utime` + `stime` of /proc/<pid>/stat) and of its
 * reaped children (`cutime` + `cstime`): for the baseline's process and for the local job runner,
 * the children are their trainers. Linux reports them in USER_HZ ticks (100 a second), so each
 * process's figure is rounded to 10 ms.
 */
export function processCpu(pid: number | "self"): { ownMs: number; childrenMs: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // Fields after the command name (which may hold spaces), counted from field 3 (state).
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const [utime, stime, cutime, cstime] = [14, 15, 16, 17].map((field) => Number(fields[field - 3]));
  if (![utime, stime, cutime, cstime].every(Number.isFinite)) throw new Error(`/proc/${pid}/stat: expected numeric CPU times, got ${JSON.stringify(stat)}`);
  return { ownMs: (utime + stime) * 10, childrenMs: (cutime + cstime) * 10 };
}

export interface BaselineRun {
  wallMs: number;
  /** CPU time of the K trainers together (Linux; NaN elsewhere). */
  trainersCpuMs: number;
}

/** In the baseline's own process: starts the K trainers and resolves with the first start -> last exit, in ms. */
async function spawnTrainers(trainer: string, silos: number, concurrency: number): Promise<BaselineRun> {
  try {
    setPriority(JOB_NICENESS);
  } catch {
    // not permitted here: as the runner, run at normal priority
  }
  const dir = mkdtempSync(join(tmpdir(), "flo-bench-baseline-"));
  try {
    const globalDir = join(dir, "global");
    writeGlobalModel(globalDir);
    const runTrainer = (i: number) =>
      new Promise<void>((resolve, reject) => {
        const out = join(dir, `out-${i}`);
        const child = spawn(process.execPath, [trainer, "--global", globalDir, "--out", out], { stdio: "ignore", env });
        child.on("error", reject);
        child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`baseline trainer ${i} exited with code ${code}`))));
      });
    // The environment local jobs get (jobEnv.ts): the host's own can make every Node start dearer
    // (NODE_EXTRA_CA_CERTS, for one, costs each process ~50 ms of CPU to load the certificates).
    const env = jobEnvironment({ host: process.env });
    let next = 0;
    const lane = async () => {
      while (next < silos) await runTrainer(next++);
    };
    const cpuBefore = readProcessCpu("self").childrenMs;
    const started = performance.now();
    await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, silos)) }, lane));
    const wallMs = performance.now() - started;
    const trainersCpuMs = readProcessCpu("self").childrenMs - cpuBefore;
    // Every trainer did its work: its update is the global model's bytes.
    const expected = readFileSync(join(globalDir, "model.safetensors"));
    for (let i = 0; i < silos; i++) {
      if (!readFileSync(join(dir, `out-${i}`, "model.safetensors")).equals(expected)) throw new Error(`baseline trainer ${i} wrote a different update`);
    }
    return { wallMs, trainersCpuMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** processCpu, or NaNs where /proc is missing (not Linux) or the process is gone. */
export function readProcessCpu(pid: number | "self"): { ownMs: number; childrenMs: number } {
  try {
    return processCpu(pid);
  } catch {
    return { ownMs: NaN, childrenMs: NaN };
  }
}

/** Runs the baseline for K trainers, at most `concurrency` at once, in a fresh process. */
export function measureSiloBaseline(trainer: string, silos: number, concurrency: number): Promise<BaselineRun> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [BASELINE_FLAG, trainer, String(silos), String(concurrency)], { stdio: "inherit" });
    let run: BaselineRun | undefined;
    child.on("message", (m) => (run = m as BaselineRun));
    child.on("error", reject);
    child.on("exit", (code) => (run !== undefined ? resolve(run) : reject(new Error(`the K = ${silos} baseline exited with code ${code} without a result`))));
  });
}

if (require.main === module && process.argv[2] === BASELINE_FLAG) {
  spawnTrainers(process.argv[3], Number(process.argv[4]), Number(process.argv[5])).then(
    (run) => process.send!(run, () => process.exit(0)),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
