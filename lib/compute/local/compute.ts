/**
 * The `local` SiloCompute: runs each silo job as a child process on this machine, following the
 * silo job contract exactly as Azure ML does: inputs downloaded from the model store into the job's
 * folder, placeholders substituted (including `$[[...]]` optional parts), the command run with its
 * stdout/stderr kept as the job log, outputs uploaded, then a local job event (events.ts) with the
 * final state is published to the job-events queue, as Event Grid does for an Azure ML job.
 *
 * Jobs run under a detached runner process (jobRunner.ts, one for all of this host's jobs) that
 * records each job's final state in its folder, so a job survives a restart of the host that
 * submitted it; this side finishes the job (upload + event) once it sees that state, from a
 * monitor loop or from a status() call.
 */
import { JobRunnerProcess } from "./jobRunnerProcess";
import { closeSync, existsSync, fstatSync, lstatSync, mkdirSync, openSync, readFileSync, readSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { confineLocalPath, LocalPathError } from "../../storage/localPaths";
import { renderCommand } from "../commandTemplate";
import type { CallOptions, JobFolderTransfer, JobState, OpenOutputOptions, SiloCompute, SiloJobRequest, SiloJobStatus, SiloOutput } from "../siloCompute";
import { JOB_NAME_PATTERN, METRICS_FILE, MODEL_FILE, TERMINAL_JOB_STATES, jobKindContract, readSiloMetrics } from "../siloCompute";
import { localJobEvent, type LocalJobEvent } from "./events";
import { bindingMismatch, ensurePrivateJobsRoot, jobBindingToken, jobsSecret } from "./jobBinding";
import { jobEnvironment } from "./jobEnv";
import { FINISHED_MARKERS_DIR, finishedMarkerPath, writeJobStatus, writeJsonAtomic, type LocalJobFile, type LocalJobReportFile, type LocalJobStatusFile } from "./jobFiles";

/** Where job completion events go (the job-events queue). */
export interface JobEventPublisher {
  publish(event: LocalJobEvent, options?: CallOptions): Promise<void>;
}

export interface LocalSiloComputeOptions {
  /** Folder holding one sub-folder per job; made private to this host's user (0700). */
  root: string;
  /**
   * The host's environment (its app settings): jobs get only an allow-listed part of it (search
   * path, home, locale, temp folder, time zone; see jobEnv.ts) plus `extraJobEnv`.
   */
  env: Readonly<Record<string, string | undefined>>;
  /** Further host variables jobs get, by name (e.g. PYTHONPATH); never flo's settings or secrets. */
  extraJobEnv?: readonly string[];
  /** Secret binding job folders to this host (default: generated once and kept in the root, 0600). */
  jobsSecret?: string;
  transfer: JobFolderTransfer;
  events: JobEventPublisher;
  /** Relative data/code paths in specs resolve against this folder (default: the process cwd). */
  baseDir?: string;
  /** Folders outside the base folder that code and input paths may name (FLO_LOCAL_ALLOWED_PATHS). */
  allowedRoots?: readonly string[];
  /** How often the monitor looks for finished jobs (ms, default 100); every 25th look reads every pending job's state. */
  monitorIntervalMs?: number;
}

/** Finished jobs the monitor uploads and reports at the same time. */
const FINISH_CONCURRENCY = 16;
/** Every this many monitor ticks, every pending job's status.json is read (not only marked ones). */
const FULL_CHECK_EVERY = 25;
/** Once no job is pending for this long, the runner's input is closed: it exits when its jobs are done. */
const RUNNER_IDLE_MS = 1000;
/** At most this much of a failed job's log travels with its error (into manifests); the whole log is in its log blob. */
export const MAX_LOG_TAIL_BYTES = 2048;

/** A local job that cannot be submitted as asked. */
export class LocalJobError extends Error {
  override readonly name = "LocalJobError";
}

/** The local files masking reads, from the request's inputs (already local paths). */
function maskingFiles(request: SiloJobRequest, inputs: Readonly<Record<string, string>>): NonNullable<LocalJobFile["mask"]> {
  const secure = request.secureAggregation!;
  const need = (name: string) => {
    const value = inputs[name];
    if (value === undefined) throw new LocalJobError(`job ${request.jobName}: secure aggregation needs input ${name}`);
    return value;
  };
  return {
    sessionFile: join(need(secure.sessionInput), secure.sessionFile),
    keyFile: need(secure.keyInput),
    globalModelFile: join(need("global_model"), MODEL_FILE),
    publishMetrics: secure.publishMetrics,
  };
}

/** What a job's folder holds: nothing of this job yet, a job this host submitted, or an untrusted job. */
type JobFolder = { kind: "absent" } | { kind: "trusted"; job: LocalJobFile } | { kind: "untrusted"; reason: string };

export class LocalSiloCompute implements SiloCompute {
  private readonly root: string;
  private readonly baseDir: string;
  private readonly secret: Buffer;
  /** Environment of the runner (the trainers' adds the job's own variables). */
  private readonly runnerEnv: Record<string, string>;
  private readonly finishing = new Map<string, Promise<SiloJobStatus>>();
  /**
   * Jobs the monitor still has to finish: those this instance submitted, plus, from one scan of the
   * root on the first tick, unreported jobs left by an earlier host. A tick costs O(pending jobs),
   * not O(every job folder ever created).
   */
  private readonly pending = new Set<string>();
  private rootScanned = false;
  private ticking = false;
  private ticks = 0;
  private readonly runner: JobRunnerProcess;
  private runnerIdleTimer: NodeJS.Timeout | undefined;
  private readonly monitor: NodeJS.Timeout;

  constructor(private readonly options: LocalSiloComputeOptions) {
    this.root = resolve(options.root);
    this.baseDir = resolve(options.baseDir ?? process.cwd());
    ensurePrivateJobsRoot(this.root);
    this.secret = jobsSecret(this.root, options.jobsSecret);
    this.runnerEnv = jobEnvironment({ host: options.env, extraNames: options.extraJobEnv });
    this.runner = new JobRunnerProcess(this.runnerEnv);
    this.monitor = setInterval(() => void this.finishReadyJobs(), options.monitorIntervalMs ?? 100);
    this.monitor.unref();
  }

  /** Stops the monitor; running jobs go on (as they would on Azure ML). */
  close(): void {
    clearInterval(this.monitor);
    clearTimeout(this.runnerIdleTimer);
    this.runner.close();
  }

  async submit(request: SiloJobRequest, options: CallOptions = {}): Promise<SiloJobStatus> {
    const jobDir = this.jobDir(request.jobName);
    const folder = this.jobFolder(request.jobName);
    // Idempotent: a submit retried after a crash finds the folder it created.
    if (folder.kind === "trusted") return this.status(request.jobName, options);
    if (folder.kind === "untrusted") return untrustedStatus(request.jobName, folder.reason);
    // A folder without job.json holds nothing this host vouches for (a submit that crashed early, or
    // planted files): start it afresh.
    rmSync(jobDir, { recursive: true, force: true });
    mkdirSync(jobDir, { mode: 0o700 });

    const inputs: Record<string, string> = {};
    for (const [name, input] of Object.entries(request.inputs)) {
      if (input.kind === "literal") inputs[name] = this.absolutizeExistingPath(input.value);
      else if (input.kind === "asset") inputs[name] = this.localAssetPath(name, input.path);
      else if (/^https?:\/\//.test(input.uri)) {
        const local = join(jobDir, "inputs", name);
        mkdirSync(local, { recursive: true });
        await this.options.transfer.downloadFolder(input.uri, local, options);
        inputs[name] = local;
      } else inputs[name] = this.localPath(input.uri, `inputs.${name}`);
    }
    const outputName = jobKindContract(request.kind).output;
    const outputDir = join(jobDir, "outputs", outputName);
    mkdirSync(outputDir, { recursive: true });
    let argv: string[];
    try {
      argv = renderCommand(request.command, { inputs, outputs: { [outputName]: outputDir } });
    } catch (err) {
      throw new LocalJobError(`job ${request.jobName}: ${(err as Error).message}`);
    }
    if (argv.length === 0) throw new LocalJobError(`job ${request.jobName}: the command is empty`);
    const cwd = request.code ? this.localPath(request.code, "training.code") : jobDir;
    if (!existsSync(cwd)) throw new LocalJobError(`job ${request.jobName}: code folder ${cwd} does not exist`);

    const job: LocalJobFile = {
      request,
      argv,
      cwd,
      env: this.trainerEnv(request),
      binding: jobBindingToken(this.secret, request.jobName),
      timeoutSeconds: request.timeoutSeconds,
      outputDir,
      createdAt: new Date().toISOString(),
      ...(request.secureAggregation ? { mask: maskingFiles(request, inputs) } : {}),
    };
    writeJsonAtomic(join(jobDir, "job.json"), job);
    writeJobStatus(jobDir, { state: "queued" });
    this.handToRunner(request.jobName, jobDir);
    // No "queued" event: the orchestration acts on final states only, and each event costs a queue
    // message sent, received and deleted, and a function invocation, per silo and round.
    return { jobName: request.jobName, state: "queued", rawStatus: "Queued" };
  }

  /**
   * Hands a queued job to the runner. The runner records its pid in status.json when it starts the
   * job; runner.pid, written first, lets a runner that dies before that (killed, crashed loading) be
   * noticed instead of leaving the job queued forever.
   */
  private handToRunner(jobName: string, jobDir: string): void {
    clearTimeout(this.runnerIdleTimer);
    writeFileSync(join(jobDir, "runner.pid"), String(this.runner.pid()));
    this.runner.start(jobDir);
    this.pending.add(jobName);
  }

  async status(jobName: string, options: CallOptions = {}): Promise<SiloJobStatus> {
    const jobDir = this.jobDir(jobName);
    const folder = this.jobFolder(jobName);
    if (folder.kind === "untrusted") return untrustedStatus(jobName, folder.reason);
    if (folder.kind === "absent") throw new LocalJobError(`job ${jobName} does not exist under ${this.root}`);
    const report = readJson<LocalJobReportFile>(join(jobDir, "reported.json"));
    if (report) return { jobName, state: report.state, rawStatus: report.rawStatus, error: report.error, outputUri: report.outputUri, logUri: report.logUri };
    const status = readJson<LocalJobStatusFile>(join(jobDir, "status.json"));
    if (!status) throw new LocalJobError(`job ${jobName} does not exist under ${this.root}`);
    if (TERMINAL_JOB_STATES.includes(status.state)) return this.finish(jobName, options);
    // runner.pid is written before the job is handed over: without it, the host that submitted the
    // job stopped before handing it to a runner (a crash mid-submit), so no runner ever will.
    if (status.state === "queued" && !existsSync(join(jobDir, "runner.pid"))) this.handToRunner(jobName, jobDir);
    if (runnerDied(jobDir, status)) {
      writeJobStatus(jobDir, {
        ...status,
        state: "failed",
        finishedAt: new Date().toISOString(),
        error: `the job's runner process died before the job ${status.state === "queued" ? "started" : "finished"}`,
      });
      return this.finish(jobName, options);
    }
    return { jobName, state: status.state, rawStatus: rawStatusOf(status.state) };
  }

  async cancel(jobName: string, options: CallOptions = {}): Promise<void> {
    const jobDir = this.jobDir(jobName);
    // The pids in an untrusted folder's status.json could be anyone's processes: never signal them.
    if (this.jobFolder(jobName).kind !== "trusted") return;
    const status = readJson<LocalJobStatusFile>(join(jobDir, "status.json"));
    if (!status || TERMINAL_JOB_STATES.includes(status.state)) return;
    // Recorded before the kill: the runner, seeing its trainer die, keeps a final state already
    // there, so the job reads canceled rather than "trainer killed by SIGKILL". A job still queued
    // is skipped by the runner once it reads the canceled state.
    writeJobStatus(jobDir, { ...status, state: "canceled", finishedAt: new Date().toISOString(), error: "canceled" });
    // The trainer's process group only: the runner serves every other job too.
    if (status.childPid) {
      try {
        process.kill(-status.childPid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    await this.finish(jobName, options);
  }

  async openOutput(outputUri: string, options: OpenOutputOptions = {}): Promise<SiloOutput> {
    const folder = outputUri.replace(/\/*$/, "/");
    const metrics = await readSiloMetrics(this.options.transfer.source(`${folder}${METRICS_FILE}`), options);
    if (options.kind === "evaluate") return { kind: "evaluate", metrics };
    return { kind: "train", model: this.options.transfer.source(`${folder}${MODEL_FILE}`), metrics };
  }

  /** Uploads a finished job's outputs and log, then publishes its final event; once per job. */
  private finish(jobName: string, options: CallOptions): Promise<SiloJobStatus> {
    let pending = this.finishing.get(jobName);
    if (!pending) {
      pending = this.doFinish(jobName, options)
        .then((status) => {
          this.pending.delete(jobName);
          rmSync(finishedMarkerPath(this.jobDir(jobName)), { force: true });
          this.releaseIdleRunner();
          return status;
        })
        .finally(() => this.finishing.delete(jobName));
      this.finishing.set(jobName, pending);
    }
    return pending;
  }

  private async doFinish(jobName: string, options: CallOptions): Promise<SiloJobStatus> {
    const jobDir = this.jobDir(jobName);
    const folder = this.jobFolder(jobName);
    if (folder.kind === "untrusted") return untrustedStatus(jobName, folder.reason);
    const done = readJson<LocalJobReportFile>(join(jobDir, "reported.json"));
    if (done) return { jobName, state: done.state, rawStatus: done.rawStatus, error: done.error, outputUri: done.outputUri, logUri: done.logUri };
    const job = folder.kind === "trusted" ? folder.job : undefined;
    const status = readJson<LocalJobStatusFile>(join(jobDir, "status.json"));
    if (!job || !status) throw new LocalJobError(`job ${jobName} has no job.json/status.json under ${jobDir}`);
    let state: JobState = status.state;
    let error = status.error;
    let outputUri: string | undefined;
    if (state === "completed") {
      const contract = jobKindContract(job.request.kind);
      const missing = (job.request.outputFiles ?? contract.outputFiles).filter((f) => !existsSync(join(job.outputDir, f)));
      if (missing.length) {
        state = "failed";
        error = `the job exited 0 but outputs.${contract.output} lacks ${missing.join(" and ")} (silo job contract)`;
      } else {
        await this.options.transfer.uploadFolder(job.outputDir, job.request.outputUri, options);
        outputUri = job.request.outputUri;
      }
    }
    let logUri: string | undefined;
    if (job.request.logUri && existsSync(join(jobDir, "job.log"))) {
      logUri = job.request.logUri;
      await this.options.transfer.uploadFile(join(jobDir, "job.log"), logUri, options);
    }
    if (error && state === "failed") error = withLogTail(error, join(jobDir, "job.log"));
    const report: LocalJobReportFile = { state, rawStatus: rawStatusOf(state), error, outputUri, logUri, reportedAt: new Date().toISOString() };
    await this.publish(job.request, state, options);
    writeJsonAtomic(join(jobDir, "reported.json"), report);
    return { jobName, state, rawStatus: report.rawStatus, error, outputUri, logUri };
  }

  private async finishReadyJobs(): Promise<void> {
    if (this.ticking) return;
    this.ticking = true;
    try {
      if (!this.rootScanned) {
        for (const name of readdirSync(this.root)) {
          if (JOB_NAME_PATTERN.test(name) && !existsSync(join(this.root, name, "reported.json")) && this.jobFolder(name).kind === "trusted") this.pending.add(name);
        }
        this.rootScanned = true;
      }
      // Runners leave a marker when a job ends, so a tick lists one folder. Every FULL_CHECK_EVERY
      // ticks all pending jobs are read: that finds runners that died, or ended without a marker.
      const full = this.ticks++ % FULL_CHECK_EVERY === 0;
      const candidates = full ? [...this.pending] : finishedMarkers(this.root).filter((name) => this.pending.has(name));
      const ready: string[] = [];
      for (const name of candidates) {
        const jobDir = this.jobDir(name);
        if (existsSync(join(jobDir, "reported.json"))) {
          this.pending.delete(name);
          rmSync(finishedMarkerPath(jobDir), { force: true });
          continue;
        }
        const status = readJson<LocalJobStatusFile>(join(jobDir, "status.json"));
        if (!status) continue;
        if (TERMINAL_JOB_STATES.includes(status.state) || runnerDied(jobDir, status)) ready.push(name);
      }
      // Finished jobs are uploaded and reported side by side: one at a time, the last of K jobs
      // would wait for K uploads. Errors are retried on the next tick or surfaced by status().
      await forEachConcurrently(ready, FINISH_CONCURRENCY, (name) =>
        this.status(name).then(
          () => undefined,
          () => undefined,
        ),
      );
    } catch {
      // The root is unreadable right now: the next tick tries again.
    } finally {
      this.ticking = false;
    }
  }

  /**
   * No process of a finished round lingers: once no job is pending (for RUNNER_IDLE_MS, so the
   * next round's jobs usually find it still there), the runner's input is closed and it exits; the
   * next job starts a new one.
   */
  private releaseIdleRunner(): void {
    if (this.pending.size > 0) return;
    clearTimeout(this.runnerIdleTimer);
    this.runnerIdleTimer = setTimeout(() => {
      if (this.pending.size === 0) this.runner.close();
    }, RUNNER_IDLE_MS);
    this.runnerIdleTimer.unref();
  }

  private async publish(request: SiloJobRequest, state: JobState, options: CallOptions): Promise<void> {
    await this.options.events.publish(localJobEvent({ jobName: request.jobName, state, tags: request.tags }), options);
  }

  /** The runner's allow-listed environment plus the job's own variables (never the host's settings). */
  private trainerEnv(request: SiloJobRequest): Record<string, string> {
    return {
      ...this.runnerEnv,
      FLO_FEDERATION_ID: request.federationId,
      FLO_ROUND: String(request.round),
      FLO_SILO: request.silo,
      FLO_JOB_NAME: request.jobName,
    };
  }

  /**
   * Whether a job's folder is one this host created for this job: a real directory whose job.json
   * carries this host's binding token for the job name. Nothing else in an untrusted folder is read.
   */
  private jobFolder(jobName: string): JobFolder {
    const jobDir = this.jobDir(jobName);
    let isDirectory: boolean;
    try {
      isDirectory = lstatSync(jobDir).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT") return { kind: "absent" };
      throw err;
    }
    const untrusted = (why: string): JobFolder => ({
      kind: "untrusted",
      reason: `job folder ${jobDir} is not trusted: ${why}, so this host did not create it for job ${jobName} (planted, or left by a host with another secret); the job was not run and none of its files were used`,
    });
    if (!isDirectory) return untrusted("it is not a directory");
    const job = readJson<LocalJobFile>(join(jobDir, "job.json"));
    if (!job) return existsSync(join(jobDir, "job.json")) ? untrusted("its job.json is unreadable") : { kind: "absent" };
    const mismatch = bindingMismatch(this.secret, jobName, job.binding);
    return mismatch ? untrusted(mismatch) : { kind: "trusted", job };
  }

  private jobDir(jobName: string): string {
    if (!JOB_NAME_PATTERN.test(jobName)) throw new LocalJobError(`invalid job name ${JSON.stringify(jobName)}`);
    return join(this.root, jobName);
  }

  /** A typed spec input on local compute: a local file or folder (relative to the spec's folder), which must exist. */
  private localAssetPath(name: string, path: string): string {
    if (/^[a-z][a-z0-9+.-]*:/i.test(path) && !/^[a-z]:[\\/]/i.test(path)) {
      throw new LocalJobError(`inputs.${name}.path: expected a local file or folder on local compute, got ${JSON.stringify(path)} (an Azure ML reference)`);
    }
    const local = this.localPath(path, `inputs.${name}.path`);
    if (!existsSync(local)) throw new LocalJobError(`inputs.${name}.path: expected an existing local file or folder, got ${JSON.stringify(path)} (${local} does not exist)`);
    return local;
  }

  /**
   * The trainer runs in its code folder, while specs name silo data relative to the federation's
   * base folder: a literal input naming an existing relative path is passed as an absolute path.
   */
  private absolutizeExistingPath(value: string): string {
    if (!value || isAbsolute(value) || /^[a-z][a-z0-9+.-]*:\/\//i.test(value) || /^[-+]?\d/.test(value)) return value;
    const candidate = resolve(this.baseDir, value);
    return existsSync(candidate) ? candidate : value;
  }

  /** A code or input path of the spec, confined to the base folder and the allowed ones. */
  private localPath(path: string, field: string): string {
    const p = path.startsWith("file://") ? new URL(path).pathname : path;
    try {
      return confineLocalPath(p, { baseDir: this.baseDir, allowedRoots: this.options.allowedRoots }, field);
    } catch (err) {
      if (err instanceof LocalPathError) throw new LocalJobError(err.message);
      throw err;
    }
  }
}

function rawStatusOf(state: JobState): string {
  return { queued: "Queued", running: "Running", completed: "Completed", failed: "Failed", canceled: "Canceled" }[state];
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

function finishedMarkers(root: string): string[] {
  try {
    return readdirSync(join(root, FINISHED_MARKERS_DIR));
  } catch {
    return [];
  }
}

async function forEachConcurrently<T>(items: readonly T[], width: number, run: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await run(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
}

/** A job still queued or running whose runner process is gone. */
function runnerDied(jobDir: string, status: LocalJobStatusFile): boolean {
  if (status.state === "running") return status.runnerPid !== undefined && !isAlive(status.runnerPid);
  if (status.state !== "queued") return false;
  const pid = Number(readFileSafe(join(jobDir, "runner.pid")));
  return Number.isInteger(pid) && pid > 0 && !isAlive(pid);
}

function readFileSafe(path: string): string | undefined {
  try {
    return readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

function untrustedStatus(jobName: string, reason: string): SiloJobStatus {
  return { jobName, state: "failed", rawStatus: "Untrusted", error: reason };
}

/** The error with the last lines of the job's log, at most MAX_LOG_TAIL_BYTES of them. */
function withLogTail(error: string, logPath: string): string {
  let tail: string;
  try {
    const fd = openSync(logPath, "r");
    try {
      const size = fstatSync(fd).size;
      const length = Math.min(size, MAX_LOG_TAIL_BYTES);
      const bytes = Buffer.alloc(length);
      readSync(fd, bytes, 0, length, size - length);
      tail = bytes.toString("utf8").trimEnd();
      // Cut back to a whole line (and a whole character) when the tail starts mid-log.
      if (length < size) tail = tail.slice(tail.indexOf("\n") + 1);
    } finally {
      closeSync(fd);
    }
  } catch {
    return error;
  }
  return tail ? `${error}; log tail:\n${tail}` : error;
}
