/**
 * `npm run chaos`: the fault-injection campaign. Seeded fault schedules run against real local
 * federations (3-5 silos, 3 rounds, an instant deterministic trainer) on a `flo host` child process
 * whose storage is an EXTERNAL Azurite (`flo host --storage <connection string>`), so the campaign
 * can SIGKILL the host, stop the storage, and tamper with messages, then check the invariants in
 * checkSchedule after every schedule. Schedules share the host and the Azurite, a few at a time
 * (each federation has its own id, data folders and rejected-message ids).
 *
 * Usage: node dist/bench/chaos.js [--schedules 100] [--seed 20261203] [--kinds kind,kind] [--parallel 3]
 * Prints a table (fault kind x count x violations) and `chaos: <N> schedules, <V> violations`;
 * exits 1 when V > 0. A violation line names the schedule and the command that reproduces it.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { QueueClient } from "@azure/storage-queue";
import { restartablePort } from "../lib/runtime/restartablePort";
import { startAzurite, type AzuriteHandle } from "../lib/storage/azurite";
import { AzuriteQueueTransport, storageQueueName } from "../lib/messaging/azuriteTransport";
import { rejectedQueueName } from "../lib/messaging/wireMessages";
import { ModelStore } from "../lib/models/store";
import { LOCAL_JOB_EVENT_TYPE } from "../lib/compute/local/events";
import type { LocalJobFile, LocalJobStatusFile } from "../lib/compute/local/jobFiles";
import type { RoundManifest } from "../lib/federation/manifest";
import { createRng } from "../examples/fraud/dataset";
import { TEST_CLOCK_HOOK_SETTING, TEST_CLOCK_ROUTE } from "../lib/runtime/testClockHook";
import { TEST_JOB_EVENT_FAULTS_SETTING, type AppliedJobEventFault, type JobEventFaultAction, type JobEventFaultRule, type JobEventFaultsFile } from "../lib/federation/testJobEventHook";

/** The repository: this file runs compiled from dist/bench/, or from bench/ under jest. */
const REPO = existsSync(resolve(__dirname, "..", "package.json")) ? resolve(__dirname, "..") : resolve(__dirname, "..", "..");
const FLO_BIN = join(REPO, "bin", "flo.js");
const APP_ENTRY = join(REPO, "dist", "functions", "index.js");
const TRAINER_DIR = join(REPO, "test", "fixtures", "trainers");
const FUNCTION_KEY = "chaos-function-key";
const MASTER_KEY = "chaos-master-key";
const PARTNER = "chaos-partner";
const JOB_EVENTS_QUEUE = "job-events";
// Each partner sends on its own queue (the queue identifies the sender).
const PARTNER_QUEUE = `partner-${PARTNER}`;
const ROUNDS = 3;
/**
 * A clock jump, forward in odd rounds and back in even ones: smaller than the round timeout, so a
 * forward jump does not by itself make every silo late, and the jumps of a campaign roughly cancel.
 */
const CLOCK_JUMP_SECONDS = 8;
/**
 * The host's message lock (default 60 s): a message it had received when it was killed is delivered
 * again once the lock expires. Short here, so a kill delays the messages in flight by seconds.
 */
const MESSAGE_LOCK_SECONDS = 10;
/** Every schedule's federation must be terminal this long after it was submitted. */
const TERMINAL_BOUND_MS = 90_000;

export const FAULT_KINDS = [
  "host-kill:submitting",
  "host-kill:waiting",
  "host-kill:aggregating",
  "host-kill:checkpoint",
  "host-kill:continueAsNew",
  "job-runner-kill",
  "trainer-kill",
  "event-lost",
  "event-duplicated",
  "event-delayed",
  "event-reordered",
  "update-corrupted",
  "update-truncated",
  "storage-outage",
  "clock-jump",
  "malformed-burst",
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** Bad command-line flags. */
export class ChaosOptionsError extends Error {
  override readonly name = "ChaosOptionsError";
}

export interface CampaignOptions {
  schedules: number;
  seed: number;
  /** Fault kinds to draw from (default all). */
  kinds: readonly FaultKind[];
  /** Schedules in flight at once on the shared host (default 3). */
  parallel: number;
  log: (line: string) => void;
}

export const DEFAULT_SEED = 20261203;

export function parseChaosArgs(argv: string[]): Omit<CampaignOptions, "log"> {
  const options: Omit<CampaignOptions, "log"> = { schedules: 100, seed: DEFAULT_SEED, kinds: FAULT_KINDS, parallel: 3 };
  const int = (flag: string, text: string | undefined, min: number): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < min) throw new ChaosOptionsError(`${flag}: expected an integer >= ${min}, got ${JSON.stringify(text)}`);
    return n;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (flag === "--schedules") options.schedules = int(flag, value, 1);
    else if (flag === "--seed") options.seed = int(flag, value, 0);
    else if (flag === "--parallel") options.parallel = int(flag, value, 1);
    else if (flag === "--kinds") {
      const kinds = (value ?? "").split(",").map((k) => k.trim());
      for (const k of kinds)
        if (!(FAULT_KINDS as readonly string[]).includes(k)) throw new ChaosOptionsError(`--kinds: unknown fault kind ${JSON.stringify(k)}, expected some of ${FAULT_KINDS.join(", ")}`);
      options.kinds = kinds as FaultKind[];
    } else throw new ChaosOptionsError(`unknown flag ${JSON.stringify(flag)}: expected --schedules, --seed, --kinds, --parallel`);
  }
  return options;
}

interface Silo {
  name: string;
  target: number[];
  n: number;
}

const SILO_POOL: readonly Silo[] = [
  { name: "east", target: [1, 1, 1, 1], n: 100 },
  { name: "west", target: [3, 3, 3, 3], n: 300 },
  { name: "north", target: [2, 0, 2, 0], n: 100 },
  { name: "south", target: [0, 4, 0, 4], n: 200 },
  { name: "center", target: [1, 2, 3, 4], n: 50 },
];

export interface Fault {
  kind: FaultKind;
  round: number;
  silo: string;
}

export interface Schedule {
  index: number;
  seed: number;
  silos: Silo[];
  faults: Fault[];
}

/** Schedule `index` of a campaign: its silo count and one or two faults, drawn from (seed, index) alone. */
export function drawSchedule(seed: number, index: number, kinds: readonly FaultKind[]): Schedule {
  const rand = createRng(seed * 1000 + index);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(rand() * items.length)];
  const silos = SILO_POOL.slice(0, 3 + Math.floor(rand() * 3));
  // Every kind comes up in turn, so 100 schedules give each of 16 kinds at least 6 draws; a second fault is random.
  const faults: Fault[] = [{ kind: kinds[index % kinds.length], round: 1 + Math.floor(rand() * ROUNDS), silo: pick(silos).name }];
  if (rand() < 0.3) faults.push({ kind: pick(kinds), round: 1 + Math.floor(rand() * ROUNDS), silo: pick(silos).name });
  return { index, seed, silos, faults };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface FederationStatus {
  runtimeStatus?: string;
  round?: number;
  phase?: string;
  output?: { finalModel?: { sha256?: string } };
  failure?: string;
}

/** The shared world: one Azurite, one `flo host` child, restartable. */
class ChaosWorld {
  private host: ChildProcess | undefined;
  private hostLog: string[] = [];
  private azurite!: AzuriteHandle;
  private transport!: AzuriteQueueTransport;
  store!: ModelStore;
  readonly jobsDir: string;
  readonly url: string;
  /** The job-event publisher's test hook reads its rules here (see lib/federation/testJobEventHook.ts). */
  readonly eventFaultsFile: string;
  private readonly eventRules = new Map<string, JobEventFaultRule>();
  private readonly releasedRules = new Set<string>();
  /** How long each host restart took until it served requests (ms). */
  readonly restartMs: number[] = [];

  private constructor(
    readonly dir: string,
    private readonly port: number,
  ) {
    this.jobsDir = join(dir, "jobs");
    this.url = `http://127.0.0.1:${port}`;
    this.eventFaultsFile = join(dir, "job-event-faults.json");
  }

  /** Adds a rule for the publisher's hook: it applies to that job's final event, once. */
  addEventRule(rule: JobEventFaultRule): void {
    this.eventRules.set(rule.id, rule);
    this.writeEventRules();
  }

  /** Lets the event a `delay` rule holds go. */
  releaseEventRule(id: string): void {
    this.releasedRules.add(id);
    this.writeEventRules();
  }

  /** Whether the hook applied the rule (it logs each rule it applies). */
  eventRuleApplied(id: string): boolean {
    return readLines(`${this.eventFaultsFile}.log`).some((line) => (JSON.parse(line) as AppliedJobEventFault).id === id);
  }

  private writeEventRules(): void {
    const file: JobEventFaultsFile = { rules: [...this.eventRules.values()], release: [...this.releasedRules] };
    // Written whole, then renamed: the hook never reads half a file.
    writeFileSync(`${this.eventFaultsFile}.tmp`, JSON.stringify(file));
    renameSync(`${this.eventFaultsFile}.tmp`, this.eventFaultsFile);
  }

  static async create(): Promise<ChaosWorld> {
    const world = new ChaosWorld(mkdtempSync(join(tmpdir(), "flo-chaos-")), await restartablePort());
    await world.startStorage();
    await world.startHost();
    return world;
  }

  get connectionString(): string {
    return this.azurite.connectionString;
  }

  private async startStorage(): Promise<void> {
    // This Azurite stands in for the storage account, whose write cost does not grow with the data
    // it holds. Azurite's default ("acknowledged": the whole metadata database saved before each
    // write is answered) costs O(data) per write: over a campaign the table database grows by about
    // 0.5 MB per schedule, and from schedule ~57 every episode's writes waited on multi-second saves
    // (federations still Running at the bound). It is only ever stopped gracefully (which saves), so
    // periodic saves lose nothing here.
    this.azurite = await startAzurite({ location: join(this.dir, "azurite"), durability: "periodic", autosaveIntervalMs: 10_000 });
    if (this.azurite.portsChanged.length > 0) throw new Error(`Azurite came back on other ports (${this.azurite.portsChanged.join(", ")}): the host's connection string is stale`);
    this.store = ModelStore.fromConnectionString(this.azurite.connectionString, "flo");
    await this.transport?.close();
    this.transport = new AzuriteQueueTransport({ connectionString: this.azurite.connectionString, maxDeliveryCount: 10, lockDurationMs: 30_000, maxAutoLockRenewalDurationMs: 60_000 });
  }

  /** Storage unavailable for `ms`: the external Azurite stopped, then started again on the same folder and ports. */
  storageOutage(ms: number): Promise<void> {
    return this.exclusive(async () => {
      await this.azurite.stop();
      await sleep(ms);
      await this.startStorage();
    });
  }

  async startHost(): Promise<void> {
    const settingsFile = join(this.dir, "local.settings.json");
    writeFileSync(
      settingsFile,
      JSON.stringify({
        IsEncrypted: false,
        Values: {
          FLO_LOCAL_COMPUTE: "enabled",
          FLO_LOCAL_JOBS_DIR: this.jobsDir,
          FLO_LOCAL_BASE_DIR: this.dir,
          FLO_LOCAL_ALLOWED_PATHS: TRAINER_DIR,
          FLO_PARTNER_ALLOWLIST: PARTNER,
          FLO_SERVICEBUS_LOCK_DURATION: `00:00:${String(MESSAGE_LOCK_SECONDS).padStart(2, "0")}`,
          [TEST_CLOCK_HOOK_SETTING]: "enabled",
          [TEST_JOB_EVENT_FAULTS_SETTING]: this.eventFaultsFile,
        },
      }),
    );
    const args = [FLO_BIN, "host", APP_ENTRY, "--port", String(this.port), "--data", join(this.dir, "host"), "--settings", settingsFile, "--storage", this.azurite.connectionString];
    const child = spawn(process.execPath, args, { env: { ...process.env, FLO_FUNCTION_KEY: FUNCTION_KEY, FLO_MASTER_KEY: MASTER_KEY }, stdio: ["ignore", "pipe", "pipe"] });
    this.host = child;
    await new Promise<void>((ready, fail) => {
      const onData = (chunk: Buffer) => {
        for (const line of chunk.toString().split("\n")) {
          if (!line.trim()) continue;
          this.hostLog.push(line);
          if (this.hostLog.length > 400) this.hostLog.splice(0, 200);
          if (line.includes("Host started at")) ready();
        }
      };
      child.stdout.on("data", onData);
      child.stderr.on("data", onData);
      child.once("exit", (code, signal) => fail(new Error(`flo host exited (${code ?? signal}) before it started:\n${this.hostLog.slice(-30).join("\n")}`)));
    });
  }

  /** Host kills and storage outages of concurrent faults run one at a time. */
  private exclusive<T>(action: () => Promise<T>): Promise<T> {
    const next = this.busy.then(action);
    this.busy = next.then(
      () => undefined,
      () => undefined,
    );
    return next;
  }

  private busy: Promise<void> = Promise.resolve();

  /** SIGKILL, then an immediate restart on the same data, port and storage. */
  killAndRestartHost(): Promise<void> {
    return this.exclusive(() => this.killAndRestartHostNow());
  }

  private async killAndRestartHostNow(): Promise<void> {
    const child = this.host;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((done) => child.once("exit", () => done()));
      child.kill("SIGKILL");
      await exited;
    }
    const t0 = Date.now();
    try {
      await this.startHost();
    } catch (err) {
      // Like a supervisor, start it again so the other schedules go on; this schedule still reports the failed start.
      await this.startHost();
      throw err;
    } finally {
      this.restartMs.push(Date.now() - t0);
    }
  }

  logTail(lines = 20): string {
    return this.hostLog.slice(-lines).join("\n");
  }

  api(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.url}/api/${path}`, { ...init, headers: { "x-functions-key": FUNCTION_KEY, ...(init.headers as Record<string, string> | undefined) } });
  }

  management(path: string, init: RequestInit = {}): Promise<Response> {
    return fetch(`${this.url}/runtime/webhooks/durabletask/${path}`, { ...init, headers: { "x-functions-key": MASTER_KEY, ...(init.headers as Record<string, string> | undefined) } });
  }

  /**
   * The federation's orchestration status from the management API: one lookup in the host's
   * engine. (The federation API's status also reads every silo's instance and the checkpoint blob;
   * probed every few tens of ms by three schedules, it loaded the host under test.)
   */
  async status(id: string): Promise<FederationStatus | undefined> {
    try {
      const res = await this.management(`instances/${encodeURIComponent(id)}?showInput=false`);
      if (res.status !== 200 && res.status !== 202) return undefined;
      const body = (await res.json()) as { runtimeStatus?: string; customStatus?: { round?: number; phase?: string } | null; output?: unknown };
      const failed = body.runtimeStatus === "Failed" || body.runtimeStatus === "Terminated";
      return {
        runtimeStatus: body.runtimeStatus,
        round: body.customStatus?.round,
        phase: body.customStatus?.phase,
        output: body.runtimeStatus === "Completed" ? (body.output as FederationStatus["output"]) : undefined,
        failure: failed ? String(body.output) : undefined,
      };
    } catch {
      return undefined;
    }
  }

  send(queue: string, message: Parameters<AzuriteQueueTransport["send"]>[1]): Promise<void> {
    return this.transport.send(queue, message);
  }

  queue(name: string): QueueClient {
    return new QueueClient(this.azurite.connectionString, storageQueueName(name));
  }

  /** Every job folder of a federation with its job.json and status.json. */
  jobs(federationId: string): { dir: string; job: LocalJobFile; status?: LocalJobStatusFile }[] {
    const out: { dir: string; job: LocalJobFile; status?: LocalJobStatusFile }[] = [];
    if (!existsSync(this.jobsDir)) return out;
    // Job folders are named after the job (flo-<federation>-r<round>-<silo>...): read only this federation's.
    const prefix = `flo-${federationId.replace(/[^a-zA-Z0-9-]/g, "-")}-r`;
    for (const name of readdirSync(this.jobsDir)) {
      if (!name.startsWith(prefix)) continue;
      const dir = join(this.jobsDir, name);
      const job = readJson<LocalJobFile>(join(dir, "job.json"));
      if (!job || job.request.federationId !== federationId) continue;
      out.push({ dir, job, status: readJson<LocalJobStatusFile>(join(dir, "status.json")) });
    }
    return out;
  }

  async stop(): Promise<void> {
    const child = this.host;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((done) => child.once("exit", () => done()));
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    }
    await this.transport.close();
    await this.azurite.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function readLines(path: string): string[] {
  try {
    return readFileSync(path, "utf8")
      .split("\n")
      .filter((line) => line.trim());
  } catch {
    return [];
  }
}

function readJson<T>(path: string): T | undefined {
  try {
    return JSON.parse(readFileSync(path, "utf8")) as T;
  } catch {
    return undefined;
  }
}

function federationSpec(id: string, silos: readonly Silo[]): Record<string, unknown> {
  return {
    name: id,
    rounds: ROUNDS,
    silos: silos.map((s) => ({ name: s.name, compute: { type: "local" }, inputs: { data: `data/${id}/${s.name}` } })),
    training: {
      command: "node chaos-trainer.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}} --data ${{inputs.data}} --round ${{inputs.round}}",
      code: TRAINER_DIR,
    },
    // minSilos 2: a silo excluded by a fault (a corrupted update) leaves a round that still aggregates.
    // roundTimeout 30 s: room for a host restart on a loaded machine without making silos late; the
    // silos poll their job every 3 s, which catches a lost completion event.
    policy: { minSilos: 2, roundTimeout: "PT30S", jobRetries: 1 },
  };
}

/** What the job-event publisher's test hook does to the silo's final event, per event fault kind. */
const EVENT_FAULT_ACTIONS: Partial<Record<FaultKind, JobEventFaultAction>> = {
  "event-lost": "drop",
  "event-duplicated": "duplicate",
  "event-delayed": "delay",
  "event-reordered": "reorder",
};

const scheduleFederationId = (schedule: Schedule) => `chaos-${schedule.seed}-${schedule.index}`;

/** Names a schedule's fault `index` (malformed message ids, the hook's rule ids). */
const faultTag = (federationId: string, index: number) => `${federationId}-f${index}`;
const eventRuleId = (tag: string) => `${tag}-event`;

/** Per-silo trainer directives for this schedule: {"<round>": "sleep:<ms>" | "corrupt" | "truncate"}. */
function trainerFaults(schedule: Schedule): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>(schedule.silos.map((s) => [s.name, {}]));
  for (const f of schedule.faults) {
    const silo = out.get(f.silo)!;
    if (f.kind === "update-corrupted") silo[f.round] = "corrupt";
    else if (f.kind === "update-truncated") silo[f.round] = "truncate";
    // A killed job needs a job to kill; a host kill while waiting needs jobs in flight.
    else if (f.kind === "job-runner-kill" || f.kind === "trainer-kill" || f.kind === "host-kill:waiting") silo[f.round] ??= "sleep:1500";
  }
  return out;
}

export interface ScheduleResult {
  schedule: Schedule;
  federationId: string;
  /** Faults that really happened (a race the injector lost is not counted). */
  injected: FaultKind[];
  violations: string[];
  /** The same silos were included in every round as in the fault-free run. */
  sameSilos: boolean;
}

interface Reference {
  sha256: string;
  included: string[][];
}

/** Waits until `probe` is truthy, polling every `everyMs`; false on timeout. */
async function until(probe: () => Promise<boolean> | boolean, timeoutMs: number, everyMs = 25): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await Promise.resolve(probe()).catch(() => false)) return true;
    await sleep(everyMs);
  }
  return false;
}

const isTerminal = (s: FederationStatus | undefined) => ["Completed", "Failed", "Terminated"].includes(s?.runtimeStatus ?? "");

/** Sends the malformed burst; returns the message ids that must reach a rejected queue. */
async function malformedBurst(world: ChaosWorld, tag: string): Promise<{ queue: string; messageId: string }[]> {
  const expected: { queue: string; messageId: string }[] = [];
  const jobEvents: unknown[] = [
    "{not json",
    { type: LOCAL_JOB_EVENT_TYPE, id: 42 },
    { type: LOCAL_JOB_EVENT_TYPE, id: "e", jobName: "j", state: "exploded" },
    { type: LOCAL_JOB_EVENT_TYPE, id: "e", jobName: "j", state: "completed", tags: "not-an-object" },
    [1, 2],
  ];
  for (const [i, body] of jobEvents.entries()) {
    const messageId = `${tag}-job-${i}`;
    await world.send(JOB_EVENTS_QUEUE, { body, messageId });
    expected.push({ queue: JOB_EVENTS_QUEUE, messageId });
  }
  const partner: { body: unknown; partner?: string }[] = [
    { body: { command: "start" } },
    { body: { command: "start" }, partner: "mallory" },
    { body: "{nope", partner: PARTNER },
    { body: { command: "launch-missiles" }, partner: PARTNER },
  ];
  for (const [i, m] of partner.entries()) {
    const messageId = `${tag}-partner-${i}`;
    await world.send(PARTNER_QUEUE, { body: m.body, messageId, applicationProperties: m.partner ? { floPartner: m.partner } : {} });
    expected.push({ queue: PARTNER_QUEUE, messageId });
  }
  return expected;
}

/** Everything seen so far in the rejected queues: message id -> reason. Consumed, like an operator drains them. */
class RejectedLedger {
  readonly reasons = new Map<string, string>();

  async drain(world: ChaosWorld): Promise<void> {
    for (const queue of [JOB_EVENTS_QUEUE, PARTNER_QUEUE]) {
      const q = world.queue(rejectedQueueName(queue));
      if (!(await q.exists())) continue;
      for (;;) {
        const got = await q.receiveMessages({ numberOfMessages: 32, visibilityTimeout: 30 });
        if (got.receivedMessageItems.length === 0) break;
        for (const item of got.receivedMessageItems) {
          const envelope = JSON.parse(item.messageText) as { messageId?: string; applicationProperties?: Record<string, unknown> };
          const props = envelope.applicationProperties ?? {};
          const id = typeof props.originalMessageId === "string" ? props.originalMessageId : (envelope.messageId ?? "");
          this.reasons.set(id, typeof props.DeadLetterReason === "string" ? props.DeadLetterReason : "");
          await q.deleteMessage(item.messageId, item.popReceipt);
        }
      }
    }
  }
}

/** Runs one schedule's federation with its faults, then checks the invariants. */
async function runSchedule(world: ChaosWorld, schedule: Schedule, reference: Map<number, Reference>, ledger: RejectedLedger): Promise<ScheduleResult> {
  const federationId = scheduleFederationId(schedule);
  const injected: FaultKind[] = [];
  const violations: string[] = [];
  for (const s of schedule.silos) {
    const dir = join(world.dir, "data", federationId, s.name);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "target.json"), JSON.stringify({ target: s.target, n: s.n }));
  }
  for (const [silo, faults] of trainerFaults(schedule)) writeFileSync(join(world.dir, "data", federationId, silo, "faults.json"), JSON.stringify(faults));
  // Job-event faults are rules for the publisher's test hook, in place before the first job is queued.
  for (const [i, fault] of schedule.faults.entries()) {
    const action = EVENT_FAULT_ACTIONS[fault.kind];
    if (action) world.addEventRule({ id: eventRuleId(faultTag(federationId, i)), federation: federationId, round: fault.round, silo: fault.silo, action });
  }

  const started = Date.now();
  // Another schedule's fault may have the host or storage down: retry until it answers (a retry after a lost answer finds the federation started).
  let submit: Response | undefined;
  for (let attempt = 0; !submit; attempt++) {
    submit = await world
      .api("federations", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(federationSpec(federationId, schedule.silos)) })
      .catch((err: unknown) => {
        if (attempt >= 300) throw err;
        return sleep(100).then(() => undefined);
      });
    if (submit?.status === 409 && attempt > 0) submit = new Response(null, { status: 202 });
    // Another schedule's storage outage: the API says so (503 + Retry-After) and a client retries.
    if (submit?.status === 503 && attempt < 300) {
      await sleep(Number(submit.headers.get("retry-after") ?? 1) * 1000);
      submit = undefined;
    }
  }
  if (submit.status !== 202) return { schedule, federationId, injected, violations: [`submit: expected 202, got ${submit.status}: ${await submit.text()}`], sameSilos: false };

  const expectedRejections: { queue: string; messageId: string }[] = [];
  const injectors = schedule.faults.map((fault, i) => inject(world, schedule, fault, faultTag(federationId, i), expectedRejections).then((hit) => (hit ? injected.push(fault.kind) : undefined)));
  await Promise.all(injectors);

  let final: FederationStatus | undefined;
  const terminal = await until(async () => isTerminal((final = await world.status(federationId))), Math.max(1000, TERMINAL_BOUND_MS - (Date.now() - started)), 150);
  if (!terminal) violations.push(`terminal state: not terminal ${TERMINAL_BOUND_MS / 1000} s after submit (last status ${JSON.stringify(final)?.slice(0, 300)})`);
  // Another schedule's storage outage may interrupt the checks: they only read, so run them again.
  const withStorage = async <T>(read: () => Promise<T>): Promise<T> => {
    for (let attempt = 1; ; attempt++) {
      try {
        return await read();
      } catch (err) {
        if (attempt >= 5) throw err;
        await sleep(2000);
      }
    }
  };
  if (terminal) violations.push(...(await withStorage(() => checkSchedule(world, federationId, schedule, final!, reference, ledger, expectedRejections))));
  const sameSilos = sameSilosAs(await withStorage(() => includedSilos(world, federationId)), reference.get(schedule.silos.length));
  return { schedule, federationId, injected, violations, sameSilos };
}

async function includedSilos(world: ChaosWorld, federationId: string): Promise<string[][]> {
  const out: string[][] = [];
  for (let r = 1; r <= ROUNDS; r++) {
    const m = await world.store.getJson<RoundManifest>(`federations/${federationId}/rounds/${r}/manifest.json`).catch(() => undefined);
    out.push(m ? m.silos.filter((s) => s.included).map((s) => s.silo) : []);
  }
  return out;
}

function sameSilosAs(included: string[][], reference: Reference | undefined): boolean {
  return !!reference && JSON.stringify(included) === JSON.stringify(reference.included);
}

/** The invariants every schedule must keep. */
async function checkSchedule(
  world: ChaosWorld,
  federationId: string,
  schedule: Schedule,
  final: FederationStatus,
  reference: Map<number, Reference>,
  ledger: RejectedLedger,
  expectedRejections: { queue: string; messageId: string }[],
): Promise<string[]> {
  const violations: string[] = [];
  const ref = reference.get(schedule.silos.length);
  const included = await includedSilos(world, federationId);
  const same = sameSilosAs(included, ref);
  // Only a quorum the faults really broke (two corrupted updates of three silos) may fail a federation.
  if (final.runtimeStatus !== "Completed" && (same || !/quorum not reached/.test(final.failure ?? ""))) {
    violations.push(`final state: ${final.runtimeStatus} (${final.failure ?? "no failure message"})`);
  }
  // Identical model when the same silos succeeded.
  if (same && final.runtimeStatus === "Completed" && final.output?.finalModel?.sha256 !== ref!.sha256) {
    violations.push(`final model: sha256 ${final.output?.finalModel?.sha256} differs from the fault-free run's ${ref!.sha256} with the same silos`);
  }
  // Each round: exactly one manifest and one output model; every exclusion has a reason.
  const lastRound = final.runtimeStatus === "Completed" ? ROUNDS : (final.round ?? 0);
  for (let r = 1; r <= lastRound; r++) {
    const prefix = `federations/${federationId}/rounds/${r}/`;
    const blobs = await world.store.list(prefix);
    const manifests = blobs.filter((b) => b.path.endsWith("manifest.json"));
    if (manifests.length !== 1) violations.push(`round ${r}: ${manifests.length} manifests, expected 1`);
    const manifest = manifests.length ? await world.store.getJson<RoundManifest>(manifests[0].path) : undefined;
    if (manifest?.status === "aggregated") {
      // The output model's folder holds that one model, with the bytes the manifest recorded (a re-run activity wrote identical bytes).
      const out = manifest.globalOut ? world.store.pathFromUri(manifest.globalOut.uri) : undefined;
      const folder = out?.slice(0, out.lastIndexOf("/") + 1);
      const models = folder ? (await world.store.list(folder)).filter((b) => b.path.endsWith(".safetensors")) : [];
      if (models.length !== 1) violations.push(`round ${r}: ${models.length} output models in ${folder ?? "(no globalOut)"}, expected 1`);
      else if (manifest.globalOut?.sha256 && models[0].sha256 !== manifest.globalOut.sha256)
        violations.push(`round ${r}: output model sha256 ${models[0].sha256} differs from the manifest's ${manifest.globalOut.sha256}`);
    }
    for (const s of manifest?.silos ?? []) {
      if (!s.included && !s.reason) violations.push(`round ${r}: silo ${s.silo} excluded without a reason`);
    }
    if (manifest && !same) {
      for (const silo of schedule.silos) {
        if (!manifest.silos.some((s) => s.silo === silo.name)) violations.push(`round ${r}: silo ${silo.name} is missing from the manifest`);
      }
    }
  }
  // No instance of the federation stays Running (its sub-orchestrations are `<id>:...`).
  const ofFederation = (instanceId: string) => instanceId === federationId || instanceId.startsWith(`${federationId}:`);
  const listed = await world.management(`instances?top=1000&instanceIdPrefix=${encodeURIComponent(federationId)}`);
  if (listed.status !== 200) violations.push(`listing instances: HTTP ${listed.status}`);
  else {
    const stuck = ((await listed.json()) as { instanceId: string; runtimeStatus: string }[]).filter((i) => ofFederation(i.instanceId) && ["Running", "Pending"].includes(i.runtimeStatus));
    // Sub-orchestrations end before their parent; give a just-finished one a moment.
    if (stuck.length > 0) {
      await sleep(2000);
      const again = await world.management(`instances?top=1000&instanceIdPrefix=${encodeURIComponent(federationId)}`);
      const still = ((await again.json()) as { instanceId: string; runtimeStatus: string }[]).filter((i) => ofFederation(i.instanceId) && ["Running", "Pending"].includes(i.runtimeStatus));
      for (const i of still) violations.push(`instance ${i.instanceId} is still ${i.runtimeStatus} after the federation ended`);
    }
  }
  // No trainer process left running. (The job runner is one per host, shared with the schedules
  // running beside this one: the campaign checks it once they are all done.)
  const running = await (async () => {
    let left: string[] = [];
    await until(
      () => {
        left = world.jobs(federationId).flatMap((j) => [j.status?.childPid].filter(processAlive).map((pid) => `${j.job.request.jobName} pid ${pid}`));
        return left.length === 0;
      },
      5000,
      200,
    );
    return left;
  })();
  for (const r of running) violations.push(`job process left running: ${r}`);
  // Every bad message is in a rejected queue with a reason.
  if (expectedRejections.length > 0) {
    await until(
      async () => {
        await ledger.drain(world);
        return expectedRejections.every((m) => ledger.reasons.has(m.messageId));
      },
      // A message the host had received when another schedule killed it comes back once its lock expires.
      MESSAGE_LOCK_SECONDS * 1000 + 15_000,
      300,
    );
    for (const m of expectedRejections) {
      const reason = ledger.reasons.get(m.messageId);
      if (reason === undefined) violations.push(`message ${m.messageId} sent to ${m.queue} is in no rejected queue`);
      else if (!reason) violations.push(`message ${m.messageId} is in ${rejectedQueueName(m.queue)} without a reason`);
    }
  }
  return violations;
}

/** Injects one fault; resolves true when it really happened. */
async function inject(world: ChaosWorld, schedule: Schedule, fault: Fault, tag: string, expectedRejections: { queue: string; messageId: string }[]): Promise<boolean> {
  const federationId = scheduleFederationId(schedule);
  const status = () => world.status(federationId);
  const manifestExists = (round: number) => world.store.exists(`federations/${federationId}/rounds/${round}/manifest.json`);
  // A fault's moment may come late in the federation (round 3 on a loaded machine): wait as long as the federation may take.
  const windowMs = TERMINAL_BOUND_MS;
  // Waits for the fault's moment; false when the federation ended first (or the window passed).
  const moment = async (probe: () => Promise<boolean> | boolean, everyMs = 50): Promise<boolean> => {
    let hit = false;
    let looks = 0;
    // The terminal check is a status call: every 10th look keeps the host's load from the probes small.
    await until(async () => (hit = await probe()) || (++looks % 10 === 0 && isTerminal(await status())), windowMs, everyMs);
    return hit;
  };
  switch (fault.kind) {
    case "host-kill:submitting":
      await world.killAndRestartHost();
      return true;
    case "host-kill:waiting": {
      if (!(await moment(() => world.jobs(federationId).some((j) => j.job.request.round === fault.round && j.status?.state === "running")))) return false;
      await world.killAndRestartHost();
      return true;
    }
    case "host-kill:aggregating": {
      // From the last silo's result to the round's manifest: the silo groups report, the federation
      // aggregates (the phase "aggregating" alone lasts a few ms with an instant trainer).
      const roundPrefix = `${federationId}:r${fault.round}:`;
      const silosDone = async (): Promise<boolean> => {
        const res = await world.management(`instances?top=1000&showInput=false&instanceIdPrefix=${encodeURIComponent(roundPrefix)}`);
        if (res.status !== 200) return false;
        const silos = ((await res.json()) as { instanceId: string; runtimeStatus: string }[]).filter((i) => !i.instanceId.includes(":group."));
        return silos.length === schedule.silos.length && silos.every((i) => i.runtimeStatus === "Completed");
      };
      if (!(await moment(async () => (await silosDone()) && !(await manifestExists(fault.round)), 25))) return false;
      await world.killAndRestartHost();
      return true;
    }
    case "host-kill:checkpoint": {
      // The manifest is written first, then the round's checkpoint: killing as the manifest appears hits the checkpoint write.
      if (!(await moment(() => manifestExists(fault.round), 20))) return false;
      await world.killAndRestartHost();
      return true;
    }
    case "host-kill:continueAsNew": {
      if (fault.round >= ROUNDS) fault.round = ROUNDS - 1;
      if (!(await moment(async () => ((await status())?.round ?? 0) > fault.round, 20))) return false;
      await world.killAndRestartHost();
      return true;
    }
    case "job-runner-kill":
    case "trainer-kill": {
      let pid: number | undefined;
      const hit = await moment(() => {
        const job = world.jobs(federationId).find((j) => j.job.request.round === fault.round && j.job.request.silo === fault.silo && j.status?.state === "running");
        pid = fault.kind === "job-runner-kill" ? job?.status?.runnerPid : job?.status?.childPid;
        return pid !== undefined;
      });
      if (!hit || pid === undefined) return false;
      try {
        process.kill(pid, "SIGKILL");
        return true;
      } catch {
        return false;
      }
    }
    case "event-lost":
    case "event-delayed":
    case "event-duplicated":
    case "event-reordered": {
      // The publisher's test hook does it (the rule was registered before the submit): wait until it has.
      const id = eventRuleId(tag);
      if (!(await moment(() => world.eventRuleApplied(id), 100))) return false;
      if (fault.kind === "event-delayed") {
        // Held until the next round started (or the federation ended), then delivered.
        await until(
          async () => {
            const s = await status();
            return (s?.round ?? 0) > fault.round || isTerminal(s);
          },
          windowMs,
          100,
        );
        world.releaseEventRule(id);
      }
      return true;
    }
    case "update-corrupted":
    case "update-truncated":
      // Written into the silo's faults.json before the submit: it happens when the round runs.
      return true;
    case "storage-outage": {
      if (!(await moment(async () => ((await status())?.round ?? 0) >= fault.round, 50))) return false;
      await world.storageOutage(2000 + (fault.round % 3) * 500);
      return true;
    }
    case "clock-jump": {
      if (!(await moment(async () => ((await status())?.round ?? 0) >= fault.round, 50))) return false;
      const res = await fetch(`${world.url}${TEST_CLOCK_ROUTE}`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-functions-key": MASTER_KEY },
        body: JSON.stringify({ jumpSeconds: fault.round % 2 === 1 ? CLOCK_JUMP_SECONDS : -CLOCK_JUMP_SECONDS }),
      });
      return res.status === 200;
    }
    case "malformed-burst":
      expectedRejections.push(...(await malformedBurst(world, tag)));
      return true;
  }
}

/**
 * Whether a process with this pid is running (signal 0 checks without signalling). A zombie is not:
 * a runner orphaned by a killed host is reparented, and in a container nobody may reap it.
 */
function processAlive(pid: number | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    // /proc/<pid>/stat: "pid (comm) state ...": the state follows the last ")".
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return true;
  }
}

export interface CampaignResult {
  results: ScheduleResult[];
  /** Found once every schedule is done (a job runner still running with nothing left to run). */
  campaignViolations: string[];
  violations: number;
  /** kind -> [occurrences, occurrences in schedules with the fault-free run's silos, violations]. */
  table: Map<FaultKind, { count: number; sameSilos: number; violations: number }>;
  wallMs: number;
  /** How long each host restart took until it served requests (ms). */
  restartMs: number[];
}

export async function runCampaign(options: CampaignOptions): Promise<CampaignResult> {
  const started = Date.now();
  const world = await ChaosWorld.create();
  const ledger = new RejectedLedger();
  const results: ScheduleResult[] = [];
  const campaignViolations: string[] = [];
  let restartMs: number[] = [];
  try {
    // The fault-free runs, one per silo count and side by side: the sha256 and included silos to compare with.
    const reference = new Map<number, Reference>();
    const t0 = Date.now();
    const referenceRun = async (count: number): Promise<void> => {
      const schedule: Schedule = { index: -count, seed: options.seed, silos: SILO_POOL.slice(0, count), faults: [] };
      const run = await runSchedule(world, schedule, new Map(), ledger);
      const final = await world.status(run.federationId);
      if (final?.runtimeStatus !== "Completed" || !final.output?.finalModel?.sha256)
        throw new Error(`the fault-free run with ${count} silos did not complete: ${JSON.stringify(final)}\n${world.logTail()}`);
      options.log(`fault-free run, ${count} silos: ${final.output.finalModel.sha256} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      reference.set(count, { sha256: final.output.finalModel.sha256, included: await includedSilos(world, run.federationId) });
    };
    await Promise.all([3, 4, 5].map(referenceRun));
    let nextIndex = 0;
    const worker = async (): Promise<void> => {
      while (nextIndex < options.schedules) await runOne(nextIndex++);
    };
    const runOne = async (i: number): Promise<void> => {
      const schedule = drawSchedule(options.seed, i, options.kinds);
      const t0 = Date.now();
      const result = await runSchedule(world, schedule, reference, ledger).catch((err: unknown) => ({
        schedule,
        federationId: scheduleFederationId(schedule),
        injected: [],
        violations: [`harness error: ${err instanceof Error ? err.message : String(err)}`],
        sameSilos: false,
      }));
      results.push(result);
      options.log(
        `schedule ${i}: ${schedule.silos.length} silos, ${schedule.faults.map((f) => `${f.kind}@r${f.round}/${f.silo}`).join(" + ")}: ` +
          `injected [${result.injected.join(", ")}], ${result.sameSilos ? "same silos" : "other silos"}, ${result.violations.length} violations (${((Date.now() - t0) / 1000).toFixed(1)} s)`,
      );
      for (const v of result.violations) options.log(`  VIOLATION schedule ${i} (${result.federationId}): ${v}\n    reproduce: npm run chaos -- --seed ${options.seed} --schedules ${i + 1}`);
    };
    // Schedules run side by side on the shared host: a host kill or storage outage of one is one more fault for the others.
    await Promise.all(Array.from({ length: Math.min(options.parallel, options.schedules) }, worker));
    results.sort((a, b) => a.schedule.index - b.schedule.index);
    // Every job is done: each job runner the host started exits once it has nothing left (1 s grace).
    const runners = new Set(results.flatMap((r) => world.jobs(r.federationId).map((j) => j.status?.runnerPid)).filter((pid): pid is number => pid !== undefined));
    let lingering: number[] = [];
    await until(
      () => {
        lingering = [...runners].filter(processAlive);
        return lingering.length === 0;
      },
      10_000,
      200,
    );
    for (const pid of lingering) campaignViolations.push(`job runner pid ${pid} still running 10 s after the last schedule`);
  } finally {
    restartMs = world.restartMs;
    await world.stop();
  }
  const table = new Map<FaultKind, { count: number; sameSilos: number; violations: number }>(options.kinds.map((k) => [k, { count: 0, sameSilos: 0, violations: 0 }]));
  for (const r of results) {
    for (const kind of r.injected) {
      const row = table.get(kind)!;
      row.count++;
      if (r.sameSilos) row.sameSilos++;
      row.violations += r.violations.length;
    }
  }
  return { results, campaignViolations, violations: results.reduce((a, r) => a + r.violations.length, 0) + campaignViolations.length, table, wallMs: Date.now() - started, restartMs };
}

export function formatTable(result: CampaignResult): string {
  const header = ["fault kind", "count", "same silos", "violations"];
  const rows = [...result.table].map(([kind, row]) => [kind, String(row.count), String(row.sameSilos), String(row.violations)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
  return [line(header), ...rows.map(line)].join("\n");
}

async function main(): Promise<number> {
  const options = parseChaosArgs(process.argv.slice(2));
  console.log(`flo chaos campaign: ${options.schedules} schedules, seed ${options.seed}, node ${process.version}`);
  const result = await runCampaign({ ...options, log: (line) => console.log(line) });
  const restarts = result.restartMs;
  const restartLine = restarts.length
    ? `, ${restarts.length} host restarts (mean ${(restarts.reduce((a, b) => a + b, 0) / restarts.length / 1000).toFixed(1)} s, max ${(Math.max(...restarts) / 1000).toFixed(1)} s)`
    : "";
  console.log(`\n${formatTable(result)}\n\nwall time ${(result.wallMs / 1000).toFixed(0)} s${restartLine}`);
  for (const v of result.campaignViolations) console.log(`VIOLATION (campaign): ${v}`);
  console.log(`chaos: ${result.results.length} schedules, ${result.violations} violations`);
  return result.violations > 0 ? 1 : 0;
}

if (require.main === module) {
  main().then(
    (code) => process.exit(code),
    (err) => {
      console.error(err instanceof ChaosOptionsError ? `error: ${err.message}` : err);
      process.exit(2);
    },
  );
}
