/**
 * Jest helpers for end-to-end federation tests: flo's compiled Functions app (dist/, built by
 * `npm test`) on the embedded local host, toy silo data, and API calls with the function key.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { QueueClient } from "@azure/storage-queue";
import { restartablePort } from "../../lib/runtime/restartablePort";
import { startAzurite, type AzuriteHandle } from "../../lib/storage/azurite";
import { AzuriteQueueTransport, storageQueueName } from "../../lib/messaging/azuriteTransport";
import type { OutgoingServiceBusMessage, ReceivedServiceBusMessage } from "../../lib/messaging/message";

export const APP_ENTRY = resolve(__dirname, "..", "..", "dist", "functions", "index.js");
/** Test fixtures (trainers) live outside each test's base folder: hosts allow this folder explicitly. */
export const FIXTURES_DIR = resolve(__dirname, "..", "fixtures");
export const TOY_TRAINER_DIR = resolve(FIXTURES_DIR, "trainers");
export const FLO_BIN = resolve(__dirname, "..", "..", "bin", "flo.js");

export function requireBuild(): void {
  if (!existsSync(APP_ENTRY)) throw new Error(`${APP_ENTRY} is missing: run \`npm run build\` (npm test does) before these tests`);
}

export interface ToySilo {
  name: string;
  target: number[];
  n: number;
  /** toy-trainer behaviours: fail, nan, no-metrics, bad-shape, sleep:<ms>, fail-if:<file> */
  behavior?: string;
}

/** The toy federation most end-to-end tests run: three silos with different targets and sizes. */
export const TOY_TEAM: readonly ToySilo[] = [
  { name: "east", target: [1, 1, 1, 1], n: 100 },
  { name: "west", target: [3, 3, 3, 3], n: 300 },
  { name: "north", target: [2, 0, 2, 0], n: 100 },
];

/** Writes each silo's data folder (target.json) under `dir/data/<silo>`. */
export function writeToyData(dir: string, silos: readonly ToySilo[]): void {
  for (const s of silos) {
    mkdirSync(join(dir, "data", s.name), { recursive: true });
    writeFileSync(join(dir, "data", s.name, "target.json"), JSON.stringify({ target: s.target, n: s.n, behavior: s.behavior }));
  }
}

export function toySpec(name: string, silos: readonly ToySilo[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name,
    rounds: 3,
    silos: silos.map((s) => ({ name: s.name, compute: { type: "local" }, inputs: { data: `data/${s.name}` } })),
    training: {
      command: "node toy-trainer.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}} --data ${{inputs.data}} --round ${{inputs.round}}",
      code: TOY_TRAINER_DIR,
    },
    policy: { minSilos: silos.length, roundTimeout: "PT1M" },
    ...extra,
  };
}

/**
 * The federation a toy spec produces, computed directly: every silo moves the global model
 * halfway to its target, FedAvg weights the moves by n.
 */
export function expectedToyModel(silos: readonly ToySilo[], rounds: number, included: (round: number, silo: string) => boolean = () => true): number[] {
  let w = [0, 0, 0, 0];
  for (let r = 1; r <= rounds; r++) {
    const parts = silos.filter((s) => included(r, s.name));
    const total = parts.reduce((a, s) => a + s.n, 0);
    w = w.map((v, i) => parts.reduce((acc, s) => acc + s.n * Math.fround(v + 0.5 * (s.target[i] - v)), 0) / total);
    w = w.map(Math.fround);
  }
  return w;
}

export interface FloHost {
  /** `http://127.0.0.1:<port>` */
  url: string;
  dir: string;
  /** The storage account the host uses (an Azurite this helper started): read blobs and queues here. */
  storageConnectionString: string;
  /** The host process's output so far (stdout + stderr), for failure messages. */
  logs: string[];
  api(path: string, init?: RequestInit): Promise<Response>;
  /** A call to the Durable management API (`<url>/runtime/webhooks/durabletask/<path>`) with the master key. */
  management(path: string, init?: RequestInit): Promise<Response>;
  json<T = any>(path: string, init?: RequestInit): Promise<{ status: number; body: T }>;
  start(spec: unknown, query?: string): Promise<{ status: number; body: any }>;
  waitFor(id: string, done: (status: any) => boolean, timeoutMs?: number): Promise<any>;
  /** Sends a message to a queue of the host's embedded Service Bus transport. */
  send(queue: string, message: OutgoingServiceBusMessage): Promise<void>;
  /** Messages currently in a queue nobody consumes (e.g. `<queue>-rejected`), oldest first. */
  peek(queue: string, max?: number): Promise<ReceivedServiceBusMessage[]>;
  /** SIGKILLs the host process (its silo jobs go on, as they would on Azure ML). */
  kill(): Promise<void>;
  /** Starts the host again on the same data, port and storage. */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

export const FUNCTION_KEY = "e2e-test-function-key";
/** The host's master key: the Durable management API (`/runtime/webhooks/durabletask/...`) requires it. */
export const MASTER_KEY = "e2e-test-master-key";

export interface StartFloHostOptions {
  dir?: string;
  /** Settings over the defaults below; an undefined value removes that default. */
  settings?: Record<string, string | undefined>;
  /** An Azurite the caller owns (default: one started for this host, stopped with it). */
  azurite?: AzuriteHandle;
  /** Extra environment for the host process (e.g. a managed identity endpoint, which the SDK reads from the environment). */
  env?: Record<string, string>;
  /** How long `stop()` waits after SIGTERM before it SIGKILLs the host (default 15 s); the host log then says so. */
  stopGraceMs?: number;
}

/**
 * flo's compiled app on a `flo host` child process, as a user runs it: real HTTP, real signals,
 * storage in an Azurite this helper starts (so tests can read blobs and queues, and the host can
 * be killed and restarted on the same data).
 */
export async function startFloHost(options: StartFloHostOptions = {}): Promise<FloHost> {
  requireBuild();
  const dir = options.dir ?? mkdtempSync(join(tmpdir(), "flo-e2e-"));
  const azurite = options.azurite ?? (await startAzurite({}));
  const ownsAzurite = !options.azurite;
  const port = await restartablePort(); // the host is restarted on it
  const settingsFile = join(dir, "local.settings.json");
  writeFileSync(
    settingsFile,
    JSON.stringify({
      IsEncrypted: false,
      Values: {
        AzureWebJobsStorage: azurite.connectionString,
        FLO_LOCAL_COMPUTE: "enabled",
        FLO_LOCAL_JOBS_DIR: join(dir, "jobs"),
        FLO_LOCAL_BASE_DIR: dir,
        FLO_LOCAL_ALLOWED_PATHS: FIXTURES_DIR,
        ...options.settings,
      },
    }),
  );
  const logs: string[] = [];
  let child: ChildProcess | undefined;
  const launch = async (): Promise<void> => {
    const proc = spawn(process.execPath, [FLO_BIN, "host", APP_ENTRY, "--port", String(port), "--data", join(dir, "host"), "--settings", settingsFile], {
      env: { ...process.env, ...options.env, FLO_FUNCTION_KEY: FUNCTION_KEY, FLO_MASTER_KEY: MASTER_KEY },
      stdio: ["ignore", "pipe", "pipe"],
    });
    child = proc;
    await new Promise<void>((ready, fail) => {
      const onData = (chunk: Buffer) => {
        for (const line of chunk.toString().split("\n")) {
          if (!line.trim()) continue;
          logs.push(line);
          if (line.includes("Host started at")) ready();
        }
      };
      proc.stdout.on("data", onData);
      proc.stderr.on("data", onData);
      proc.once("exit", (code, signal) => fail(new Error(`flo host exited (${code ?? signal}) before it started:\n${logs.slice(-30).join("\n")}`)));
    });
  };
  await launch();
  const url = `http://127.0.0.1:${port}`;
  const transport = new AzuriteQueueTransport({ connectionString: azurite.connectionString, maxDeliveryCount: 10, lockDurationMs: 30_000, maxAutoLockRenewalDurationMs: 60_000 });
  const api = (path: string, init?: RequestInit) => fetch(`${url}/api/${path}`, { ...init, headers: { "x-functions-key": FUNCTION_KEY, ...(init?.headers ?? {}) } });
  const management = (path: string, init?: RequestInit) => fetch(`${url}/runtime/webhooks/durabletask/${path}`, { ...init, headers: { "x-functions-key": MASTER_KEY, ...(init?.headers ?? {}) } });
  const json = async (path: string, init?: RequestInit) => {
    const res = await api(path, init);
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
  const exited = (proc: ChildProcess | undefined) => new Promise<void>((done) => (!proc || proc.exitCode !== null || proc.signalCode !== null ? done() : proc.once("exit", () => done())));
  return {
    url,
    dir,
    storageConnectionString: azurite.connectionString,
    logs,
    api,
    management,
    json,
    async start(spec, query = "") {
      const body = typeof spec === "string" ? spec : JSON.stringify(spec);
      const res = await json(`federations${query}`, { method: "POST", body, headers: { "content-type": typeof spec === "string" ? "application/yaml" : "application/json" } });
      if (res.status >= 500) throw new Error(`POST federations answered ${res.status}; host log:\n${logs.slice(-20).join("\n")}`);
      return res;
    },
    async waitFor(id, done, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      let last: any;
      while (Date.now() < deadline) {
        try {
          last = (await json(`federations/${id}`)).body;
          if (done(last)) return last;
        } catch {
          // the host may be restarting
        }
        await new Promise((r) => setTimeout(r, 150));
      }
      throw new Error(`timed out waiting for federation ${id}; last status: ${JSON.stringify(last)?.slice(0, 2000)}\nhost log:\n${logs.slice(-20).join("\n")}`);
    },
    send: (queue, message) => transport.send(queue, message),
    async peek(queue, max = 32) {
      const q = new QueueClient(azurite.connectionString, storageQueueName(queue));
      if (!(await q.exists())) return [];
      const peeked = await q.peekMessages({ numberOfMessages: max });
      return peeked.peekedMessageItems.map((m) => ({ ...JSON.parse(m.messageText), deliveryCount: m.dequeueCount }) as ReceivedServiceBusMessage);
    },
    async kill() {
      child?.kill("SIGKILL");
      await exited(child);
    },
    async restart() {
      await launch();
    },
    async stop() {
      child?.kill("SIGTERM");
      let grace: NodeJS.Timeout | undefined;
      const graceMs = options.stopGraceMs ?? 15_000;
      const killed = new Promise<void>((done) => {
        grace = setTimeout(() => {
          logs.push(`[test helper] flo host did not exit ${graceMs} ms after SIGTERM: SIGKILL`);
          child?.kill("SIGKILL");
          done();
        }, graceMs);
      });
      await Promise.race([exited(child), killed]);
      clearTimeout(grace);
      await exited(child);
      await transport.close();
      if (ownsAzurite) await azurite.stop();
    },
  };
}

export const finished = (s: any) => ["Completed", "Failed", "Terminated"].includes(s?.runtimeStatus);

/** Toy model files (one F32 tensor "w"), exactly as the fixture trainers write and read them. */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- a plain JavaScript fixture, shared with the trainers
const toyModel = require("../fixtures/trainers/toy-model.js") as {
  toyModelBytes: (values: number[]) => Buffer;
  parseToyModel: (bytes: Buffer) => number[];
  writeToyModel: (path: string, values: number[]) => void;
};
export const toyModelBytes = toyModel.toyModelBytes;
export const readToyModel = toyModel.parseToyModel;
export const writeToyModel = toyModel.writeToyModel;

/** Waits until `queue` (e.g. `partner-acme-rejected`) holds the message with this id, and returns it. */
export async function waitForMessage(flo: FloHost, queue: string, messageId: string, timeoutMs = 20_000): Promise<ReceivedServiceBusMessage> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const found = (await flo.peek(queue)).find((m) => m.messageId === messageId);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`message ${messageId} did not reach ${queue}; host log:\n${flo.logs.slice(-20).join("\n")}`);
}
