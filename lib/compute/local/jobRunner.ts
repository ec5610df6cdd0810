/**
 * The local silo job runner: one detached process per host (not per job) that starts the jobs the
 * host hands it, so each job costs one process, its trainer. Jobs outlive the host that submitted
 * them, as an Azure ML job outlives the Functions host: when the host goes away (its end of stdin
 * closes) the runner finishes the jobs it started and then exits. For each job it runs the
 * already-rendered command in the job folder, keeps stdout/stderr as the job's log, applies the job
 * timeout, and records the final state atomically in `status.json`. It touches no storage: the host
 * side (LocalSiloCompute) uploads the outputs and emits the completion event once it sees the
 * final state.
 *
 * Usage: node jobRunner.js, then one job folder per line on stdin.
 */
import { spawn } from "node:child_process";
import { closeSync, openSync, readFileSync } from "node:fs";
import { setPriority } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { TERMINAL_JOB_STATES } from "../siloCompute";
import { markJobFinished, writeJobStatus, type LocalJobFile, type LocalJobStatusFile } from "./jobFiles";

/**
 * Local jobs stand in for remote compute: on one machine they must not starve the host that
 * orchestrates them (its event handling, storage and episodes), so the runner and the trainers it
 * starts run at a lower CPU priority. They still use every idle core.
 */
const JOB_NICENESS = 10;
/** After a cancel or timeout's SIGTERM, the trainer's group gets this long before SIGKILL. */
const KILL_GRACE_MS = 5000;

/** Trainer process groups of the jobs still running, so a signal to the runner reaches them. */
const runningGroups = new Set<number>();
let inputEnded = false;

function main(): void {
  try {
    setPriority(JOB_NICENESS);
  } catch {
    // not permitted here: run at normal priority
  }
  const lines = createInterface({ input: process.stdin });
  lines.on("line", (line) => {
    const jobDir = line.trim();
    if (!jobDir) return;
    try {
      runJob(jobDir);
    } catch {
      // The job's folder could not be written (removed, disk full): that job stays queued until
      // its round's deadline, and the runner goes on serving the other jobs.
    }
  });
  lines.on("close", () => {
    inputEnded = true;
    exitWhenIdle();
  });
  // Stopping the runner stops every job it started.
  for (const sig of ["SIGTERM", "SIGINT"] as const) {
    process.on(sig, () => {
      for (const pid of runningGroups) killGroup(pid, sig);
      process.exit(1);
    });
  }
}

function exitWhenIdle(): void {
  if (inputEnded && runningGroups.size === 0) process.exit(0);
}

function readStatus(jobDir: string): LocalJobStatusFile | undefined {
  try {
    return JSON.parse(readFileSync(join(jobDir, "status.json"), "utf8")) as LocalJobStatusFile;
  } catch {
    return undefined;
  }
}

function runJob(jobDir: string): void {
  const startedAt = new Date().toISOString();
  const base: LocalJobStatusFile = { state: "running", runnerPid: process.pid, startedAt };
  let job: LocalJobFile;
  let logFd: number;
  try {
    // Canceled while it waited for the runner, or handed over twice (a host that crashed mid-submit
    // hands it again): started only once.
    const state = readStatus(jobDir)?.state ?? "queued";
    if (state === "running" || TERMINAL_JOB_STATES.includes(state)) return;
    job = JSON.parse(readFileSync(join(jobDir, "job.json"), "utf8")) as LocalJobFile;
    logFd = openSync(join(jobDir, "job.log"), "a");
  } catch (err) {
    writeFinal(jobDir, { ...base, state: "failed", finishedAt: new Date().toISOString(), error: `the runner could not read the job: ${(err as Error).message}` });
    return;
  }
  const [program, ...args] = job.argv;
  let child;
  try {
    // The trainer writes its log straight to the file, and runs in its own process group so a
    // timeout or cancel stops everything it started.
    child = spawn(program === "node" ? process.execPath : program, args, { cwd: job.cwd, env: job.env, stdio: ["ignore", logFd, logFd], detached: true });
  } catch (err) {
    // One job's bad command must not take the runner (and every other job) down.
    writeFinal(jobDir, { ...base, state: "failed", finishedAt: new Date().toISOString(), error: `could not start ${program}: ${(err as Error).message}` });
    return;
  } finally {
    closeSync(logFd);
  }
  const pid = child.pid;
  if (pid !== undefined) {
    runningGroups.add(pid);
    writeJobStatus(jobDir, { ...base, childPid: pid });
  }

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(pid, "SIGTERM");
    setTimeout(() => killGroup(pid, "SIGKILL"), KILL_GRACE_MS).unref();
  }, job.timeoutSeconds * 1000);

  let done = false;
  const finish = (final: LocalJobStatusFile) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    if (pid !== undefined) runningGroups.delete(pid);
    writeFinal(jobDir, final);
    exitWhenIdle();
  };
  child.on("error", (err) => finish({ ...base, state: "failed", finishedAt: new Date().toISOString(), error: `could not start ${program}: ${err.message}` }));
  child.on("exit", (code, signal) => {
    const finishedAt = new Date().toISOString();
    if (timedOut) finish({ ...base, childPid: pid, state: "failed", finishedAt, exitCode: code, error: `job timed out after ${job.timeoutSeconds} s` });
    else if (code === 0 && job.mask) {
      // Secure aggregation: only the masked update and encrypted shares may be uploaded.
      // Loaded only for secure jobs: plain jobs do not pay for the secagg modules.
      import("../../secagg/siloJob")
        .then(({ maskTrainingOutput }) => maskTrainingOutput({ ...job.mask!, outputDir: job.outputDir }))
        .then(
          () => finish({ ...base, childPid: pid, state: "completed", finishedAt: new Date().toISOString(), exitCode: 0 }),
          (err: Error) => finish({ ...base, childPid: pid, state: "failed", finishedAt: new Date().toISOString(), exitCode: 0, error: `masking the trainer's output failed: ${err.message}` }),
        );
    } else if (code === 0) finish({ ...base, childPid: pid, state: "completed", finishedAt, exitCode: 0 });
    else finish({ ...base, childPid: pid, state: "failed", finishedAt, exitCode: code, error: signal ? `trainer killed by ${signal}` : `trainer exited with code ${code}` });
  });
}

/** Records the job's final state, unless the host already did (a cancel). */
function writeFinal(jobDir: string, final: LocalJobStatusFile): void {
  const current = readStatus(jobDir);
  if (!current || !TERMINAL_JOB_STATES.includes(current.state)) writeJobStatus(jobDir, final);
  markJobFinished(jobDir);
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

if (require.main === module) main();
