/**
 * Trust boundaries around local jobs, attacked as a trainer or a local user would:
 * - a real trainer reads its own environment and its runner's (/proc/$PPID/environ) and finds none
 *   of the host's keys, connection strings or identity endpoints (they are set to canary values);
 * - job folders planted in the jobs folder before a federation starts (another federation's
 *   "completed" job, or a leftover of a host with another secret) are never trusted: that attempt
 *   fails with the reason, the next attempt trains, and the model is the honest one;
 * - the jobs folder is private (0700), the host secret is kept 0600, and a submit retried after a
 *   crash still finds its own folder;
 * - a trainer's stderr stays in the job's log blob; the error (and so the manifest) keeps a bounded
 *   tail; partner notifications carry no log text.
 * Real `flo host` child processes and the compiled job runner; needs dist/ (`npm test` builds first).
 */
import { createHmac } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { LocalJobEvent } from "../../lib/compute/local/events";
import type { LocalSiloCompute as LocalSiloComputeType } from "../../lib/compute/local/compute";
import { JobEnvError, parseExtraJobEnvNames } from "../../lib/compute/local/jobEnv";
import type { JobFolderTransfer, SiloJobRequest } from "../../lib/compute/siloCompute";
import { toNotificationInput } from "../../lib/federation/notify";
import { ModelStore } from "../../lib/models/store";
import type { RoundManifest } from "../../lib/federation/manifest";
import { expectedToyModel, finished, FUNCTION_KEY, MASTER_KEY, readToyModel, startFloHost, TOY_TEAM, toySpec, writeToyData, type FloHost } from "../helpers/flo";

const DIST_LOCAL = resolve(__dirname, "..", "..", "dist", "lib", "compute", "local", "compute.js");

function loadCompiled(): { LocalSiloCompute: typeof LocalSiloComputeType; MAX_LOG_TAIL_BYTES: number } {
  if (!existsSync(DIST_LOCAL)) throw new Error(`${DIST_LOCAL} is missing: run \`npm run build\` (npm test does) before this test`);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the compiled module, which spawns its compiled job runner
  return require(DIST_LOCAL);
}

async function until<T>(what: string, check: () => T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const hmac = (secret: string, jobName: string) => createHmac("sha256", secret).update(jobName).digest("hex");

describe("a trainer looking for the host's secrets", () => {
  const CANARIES = {
    IDENTITY_ENDPOINT: "http://127.0.0.1:9/canary-identity-endpoint",
    IDENTITY_HEADER: "canary-identity-header",
    MSI_SECRET: "canary-msi-secret",
    UNLISTED_HOST_VARIABLE: "canary-unlisted",
  };
  let flo: FloHost;
  let dump: { own: Record<string, string>; parent: string[]; parentCommand: string[] };

  beforeAll(async () => {
    flo = await startFloHost({ env: { ...CANARIES, PYTHONPATH: "/opt/declared-extra" }, settings: { FLO_LOCAL_JOB_ENV: "PYTHONPATH" } });
    const code = join(flo.dir, "spy");
    mkdirSync(code);
    writeFileSync(
      join(code, "spy-trainer.js"),
      [
        `const fs = require("fs");`,
        `const environ = (pid, file) => fs.readFileSync("/proc/" + pid + "/" + file, "utf8").split("\\0").filter(Boolean);`,
        `fs.writeFileSync(process.argv[2], JSON.stringify({ own: process.env, parent: environ(process.ppid, "environ"), parentCommand: environ(process.ppid, "cmdline") }));`,
      ].join("\n"),
    );
    const dumpPath = join(flo.dir, "dump.json");
    const res = await flo.start({
      name: "spy",
      rounds: 1,
      silos: [{ name: "east", compute: { type: "local" } }],
      training: { command: `node spy-trainer.js ${dumpPath} \${{outputs.model_update}}`, code },
      policy: { minSilos: 1, roundTimeout: "PT1M", jobRetries: 0 },
    });
    expect(res.status).toBe(202);
    await flo.waitFor("spy", finished, 45_000);
    dump = JSON.parse(readFileSync(dumpPath, "utf8"));
  }, 90_000);
  afterAll(async () => {
    await flo?.stop();
  });

  it("reads its runner's environment (the process that started it)", () => {
    expect(dump.parentCommand.some((arg) => arg.endsWith("jobRunner.js"))).toBe(true);
  });

  it("finds no key, connection string or identity endpoint in its own environment or its runner's", () => {
    const secrets = [FUNCTION_KEY, MASTER_KEY, flo.storageConnectionString, ...Object.values(CANARIES)];
    const ownEntries = Object.entries(dump.own).map(([k, v]) => `${k}=${v}`);
    for (const entries of [ownEntries, dump.parent]) {
      expect(entries.filter((entry) => secrets.some((secret) => entry.includes(secret)) || /AccountKey=|SharedAccessKey=/i.test(entry))).toEqual([]);
      expect(entries.map((entry) => entry.split("=")[0]).filter((name) => /^(AzureWebJobs|IDENTITY_|MSI_|ServiceBusConnection)/i.test(name))).toEqual([]);
      expect(entries.some((entry) => entry.startsWith("PATH="))).toBe(true);
    }
    // The runner has no flo variable at all; the trainer only its job's own.
    expect(dump.parent.filter((entry) => entry.startsWith("FLO_"))).toEqual([]);
    expect(
      Object.keys(dump.own)
        .filter((name) => name.startsWith("FLO_"))
        .sort(),
    ).toEqual(["FLO_FEDERATION_ID", "FLO_JOB_NAME", "FLO_ROUND", "FLO_SILO"]);
    expect(dump.own.FLO_JOB_NAME).toBe("flo-spy-r1-east");
    // What the host declares for jobs (FLO_LOCAL_JOB_ENV) does reach them.
    expect(dump.own.PYTHONPATH).toBe("/opt/declared-extra");
  });
});

describe("job folders planted before a federation starts", () => {
  let flo: FloHost;
  let store: ModelStore;
  let jobs: string;
  const planted = {
    state: "completed",
    rawStatus: "Completed",
    outputUri: "http://127.0.0.1:10000/devstoreaccount1/flo/federations/other/rounds/1/updates/east/",
    reportedAt: "2026-01-01T00:00:00.000Z",
  };
  const foreignJob = (jobName: string, binding?: string) => ({
    request: { federationId: "planted", round: 1, silo: jobName, jobName, command: "true", inputs: {}, outputUri: planted.outputUri, timeoutSeconds: 60, tags: {} },
    argv: ["true"],
    cwd: "/",
    env: {},
    ...(binding ? { binding } : {}),
    timeoutSeconds: 60,
    outputDir: "/nonexistent",
    createdAt: planted.reportedAt,
  });

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "flo-planted-"));
    jobs = join(dir, "jobs");
    // The jobs folder as a shared /tmp/flo-jobs was: readable and listable by everyone.
    mkdirSync(jobs, { mode: 0o755 });
    const plant = (jobName: string, binding?: string) => {
      mkdirSync(join(jobs, jobName));
      writeFileSync(join(jobs, jobName, "job.json"), JSON.stringify(foreignJob(jobName, binding)));
      writeFileSync(join(jobs, jobName, "reported.json"), JSON.stringify(planted));
    };
    plant("flo-planted-r1-east");
    plant("flo-planted-r1-west", hmac("a previous host's secret", "flo-planted-r1-west"));
    writeToyData(dir, TOY_TEAM);
    flo = await startFloHost({ dir });
    store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
    const res = await flo.start(toySpec("planted", TOY_TEAM, { rounds: 1, policy: { minSilos: 3, roundTimeout: "PT1M", jobRetries: 1 } }));
    expect(res.status).toBe(202);
  }, 60_000);
  afterAll(async () => {
    await flo?.stop();
  });

  it("fails the attempt whose folder was planted, with the reason; the next attempt trains and the model is the honest one", async () => {
    const status = await flo.waitFor("planted", finished, 60_000);
    expect(status.runtimeStatus).toBe("Completed");
    const manifest = await store.getJson<RoundManifest>("federations/planted/rounds/1/manifest.json");
    const attempts = (silo: string) => manifest.silos.find((s) => s.silo === silo)!.attempts.map((a) => ({ jobName: a.jobName, state: a.state, error: a.error }));
    expect(attempts("east")).toEqual([
      {
        jobName: "flo-planted-r1-east",
        state: "failed",
        error: expect.stringMatching(/^job folder \S+flo-planted-r1-east is not trusted: its job\.json carries no binding token, so this host did not create it/),
      },
      { jobName: "flo-planted-r1-east-a2", state: "completed", error: undefined },
    ]);
    expect(attempts("west")).toEqual([
      { jobName: "flo-planted-r1-west", state: "failed", error: expect.stringContaining("is not trusted: its binding token does not match this host's secret") },
      { jobName: "flo-planted-r1-west-a2", state: "completed", error: undefined },
    ]);
    expect(attempts("north")).toEqual([{ jobName: "flo-planted-r1-north", state: "completed", error: undefined }]);
    const model = readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
    const expected = expectedToyModel(TOY_TEAM, 1);
    model.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  }, 70_000);

  it("never ran, rewrote or reported the planted jobs", () => {
    for (const jobName of ["flo-planted-r1-east", "flo-planted-r1-west"]) {
      expect(JSON.parse(readFileSync(join(jobs, jobName, "reported.json"), "utf8"))).toEqual(planted);
      expect(existsSync(join(jobs, jobName, "job.log"))).toBe(false);
      expect(existsSync(join(jobs, jobName, "status.json"))).toBe(false);
    }
  });

  it("keeps the jobs folder private (0700) and its generated secret 0600, and binds each job folder to it", () => {
    expect(statSync(jobs).mode & 0o777).toBe(0o700);
    const secretFile = join(jobs, ".jobs-secret");
    expect(statSync(secretFile).mode & 0o777).toBe(0o600);
    const secret = readFileSync(secretFile, "utf8").trim();
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    const job = JSON.parse(readFileSync(join(jobs, "flo-planted-r1-north", "job.json"), "utf8")) as { binding: string; env: Record<string, string> };
    expect(job.binding).toBe(hmac(secret, "flo-planted-r1-north"));
    // The job's recorded environment holds no host secret either.
    expect(Object.keys(job.env).filter((name) => /^(AzureWebJobs|FLO_(?!FEDERATION_ID|ROUND|SILO|JOB_NAME))/.test(name))).toEqual([]);
  });
});

describe("the local compute on its own (compiled runner)", () => {
  let root: string;
  let code: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "flo-jobs-unit-"));
    code = mkdtempSync(join(tmpdir(), "flo-jobs-code-"));
    writeFileSync(join(code, "noisy.js"), `process.stderr.write(("secret-ish line " + "x".repeat(60) + "\\n").repeat(200) + "LAST LINE\\n"); process.exit(2);`);
    writeFileSync(join(code, "sleepy.js"), `setTimeout(() => undefined, 60000);`);
  });
  afterEach(() => {
    rmSync(root, { recursive: true, force: true });
    rmSync(code, { recursive: true, force: true });
  });

  function recorder(): { transfer: JobFolderTransfer; events: LocalJobEvent[]; logs: Map<string, string> } {
    const events: LocalJobEvent[] = [];
    const logs = new Map<string, string>();
    const written = (uri: string) => ({ uri, sha256: "0".repeat(64), size: 0 }) as never;
    return {
      events,
      logs,
      transfer: {
        source: () => {
          throw new Error("not used");
        },
        downloadFolder: async () => undefined,
        uploadFolder: async (_dir, uri) => [written(uri)],
        uploadFile: async (file, uri) => {
          logs.set(uri, readFileSync(file, "utf8"));
          return written(uri);
        },
      },
    };
  }

  const request = (jobName: string, script: string): SiloJobRequest => ({
    federationId: "fed",
    round: 1,
    silo: "east",
    jobName,
    command: `node ${script} \${{outputs.model_update}}`,
    inputs: {},
    outputUri: `http://store/fed/${jobName}/`,
    logUri: `http://store/fed/${jobName}.log`,
    code,
    timeoutSeconds: 60,
    tags: {},
  });

  it("attack: a code folder or input path outside the base folder is refused by name (FLO_LOCAL_ALLOWED_PATHS lets one in)", async () => {
    const { LocalSiloCompute } = loadCompiled();
    const rec = recorder();
    const compute: LocalSiloComputeType = new LocalSiloCompute({
      root,
      baseDir: code,
      env: process.env,
      transfer: rec.transfer,
      events: { publish: async (e) => void rec.events.push(e) },
      monitorIntervalMs: 3_600_000,
    });
    try {
      await expect(compute.submit({ ...request("flo-fed-r1-root", "x.js"), code: "/" })).rejects.toThrow(/^training\.code: local path "\/" is outside the base folder .*FLO_LOCAL_ALLOWED_PATHS/);
      await expect(compute.submit({ ...request("flo-fed-r1-etc", "x.js"), inputs: { data: { kind: "folder", uri: "file:///etc" } } })).rejects.toThrow(
        /^inputs\.data: local path "\/etc" is outside the base folder/,
      );
      await expect(compute.submit({ ...request("flo-fed-r1-up", "x.js"), code: "../" })).rejects.toThrow(/^training\.code: local path "\.\.\/" is outside the base folder/);
    } finally {
      compute.close();
    }
    const allowed: LocalSiloComputeType = new LocalSiloCompute({
      root,
      baseDir: root,
      allowedRoots: [code],
      env: process.env,
      transfer: rec.transfer,
      events: { publish: async (e) => void rec.events.push(e) },
      monitorIntervalMs: 3_600_000,
    });
    try {
      expect((await allowed.submit(request("flo-fed-r1-allowed", "sleepy.js"))).state).not.toBe("failed");
      await allowed.cancel("flo-fed-r1-allowed");
    } finally {
      allowed.close();
    }
  });

  it("a submit retried after the host restarts finds its own folder: one job, one runner", async () => {
    const { LocalSiloCompute } = loadCompiled();
    const first = recorder();
    const before: LocalSiloComputeType = new LocalSiloCompute({
      root,
      baseDir: code,
      env: process.env,
      transfer: first.transfer,
      events: { publish: async (e) => void first.events.push(e) },
      monitorIntervalMs: 3_600_000,
    });
    await before.submit(request("flo-fed-r1-east", "sleepy.js"));
    before.close();
    const createdAt = (JSON.parse(readFileSync(join(root, "flo-fed-r1-east", "job.json"), "utf8")) as { createdAt: string }).createdAt;

    const second = recorder();
    const after: LocalSiloComputeType = new LocalSiloCompute({
      root,
      baseDir: code,
      env: process.env,
      transfer: second.transfer,
      events: { publish: async (e) => void second.events.push(e) },
      monitorIntervalMs: 3_600_000,
    });
    try {
      const again = await after.submit(request("flo-fed-r1-east", "sleepy.js"));
      expect(["queued", "running"]).toContain(again.state);
      expect(second.events).toEqual([]);
      expect((JSON.parse(readFileSync(join(root, "flo-fed-r1-east", "job.json"), "utf8")) as { createdAt: string }).createdAt).toBe(createdAt);
      await after.cancel("flo-fed-r1-east");
      expect((await after.status("flo-fed-r1-east")).state).toBe("canceled");
    } finally {
      after.close();
    }
  });

  it("does not follow a job folder planted as a symbolic link, and refuses to pass host secrets on as extra job variables", async () => {
    const { LocalSiloCompute } = loadCompiled();
    const elsewhere = mkdtempSync(join(tmpdir(), "flo-jobs-elsewhere-"));
    symlinkSync(elsewhere, join(root, "flo-fed-r1-link"));
    const rec = recorder();
    const compute: LocalSiloComputeType = new LocalSiloCompute({
      root,
      baseDir: code,
      env: process.env,
      transfer: rec.transfer,
      events: { publish: async (e) => void rec.events.push(e) },
      monitorIntervalMs: 3_600_000,
    });
    try {
      const status = await compute.submit(request("flo-fed-r1-link", "sleepy.js"));
      expect(status).toMatchObject({ state: "failed", rawStatus: "Untrusted", error: expect.stringContaining("is not trusted: it is not a directory") });
      expect(readdirSync(elsewhere)).toEqual([]);
      expect(rec.events).toEqual([]);
    } finally {
      compute.close();
      rmSync(elsewhere, { recursive: true, force: true });
    }
    expect(() => parseExtraJobEnvNames("FLO_LOCAL_JOB_ENV", "PYTHONPATH, FLO_FUNCTION_KEY")).toThrow(
      'FLO_LOCAL_JOB_ENV: expected names of host variables jobs may read, got "FLO_FUNCTION_KEY", which is a host setting or secret and never reaches a job',
    );
    for (const name of ["AzureWebJobsStorage", "IDENTITY_HEADER", "MSI_SECRET", "MY_API_TOKEN"]) expect(() => parseExtraJobEnvNames("FLO_LOCAL_JOB_ENV", name)).toThrow(JobEnvError);
    expect(parseExtraJobEnvNames("FLO_LOCAL_JOB_ENV", " PYTHONPATH ,CUDA_VISIBLE_DEVICES,")).toEqual(["PYTHONPATH", "CUDA_VISIBLE_DEVICES"]);
  });

  it("keeps the trainer's whole stderr in the log blob and only a bounded tail in the error", async () => {
    const { LocalSiloCompute, MAX_LOG_TAIL_BYTES } = loadCompiled();
    const rec = recorder();
    const compute: LocalSiloComputeType = new LocalSiloCompute({
      root,
      baseDir: code,
      env: process.env,
      transfer: rec.transfer,
      events: { publish: async (e) => void rec.events.push(e) },
      monitorIntervalMs: 30,
    });
    try {
      await compute.submit(request("flo-fed-r1-noisy", "noisy.js"));
      await until("the job to be reported", () => (existsSync(join(root, "flo-fed-r1-noisy", "reported.json")) ? true : undefined));
      const status = await compute.status("flo-fed-r1-noisy");
      expect(status.state).toBe("failed");
      const [reason, tail] = status.error!.split("; log tail:\n");
      expect(reason).toBe("trainer exited with code 2");
      expect(tail.endsWith("LAST LINE")).toBe(true);
      expect(Buffer.byteLength(tail)).toBeLessThanOrEqual(MAX_LOG_TAIL_BYTES);
      expect(Buffer.byteLength(tail)).toBeGreaterThan(MAX_LOG_TAIL_BYTES - 100);
      // The tail starts at a whole line.
      expect(tail.startsWith("secret-ish line ")).toBe(true);
      const log = rec.logs.get("http://store/fed/flo-fed-r1-noisy.log")!;
      expect(log.split("\n").filter((line) => line.startsWith("secret-ish line"))).toHaveLength(200);
    } finally {
      compute.close();
    }
  });
});

describe("partner notifications", () => {
  it("carry no log text, even when the round summary's exclusions do", () => {
    const logText = "Traceback: the trainer's stderr";
    const summary = {
      round: 1,
      model: { uri: "http://store/global.safetensors", sha256: "a".repeat(64), size: 1 },
      manifestUri: "http://store/manifest.json",
      included: ["west"],
      excluded: [{ silo: "east", reason: `1 attempt(s) failed; last: job flo-x-r1-east failed: trainer exited with code 1; log tail:\n${logText}` }],
      metrics: { loss: 0.5 },
      globalMetrics: {},
      startedAt: "2026-01-01T00:00:00.000Z",
      aggregatedAt: "2026-01-01T00:01:00.000Z",
    };
    for (const type of ["round-completed", "federation-completed"] as const) {
      const notification = JSON.stringify(toNotificationInput({ type, federationId: "x", round: 1, summary }));
      expect(notification).toContain(summary.model.sha256);
      expect(notification).not.toContain(logText);
    }
  });
});
