/**
 * A supervisor that restarts `npx flo host` at once after a SIGKILL: the killed process may still be a
 * zombie (not yet reaped) when the new one checks the Azurite lock, and a zombie holds nothing. Also the
 * lock's liveness rule itself (zombie, reused pid). Needs dist/ (`npm test` builds first).
 */
import { spawn, type ChildProcess } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { lockOwnerAlive, readProcessStat, startAzurite } from "../lib/storage/azurite";
import { poll, whenHostStarted, type HostProcess } from "./helpers/hostProcess";

const ROOT = path.join(__dirname, "..");
const APP = path.join(__dirname, "apps", "host-sigkill", "index.js");
const KEY = "restart-test-key";
const MASTER = "restart-test-master-key";

const groups: ChildProcess[] = [];
afterEach(() => {
  for (const child of groups.splice(0)) {
    try {
      process.kill(-child.pid!, "SIGKILL");
    } catch {
      // already gone
    }
  }
});

/** `npx flo host ...` in its own process group (like a service manager runs it). */
function startWithNpx(dataDir: string): Promise<HostProcess> {
  const child = spawn("npx", ["flo", "host", APP, "--port", "0", "--data", dataDir], {
    cwd: ROOT,
    env: { ...process.env, FLO_FUNCTION_KEY: KEY, FLO_MASTER_KEY: MASTER },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  groups.push(child);
  return whenHostStarted(child, "npx flo host");
}

async function status(url: string, id: string): Promise<{ runtimeStatus: string; output: unknown }> {
  const res = await fetch(`${url}/runtime/webhooks/durabletask/instances/${id}`, { headers: { "x-functions-key": MASTER } });
  if (res.status !== 200 && res.status !== 202) throw new Error(`status of ${id}: HTTP ${res.status} ${await res.text()}`);
  return (await res.json()) as { runtimeStatus: string; output: unknown };
}

async function startInstance(url: string, id: string, steps: number): Promise<void> {
  const res = await fetch(`${url}/api/start/${id}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ steps, seed: 42 }) });
  if (res.status !== 202) throw new Error(`start ${id}: HTTP ${res.status} ${await res.text()}`);
}

/** The app's chain, computed directly: acc = (acc * 31 + step * 7 + 3) mod 1000003 from the seed. */
function expectedChain(steps: number, seed: number): { steps: number; acc: number; trail: number[] } {
  let acc = seed;
  const trail: number[] = [];
  for (let step = 0; step < steps; step++) {
    acc = (acc * 31 + step * 7 + 3) % 1000003;
    trail.push(acc);
  }
  return { steps, acc, trail };
}

test("a lock owner that is a zombie, or whose start time differs from the lock's, is not alive", async () => {
  // `sleep 0` exits at once; its parent (exec'd into `sleep 30`) never reaps it: a zombie.
  const parent = spawn("sh", ["-c", "sleep 0 & echo $!; exec sleep 30"], { stdio: ["ignore", "pipe", "ignore"] });
  try {
    const zombiePid = Number(await new Promise<string>((resolve) => parent.stdout.once("data", (c: Buffer) => resolve(c.toString().trim()))));
    await poll("the child to become a zombie", async () => (readProcessStat(zombiePid)?.state === "Z" ? true : undefined), 5000);
    expect(lockOwnerAlive(zombiePid, undefined)).toBe(false);
    const own = readProcessStat(process.pid)!;
    expect(lockOwnerAlive(process.pid, own.startTime)).toBe(true);
    expect(lockOwnerAlive(parent.pid!, readProcessStat(parent.pid!)!.startTime)).toBe(true);
    expect(lockOwnerAlive(parent.pid!, String(Number(readProcessStat(parent.pid!)!.startTime) - 1))).toBe(false); // pid reused
    // A lock left by the zombie is taken over at once.
    const location = fs.mkdtempSync(path.join(os.tmpdir(), "flo-zombie-lock-"));
    fs.writeFileSync(path.join(location, "flo-azurite.lock"), `${zombiePid}:start=${readProcessStat(zombiePid)!.startTime}:0:0`);
    const azurite = await startAzurite({ location });
    await azurite.stop();
    fs.rmSync(location, { recursive: true, force: true });
  } finally {
    parent.kill("SIGKILL");
  }
});

test("a lock whose owner exits within a few seconds (still tearing down after a kill) is taken over once it is gone", async () => {
  const owner = spawn("sleep", ["0.6"], { stdio: "ignore" });
  const location = fs.mkdtempSync(path.join(os.tmpdir(), "flo-exiting-lock-"));
  try {
    fs.writeFileSync(path.join(location, "flo-azurite.lock"), `${owner.pid}:start=${readProcessStat(owner.pid!)!.startTime}:0:0`);
    const started = Date.now();
    const azurite = await startAzurite({ location });
    expect(Date.now() - started).toBeGreaterThanOrEqual(300); // it waited for the owner
    expect(owner.exitCode ?? owner.signalCode).not.toBeNull();
    await azurite.stop();
  } finally {
    owner.kill("SIGKILL");
    fs.rmSync(location, { recursive: true, force: true });
  }
});

test("a lock whose owner stays alive is refused after the wait, naming the owner", async () => {
  const owner = spawn("sleep", ["30"], { stdio: "ignore" });
  const location = fs.mkdtempSync(path.join(os.tmpdir(), "flo-held-lock-"));
  try {
    const lockPath = path.join(location, "flo-azurite.lock");
    fs.writeFileSync(lockPath, `${owner.pid}:start=${readProcessStat(owner.pid!)!.startTime}:0:0`);
    await expect(startAzurite({ location })).rejects.toThrow(`Azurite location ${location} is in use by process ${owner.pid} (lock file ${lockPath})`);
  } finally {
    owner.kill("SIGKILL");
    fs.rmSync(location, { recursive: true, force: true });
  }
});

test("`npx flo host` killed with SIGKILL (process group) and restarted at once, 10 times: it comes up every time, instances intact", async () => {
  if (!fs.existsSync(path.join(ROOT, "dist", "lib", "cli", "host.js"))) throw new Error("dist/ is missing: run `npm run build` (npm test does it first)");
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "flo-restart-"));
  try {
    let host = await startWithNpx(dataDir);
    await startInstance(host.url, "short-1", 2);
    const short = await poll("short-1 to complete", async () => {
      const s = await status(host.url, "short-1");
      return s.runtimeStatus === "Completed" ? s : undefined;
    });
    expect(short.output).toEqual(expectedChain(2, 42));
    await startInstance(host.url, "long-1", 30);
    for (let cycle = 1; cycle <= 10; cycle++) {
      process.kill(-host.child.pid!, "SIGKILL");
      await new Promise<void>((resolve) => (host.child.exitCode !== null || host.child.signalCode !== null ? resolve() : host.child.once("exit", () => resolve())));
      host = await startWithNpx(dataDir); // at once: no delay, no manual step
      expect((await status(host.url, "short-1")).output).toEqual(expectedChain(2, 42));
      expect(["Pending", "Running", "Completed"]).toContain((await status(host.url, "long-1")).runtimeStatus);
    }
    const long = await poll("long-1 to complete", async () => {
      const s = await status(host.url, "long-1");
      return s.runtimeStatus === "Completed" || s.runtimeStatus === "Failed" ? s : undefined;
    });
    expect(long).toMatchObject({ runtimeStatus: "Completed", output: expectedChain(30, 42) });
    process.kill(-host.child.pid!, "SIGTERM");
    await new Promise((resolve) => host.child.once("exit", resolve));
  } finally {
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}, 300_000);
