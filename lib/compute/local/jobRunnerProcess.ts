/**
 * The host's side of the job runner (jobRunner.ts): one detached runner process, started on the
 * first job and again only if it goes away, that is handed each job's folder on its stdin. One
 * process start per host instead of one per job: a Node start costs ~50 ms of CPU, as much as an
 * instant trainer, so a runner per job doubled the processes of a round of K local jobs.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { join } from "node:path";

/** The runner could not be started or handed a job. */
export class JobRunnerError extends Error {
  override readonly name = "JobRunnerError";
}

const RUNNER_SCRIPT = join(__dirname, "jobRunner.js");

export class JobRunnerProcess {
  private child?: ChildProcess;

  /** @param env exactly the runner's environment (allow-listed: it never holds the host's settings or secrets). */
  constructor(private readonly env: Readonly<Record<string, string>>) {}

  /** The pid of the runner the next job goes to, starting one when none is running. */
  pid(): number {
    return this.ensureRunner().pid!;
  }

  /** Hands a job folder (job.json and status.json written) to the runner; returns the runner's pid. */
  start(jobDir: string): number {
    if (jobDir.includes("\n")) throw new JobRunnerError(`job folder ${JSON.stringify(jobDir)}: expected a path without line breaks`);
    const child = this.ensureRunner();
    child.stdin!.write(`${jobDir}\n`);
    return child.pid!;
  }

  /** Closes the runner's input: it finishes the jobs it started, then exits. */
  close(): void {
    const child = this.child;
    this.child = undefined;
    child?.stdin?.end();
  }

  private ensureRunner(): ChildProcess {
    if (this.child) return this.child;
    // Detached: its own process group, so it (and the jobs) outlive the host and a signal to the
    // host's group does not reach them.
    const child = spawn(process.execPath, [RUNNER_SCRIPT], { detached: true, stdio: ["pipe", "ignore", "ignore"], env: { ...this.env } });
    if (child.pid === undefined) throw new JobRunnerError(`could not start the job runner ${RUNNER_SCRIPT}`);
    const forget = () => {
      if (this.child === child) this.child = undefined;
    };
    child.on("exit", forget);
    child.on("error", forget);
    // A runner that died leaves a broken pipe: the next job starts a new runner, and the jobs it
    // held are found by their dead runner pid (LocalSiloCompute's runnerDied).
    child.stdin.on("error", forget);
    // The host exits when its own work is done: neither the runner nor its idle input pipe keeps it alive.
    child.unref();
    this.child = child;
    return child;
  }
}
