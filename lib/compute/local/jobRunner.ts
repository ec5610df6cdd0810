/**
 * The local silo job runner: a detached process per job, so a job outlives the host that submitted
 * it, as an Azure ML job outlives the Functions host. It runs the already-rendered command in the
 * job folder, keeps stdout/stderr as the job's log, applies the job timeout, and records the final
 * state atomically in `status.json`. It touches no storage: the host side (LocalSiloCompute) uploads
 * the outputs and emits the completion event once it sees the final state.
 *
 * Usage: node jobRunner.js <jobDir>
 */
import { spawn } from "node:child_process";
import { createWriteStream, readFileSync } from "node:fs";
import { setPriority } from "node:os";
import { join } from "node:path";
import { markJobFinished, writeJobStatus, type LocalJobFile, type LocalJobStatusFile } from "./jobFiles";

/**
 * Local jobs stand in for remote compute: on one machine they must not starve the host that
 * orchestrates them (its event handling, storage and episodes), so the runner and the trainer it
 * starts run at a lower CPU priority. They still use every idle core.
 */
const JOB_NICENESS = 10;

function main(jobDir: string): void {
  try {
    setPriority(JOB_NICENESS);
  } catch {
    // not permitted here: run at normal priority
  }
  const job = JSON.parse(readFileSync(join(jobDir, "job.json"), "utf8")) as LocalJobFile;
  const log = createWriteStream(join(jobDir, "job.log"), { flags: "a" });
  const startedAt = new Date().toISOString();
  const base: LocalJobStatusFile = { state: "running", runnerPid: process.pid, startedAt };
  const [program, ...args] = job.argv;
  // The trainer runs in its own process group so a timeout or cancel stops everything it started.
  const child = spawn(program === "node" ? process.execPath : program, args, {
    cwd: job.cwd,
    env: job.env,
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  writeJobStatus(jobDir, { ...base, childPid: child.pid });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    killGroup(child.pid, "SIGTERM");
    setTimeout(() => killGroup(child.pid, "SIGKILL"), 5000).unref();
  }, job.timeoutSeconds * 1000);

  const finish = (final: LocalJobStatusFile) => {
    clearTimeout(timer);
    log.end(() => {
      writeJobStatus(jobDir, final);
      markJobFinished(jobDir);
      process.exit(0);
    });
  };
  child.on("error", (err) => finish({ ...base, state: "failed", finishedAt: new Date().toISOString(), error: `could not start ${program}: ${err.message}` }));
  child.on("exit", (code, signal) => {
    const finishedAt = new Date().toISOString();
    if (timedOut) finish({ ...base, state: "failed", finishedAt, exitCode: code, error: `job timed out after ${job.timeoutSeconds} s` });
    else if (code === 0 && job.mask) {
      // Secure aggregation: only the masked update and encrypted shares may be uploaded.
      // Loaded only for secure jobs: plain jobs' runners do not pay for the secagg modules.
      import("../../secagg/siloJob")
        .then(({ maskTrainingOutput }) => maskTrainingOutput({ ...job.mask!, outputDir: job.outputDir }))
        .then(
          () => finish({ ...base, state: "completed", finishedAt: new Date().toISOString(), exitCode: 0 }),
          (err: Error) => finish({ ...base, state: "failed", finishedAt: new Date().toISOString(), exitCode: 0, error: `masking the trainer's output failed: ${err.message}` }),
        );
    } else if (code === 0) finish({ ...base, state: "completed", finishedAt, exitCode: 0 });
    else finish({ ...base, state: "failed", finishedAt, exitCode: code, error: signal ? `trainer killed by ${signal}` : `trainer exited with code ${code}` });
  });
  // Cancellation signals the runner; pass it on to the trainer's group.
  for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => killGroup(child.pid, sig));
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (!pid) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

if (require.main === module) main(process.argv[2]);
