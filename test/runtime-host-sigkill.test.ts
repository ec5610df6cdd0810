/**
 * `flo host` as a child process. (1) Start a long-ish orchestration, SIGKILL the host mid-way, restart
 * it on the same --data folder, and the instance completes with the same output as an
 * uninterrupted run. (2) The foreign app runs on the CLI unchanged. Needs dist/ (`npm test` builds first).
 */
import { spawn, type ChildProcess } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { poll, whenHostStarted, type HostProcess } from "./helpers/hostProcess";

const ROOT = path.join(__dirname, "..");
const CLI = path.join(ROOT, "bin", "flo.js");
const APP = path.join(__dirname, "apps", "host-sigkill", "index.js");
const KEY = "sigkill-test-key";
// Fixed so the status URLs (which carry the master key) stay valid across the restart.
const MASTER_KEY = "sigkill-test-master-key";

type Started = HostProcess;
const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

function startHost(dataDir: string, app = APP, extraArgs: string[] = []): Promise<Started> {
  const child = spawn(process.execPath, [CLI, "host", app, "--port", "0", "--data", dataDir, ...extraArgs], {
    cwd: ROOT,
    env: { ...process.env, FLO_FUNCTION_KEY: KEY, FLO_MASTER_KEY: MASTER_KEY },
    stdio: ["ignore", "pipe", "pipe"],
  });
  children.push(child);
  return whenHostStarted(child);
}

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
}

async function startInstance(url: string, id: string): Promise<string> {
  const res = await fetch(`${url}/api/start/${id}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ steps: 12, seed: 42 }) });
  if (res.status !== 202) throw new Error(`start ${id}: HTTP ${res.status} ${await res.text()}`);
  return ((await res.json()) as { statusQueryGetUri: string }).statusQueryGetUri;
}

async function statusOf(statusUri: string): Promise<{ runtimeStatus: string; output: unknown; customStatus: { done?: number } | null }> {
  const res = await fetch(statusUri);
  return (await res.json()) as { runtimeStatus: string; output: unknown; customStatus: { done?: number } | null };
}

const rebase = (statusUri: string, url: string): string => url + new URL(statusUri).pathname + new URL(statusUri).search;

test("SIGKILL mid-orchestration, restart on the same --data: the instance completes with the uninterrupted output", async () => {
  if (!fs.existsSync(path.join(ROOT, "dist", "lib", "cli", "host.js"))) throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "flo-sigkill-"));
  try {
    const first = await startHost(dataDir);
    // the func-start-like banner: routes with URLs, the management URL; a configured key is never printed
    expect(first.output()).toContain(`start: [POST] ${first.url}/api/start/{instanceId}`);
    expect(first.output()).toContain(`Durable management API: ${first.url}/runtime/webhooks/durabletask`);
    expect(first.output()).not.toContain(KEY);
    expect(first.output()).not.toContain(MASTER_KEY);
    const statusUri = await startInstance(first.url, "killed-1");
    await poll("2 steps done before the kill", async () => {
      const s = await statusOf(statusUri);
      return (s.customStatus?.done ?? 0) >= 2 ? s : undefined;
    });
    first.child.kill("SIGKILL");
    expect(await exited(first.child)).toEqual({ code: null, signal: "SIGKILL" });

    const second = await startHost(dataDir);
    const resumedUri = rebase(statusUri, second.url);
    const afterRestart = await statusOf(resumedUri);
    expect(afterRestart.runtimeStatus).not.toBe("Completed"); // it really was interrupted
    const referenceUri = await startInstance(second.url, "reference-1");
    const resumed = await poll("resumed instance completes", async () => {
      const s = await statusOf(resumedUri);
      return s.runtimeStatus === "Completed" || s.runtimeStatus === "Failed" ? s : undefined;
    });
    const reference = await poll("reference instance completes", async () => {
      const s = await statusOf(referenceUri);
      return s.runtimeStatus === "Completed" || s.runtimeStatus === "Failed" ? s : undefined;
    });
    expect(reference.runtimeStatus).toBe("Completed");
    expect(resumed.runtimeStatus).toBe("Completed");
    expect(resumed.output).toEqual(reference.output);
    expect((resumed.output as { trail: number[] }).trail).toHaveLength(12);

    second.child.kill("SIGTERM");
    const stop = await exited(second.child);
    expect(stop).toEqual({ code: 0, signal: null });
    expect(second.output()).toContain("Host stopped.");
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}, 180_000);

test("the foreign app runs on `flo host` unchanged (HTTP starter + status over HTTP); SIGINT stops it with exit 0", async () => {
  if (!fs.existsSync(path.join(ROOT, "dist", "lib", "cli", "host.js"))) throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "flo-foreign-"));
  try {
    const host = await startHost(dataDir, path.join(__dirname, "apps", "foreign-app", "index.js"), [
      "--storage",
      "memory",
      "--settings",
      path.join(__dirname, "apps", "foreign-app", "cli.settings.json"),
    ]);
    expect(host.output()).toContain(`httpStart: [POST] ${host.url}/api/orchestrators/{orchestratorName}/{instanceId?}`);
    const res = await fetch(`${host.url}/api/orchestrators/fanOutFanIn/cli-1`, { method: "POST", headers: { "content-type": "application/json" }, body: "4" });
    expect(res.status).toBe(202);
    const { statusQueryGetUri } = (await res.json()) as { statusQueryGetUri: string };
    const done = await poll("fan-out completes", async () => {
      const s = await statusOf(statusQueryGetUri);
      return s.runtimeStatus === "Completed" ? s : undefined;
    });
    expect(done.output).toEqual({ count: 4, sum: 30 });
    host.child.kill("SIGINT");
    expect(await exited(host.child)).toEqual({ code: 0, signal: null });
    expect(host.output()).toContain("SIGINT: stopping");
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}, 120_000);
