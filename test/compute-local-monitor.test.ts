/**
 * The local compute's job monitor: finished jobs (found by their runners' markers) are uploaded and
 * reported once each, several at a time, and jobs an earlier host left unreported are finished by
 * the next one (root scan).
 * Uses the compiled module (dist/, built by `npm test`): it spawns dist's local/jobRunner.js.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { LocalSiloCompute as LocalSiloComputeType } from "../lib/compute/local/compute";
import type { JobFolderTransfer, SiloJobRequest } from "../lib/compute/siloCompute";
import type { LocalJobEvent } from "../lib/compute/local/events";
import { jobBindingToken } from "../lib/compute/local/jobBinding";

const DIST_LOCAL = resolve(__dirname, "..", "dist", "lib", "compute", "local", "compute.js");
const TRAINER_DIR = resolve(__dirname, "..", "bench", "fixtures");

function load(): { LocalSiloCompute: typeof LocalSiloComputeType } {
  if (!existsSync(DIST_LOCAL)) throw new Error(`${DIST_LOCAL} is missing: run \`npm run build\` (npm test does) before this test`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the compiled module in dist/, which spawns its compiled job runner
  return require(DIST_LOCAL);
}

interface Recorder {
  transfer: JobFolderTransfer;
  events: LocalJobEvent[];
  uploads: string[];
}

function recorder(): Recorder {
  const events: LocalJobEvent[] = [];
  const uploads: string[] = [];
  const written = (uri: string) => ({ uri, sha256: "0".repeat(64), size: 0 }) as never;
  return {
    events,
    uploads,
    transfer: {
      source: () => {
        throw new Error("not used");
      },
      downloadFolder: async () => undefined,
      uploadFolder: async (_dir, uri) => {
        uploads.push(uri);
        return [written(uri)];
      },
      uploadFile: async (_file, uri) => {
        uploads.push(uri);
        return written(uri);
      },
    },
  };
}

function request(jobName: string): SiloJobRequest {
  return {
    federationId: "fed",
    round: 1,
    silo: jobName,
    jobName,
    command: "node orchestration-trainer.js --out ${{outputs.model_update}}",
    inputs: {},
    outputUri: `http://store/fed/${jobName}/`,
    logUri: `http://store/fed/${jobName}.log`,
    code: TRAINER_DIR,
    timeoutSeconds: 60,
    tags: {},
  };
}

const JOBS_SECRET = "monitor-test-secret";

const statusesOf = (events: LocalJobEvent[], job: string) => events.filter((e) => e.jobName === job).map((e) => e.state);

async function until(check: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

let root: string;
beforeEach(() => {
  root = mkdtempSync(join(tmpdir(), "flo-local-monitor-"));
});
afterEach(() => rmSync(root, { recursive: true, force: true }));

it("reports every finished job exactly once, uploads included, when several finish together", async () => {
  const { LocalSiloCompute } = load();
  const rec = recorder();
  const compute = new LocalSiloCompute({ root, env: process.env, jobsSecret: JOBS_SECRET, transfer: rec.transfer, events: { publish: async (e) => void rec.events.push(e) }, monitorIntervalMs: 30 });
  try {
    const jobs = ["job-a", "job-b", "job-c", "job-d", "job-e"];
    await Promise.all(jobs.map((j) => compute.submit(request(j))));
    await until(() => jobs.every((j) => existsSync(join(root, j, "reported.json"))), "every job to be reported");
    // A few more ticks: nothing is reported twice.
    await new Promise((r) => setTimeout(r, 200));
    for (const j of jobs) {
      expect(statusesOf(rec.events, j)).toEqual(["completed"]);
      expect(rec.uploads.filter((u) => u.includes(j))).toEqual([`http://store/fed/${j}/`, `http://store/fed/${j}.log`]);
      expect(await compute.status(j)).toMatchObject({ state: "completed", outputUri: `http://store/fed/${j}/` });
    }
    // The runner's finished markers are gone once their jobs are reported.
    expect(readdirSync(join(root, ".finished"))).toEqual([]);
    // One runner process started every job (each job costs one process, its trainer).
    const runnerPids = new Set(jobs.flatMap((j) => [readFileSync(join(root, j, "runner.pid"), "utf8"), String(JSON.parse(readFileSync(join(root, j, "status.json"), "utf8")).runnerPid)]));
    expect(runnerPids.size).toBe(1);
    // With nothing left pending the runner is released and exits: no process of a finished round lingers.
    const runnerPid = Number([...runnerPids][0]);
    await until(() => {
      try {
        process.kill(runnerPid, 0);
        return false;
      } catch {
        return true;
      }
    }, "the idle runner to exit");
    // The next job starts a new runner.
    await compute.submit(request("job-f"));
    await until(() => existsSync(join(root, "job-f", "reported.json")), "the next job to be reported");
    expect(Number(readFileSync(join(root, "job-f", "runner.pid"), "utf8"))).not.toBe(runnerPid);
  } finally {
    compute.close();
  }
});

it("a new host's monitor finishes jobs an earlier host left unreported, and only those", async () => {
  const { LocalSiloCompute } = load();
  const first = recorder();
  // The first host never ticks (its monitor interval is an hour): its jobs finish unreported.
  const before = new LocalSiloCompute({
    root,
    env: process.env,
    jobsSecret: JOBS_SECRET,
    transfer: first.transfer,
    events: { publish: async (e) => void first.events.push(e) },
    monitorIntervalMs: 3_600_000,
  });
  await before.submit(request("left-behind"));
  await before.submit(request("already-reported"));
  const finished = (job: string) => {
    try {
      return JSON.parse(readFileSync(join(root, job, "status.json"), "utf8")).state === "completed";
    } catch {
      return false;
    }
  };
  await until(() => finished("left-behind") && finished("already-reported"), "both jobs to finish");
  expect((await before.status("already-reported")).state).toBe("completed");
  before.close();
  expect(statusesOf(first.events, "left-behind")).toEqual([]);

  const second = recorder();
  const after = new LocalSiloCompute({
    root,
    env: process.env,
    jobsSecret: JOBS_SECRET,
    transfer: second.transfer,
    events: { publish: async (e) => void second.events.push(e) },
    monitorIntervalMs: 30,
  });
  try {
    await until(() => existsSync(join(root, "left-behind", "reported.json")), "the left-behind job to be reported");
    await new Promise((r) => setTimeout(r, 200));
    expect(statusesOf(second.events, "left-behind")).toEqual(["completed"]);
    expect(statusesOf(second.events, "already-reported")).toEqual([]);
  } finally {
    after.close();
  }
});

it("fails a queued job whose runner died before starting it, instead of leaving it queued", async () => {
  const { LocalSiloCompute } = load();
  const { spawnSync } = await import("node:child_process");
  const { mkdirSync, writeFileSync } = await import("node:fs");
  // A pid that existed and is gone: a process that already exited (and was reaped).
  const gone = spawnSync(process.execPath, ["-e", "0"]).pid;
  const jobDir = join(root, "never-started");
  mkdirSync(join(jobDir, "outputs", "model_update"), { recursive: true });
  const job = {
    request: { ...request("never-started"), logUri: undefined },
    argv: ["node", "x.js"],
    cwd: jobDir,
    env: {},
    binding: jobBindingToken(JOBS_SECRET, "never-started"),
    timeoutSeconds: 60,
    outputDir: join(jobDir, "outputs", "model_update"),
    createdAt: new Date().toISOString(),
  };
  writeFileSync(join(jobDir, "job.json"), JSON.stringify(job));
  writeFileSync(join(jobDir, "status.json"), JSON.stringify({ state: "queued" }));
  writeFileSync(join(jobDir, "runner.pid"), String(gone));

  const rec = recorder();
  const compute = new LocalSiloCompute({ root, env: process.env, jobsSecret: JOBS_SECRET, transfer: rec.transfer, events: { publish: async (e) => void rec.events.push(e) }, monitorIntervalMs: 30 });
  try {
    await until(() => existsSync(join(jobDir, "reported.json")), "the job to be reported");
    expect(statusesOf(rec.events, "never-started")).toEqual(["failed"]);
    expect(await compute.status("never-started")).toMatchObject({ state: "failed", error: "the job's runner process died before the job started" });
  } finally {
    compute.close();
  }
});

it("a queued job whose host stopped before handing it to a runner (no runner.pid) is handed over by the next host and runs once", async () => {
  const { LocalSiloCompute } = load();
  // What a host killed mid-submit leaves: the job written and queued, never handed to a runner.
  const jobDir = join(root, "never-handed");
  const outputDir = join(jobDir, "outputs", "model_update");
  const runs = join(root, "never-handed.runs");
  mkdirSync(outputDir, { recursive: true });
  const job = {
    request: request("never-handed"),
    // The instant trainer, counting its runs in a file.
    argv: [
      "node",
      "-e",
      `require("fs").appendFileSync(${JSON.stringify(runs)}, "run\\n"); process.argv.splice(1, 0, "-"); require(${JSON.stringify(join(TRAINER_DIR, "orchestration-trainer.js"))})`,
      "--",
      "--out",
      outputDir,
    ],
    cwd: TRAINER_DIR,
    env: { PATH: process.env.PATH },
    binding: jobBindingToken(JOBS_SECRET, "never-handed"),
    timeoutSeconds: 60,
    outputDir,
    createdAt: new Date().toISOString(),
  };
  writeFileSync(join(jobDir, "job.json"), JSON.stringify(job));
  writeFileSync(join(jobDir, "status.json"), JSON.stringify({ state: "queued" }));

  const rec = recorder();
  const compute = new LocalSiloCompute({ root, env: process.env, jobsSecret: JOBS_SECRET, transfer: rec.transfer, events: { publish: async (e) => void rec.events.push(e) }, monitorIntervalMs: 30 });
  try {
    // The restarted orchestration's retried submit (or its status poll) finds the job and hands it over.
    expect(await compute.submit(request("never-handed"))).toMatchObject({ state: "queued" });
    expect(await compute.status("never-handed")).toMatchObject({ state: expect.stringMatching(/^(queued|running|completed)$/) });
    await until(() => existsSync(join(jobDir, "reported.json")), "the job to be reported");
    expect({ events: statusesOf(rec.events, "never-handed"), log: readFileSync(join(jobDir, "job.log"), "utf8") }).toEqual({ events: ["completed"], log: "" });
    expect(await compute.status("never-handed")).toMatchObject({ state: "completed", outputUri: "http://store/fed/never-handed/" });
    // Handed over by submit, and again if the status call found it still queued: started once.
    await new Promise((r) => setTimeout(r, 300));
    expect(readFileSync(runs, "utf8")).toBe("run\n");
  } finally {
    compute.close();
  }
});

it("the runner skips a job canceled before it got to it, runs the next, and exits once its input closes and its jobs are done", async () => {
  const runnerScript = resolve(__dirname, "..", "dist", "lib", "compute", "local", "jobRunner.js");
  const job = (name: string, status: string) => {
    const dir = join(root, name);
    mkdirSync(join(dir, "out"), { recursive: true });
    const argv = ["node", join(TRAINER_DIR, "orchestration-trainer.js"), "--out", join(dir, "out")];
    writeFileSync(
      join(dir, "job.json"),
      JSON.stringify({
        request: request(name),
        argv,
        cwd: TRAINER_DIR,
        env: { PATH: process.env.PATH },
        binding: "",
        timeoutSeconds: 60,
        outputDir: join(dir, "out"),
        createdAt: new Date().toISOString(),
      }),
    );
    writeFileSync(join(dir, "status.json"), JSON.stringify({ state: status }));
    return dir;
  };
  const canceled = job("job-canceled", "canceled");
  const queued = job("job-queued", "queued");
  const runner = spawn(process.execPath, [runnerScript], { stdio: ["pipe", "ignore", "inherit"] });
  const exited = new Promise<number | null>((done) => runner.on("exit", (code) => done(code)));
  runner.stdin.write(`${canceled}\n${queued}\n`);
  runner.stdin.end();
  expect(await exited).toBe(0);
  expect(JSON.parse(readFileSync(join(canceled, "status.json"), "utf8"))).toEqual({ state: "canceled" });
  expect(existsSync(join(canceled, "job.log"))).toBe(false);
  expect(JSON.parse(readFileSync(join(queued, "status.json"), "utf8"))).toMatchObject({ state: "completed", exitCode: 0, runnerPid: runner.pid });
  expect(existsSync(join(queued, "out", "model.safetensors"))).toBe(true);
  // The host reports a job it canceled itself: only the job the runner ran is marked finished.
  expect(readdirSync(join(root, ".finished"))).toEqual(["job-queued"]);
});
