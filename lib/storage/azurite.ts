/**
 * Starts Azurite (blob, queue, table) inside this process, for the local runtime (`flo host`) and
 * for tests. The server classes are used directly instead of the CLI: the CLI turns telemetry on
 * and prints to stdout; the classes do neither.
 *
 * Durability (persisted mode, `location` set): Azurite keeps its metadata in LokiJS databases that
 * it saves to `<location>/__azurite_db_*.json` on a 5 s autosave timer; blob/queue bytes go to
 * extent files as they arrive. With the default `durability: "acknowledged"` the launcher turns the
 * timer off and, before a response that changed metadata is sent, saves the changed databases
 * (write-to-temp + rename, so a save is atomic). Guarantee: a request that a client saw succeed
 * survives a SIGKILL of this process (the bytes are in the OS page cache and metadata on disk). Not
 * guaranteed: an OS crash or power loss (no fsync). `durability: "periodic"` keeps Loki's timer
 * (`autosaveIntervalMs`) instead: cheaper, but up to one interval of acknowledged writes may be
 * lost on a kill.
 */
import * as path from "node:path";
import * as fs from "node:fs";
import type { IncomingMessage, Server as HttpServer, ServerResponse } from "node:http";
import { withoutApplicationInsightsPatching } from "./applicationInsightsSettings";
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME, azuriteAccountUrl, azuriteConnectionString } from "./devAccount";

export type AzuriteService = "blob" | "queue" | "table";
export type AzuriteDurability = "acknowledged" | "periodic";

export const ALL_AZURITE_SERVICES: readonly AzuriteService[] = ["blob", "queue", "table"];

export interface StartAzuriteOptions {
  /** Folder holding metadata + extents; omitted = in-memory (lost on stop). */
  location?: string;
  /** Default: all three. */
  services?: readonly AzuriteService[];
  /** Default `127.0.0.1` (loopback only). */
  host?: string;
  /** Default 0 for each = a free port chosen by the OS. */
  ports?: Partial<Record<AzuriteService, number>>;
  /** Persisted mode only; default "acknowledged" (see module comment). */
  durability?: AzuriteDurability;
  /** Loki autosave period for durability "periodic"; default 1000 ms. */
  autosaveIntervalMs?: number;
  /** In-memory mode: cap on blob+queue bytes held (default: Azurite's, half the RAM). */
  memoryLimitBytes?: number;
  signal?: AbortSignal;
}

export interface AzuriteHandle {
  readonly accountName: string;
  readonly accountKey: string;
  /** Services actually running. */
  readonly services: readonly AzuriteService[];
  /** Persistence folder, or undefined when in-memory. */
  readonly location: string | undefined;
  /** `http://127.0.0.1:<port>/devstoreaccount1`; throws AzuriteServiceNotStartedError if blob is off. */
  readonly blobEndpoint: string;
  readonly queueEndpoint: string;
  readonly tableEndpoint: string;
  /** Full dev-account connection string naming every running service's endpoint. */
  readonly connectionString: string;
  /**
   * Persisted mode reuses the previous run's ports (from `<location>/flo-azurite-ports.json`) so
   * blob URIs recorded before a restart still resolve. Services listed here could not get their
   * previous port back (it was taken) and run on a new one.
   */
  readonly portsChanged: readonly AzuriteService[];
  /** Saves any unsaved metadata now (persisted mode; a no-op in memory). */
  flush(): Promise<void>;
  /** Saves metadata and closes the servers. Idempotent. */
  stop(): Promise<void>;
}

/** Base class of every launcher error. */
export class AzuriteError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A server could not start (port taken, folder not writable, ...). */
export class AzuriteStartError extends AzuriteError {
  constructor(
    readonly service: AzuriteService,
    readonly detail: string,
    options?: { cause?: unknown },
  ) {
    super(`Azurite ${service} service failed to start: ${detail}`, options);
  }
}

/** An endpoint of a service that was not requested in `services` was asked for. */
export class AzuriteServiceNotStartedError extends AzuriteError {
  constructor(
    readonly service: AzuriteService,
    started: readonly AzuriteService[],
  ) {
    super(`Azurite ${service} service was not started (started: ${started.join(", ") || "none"})`);
  }
}

/** Another live Azurite (this process or another) already serves this persistence folder. */
export class AzuriteLocationInUseError extends AzuriteError {
  constructor(
    readonly location: string,
    readonly ownerPid: number | undefined,
    readonly lockPath: string,
  ) {
    super(`Azurite location ${location} is in use by ${ownerPid ? `process ${ownerPid}` : "another process"} (lock file ${lockPath})`);
  }
}

/** Options were invalid (unknown service, bad port, ...). */
export class AzuriteOptionsError extends AzuriteError {}

// ---- minimal types for the parts of Azurite we use (it ships no .d.ts) ----

interface LokiResultset {
  find(query: unknown, firstOnly?: boolean): LokiResultset;
}

interface LokiCollection {
  binaryIndices: Record<string, unknown>;
  chain(transform?: unknown, parameters?: unknown): LokiResultset;
}

interface LokiDb {
  getCollection(name: string): LokiCollection | null;
  autosave: boolean;
  autosaveInterval: number;
  autosaveDirty(): boolean;
  autosaveDisable(): void;
  autosaveEnable(): void;
  saveDatabase(callback: (err?: unknown) => void): void;
}
interface AzuriteServer {
  start(): Promise<void>;
  close(): Promise<void>;
  /** Closes stores and the GC loop (the second half of close()); used after a failed start(). */
  afterClose(): Promise<void>;
  getHttpServerAddress(): string;
  httpServer: HttpServer;
  metadataStore?: { db?: LokiDb };
  extentMetadataStore?: { db?: LokiDb };
}
type ServerCtor = new (config: unknown) => AzuriteServer;
type ConfigCtor = new (...args: unknown[]) => unknown;

interface AzuriteModules {
  BlobServer: ServerCtor;
  BlobConfiguration: ConfigCtor;
  QueueServer: ServerCtor;
  QueueConfiguration: ConfigCtor;
  TableServer: ServerCtor;
  TableConfiguration: ConfigCtor;
  MemoryExtentChunkStore: new (sizeLimit: number) => unknown;
  DEFAULT_EXTENT_MEMORY_LIMIT: number;
  configLogger(enable: boolean, logFile?: string): void;
}

let modules: AzuriteModules | undefined;
/** Loaded lazily: requiring Azurite costs ~1 s, which code paths with a configured account never pay. */
function loadAzurite(): AzuriteModules {
  if (modules) return modules;
  const base = "azurite/dist/src";
  const load = (path: string) =>
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- Azurite is untyped, and a static import would pay its load time up front
    require(`${base}/${path}`) as Record<string, unknown>;
  // Azurite's telemetry module requires applicationinsights, which on load patches the process's
  // `require` (diagnostic-channel): every Azure SDK client loaded afterwards in this process (the
  // app's blob, queue and table clients) then records an OpenTelemetry span per request, and
  // console and winston calls are republished. That cost ~8% of the host's CPU with K local silos.
  // Its documented switch, read once when it loads, turns the patching off.
  const memory = withoutApplicationInsightsPatching(() => {
    load("common/Telemetry");
    return load("common/persistence/MemoryExtentStore");
  });
  modules = {
    BlobServer: load("blob/BlobServer").default as ServerCtor,
    BlobConfiguration: load("blob/BlobConfiguration").default as ConfigCtor,
    QueueServer: load("queue/QueueServer").default as ServerCtor,
    QueueConfiguration: load("queue/QueueConfiguration").default as ConfigCtor,
    TableServer: load("table/TableServer").default as ServerCtor,
    TableConfiguration: load("table/TableConfiguration").default as ConfigCtor,
    MemoryExtentChunkStore: memory.MemoryExtentChunkStore as AzuriteModules["MemoryExtentChunkStore"],
    DEFAULT_EXTENT_MEMORY_LIMIT: memory.DEFAULT_EXTENT_MEMORY_LIMIT as number,
    configLogger: load("common/Logger").configLogger as AzuriteModules["configLogger"],
  };
  // Debug logging is a process-wide singleton in Azurite; keep it off.
  modules.configLogger(false);
  return modules;
}

/**
 * The blob metadata store's collections and the field that tells their documents apart: Azurite
 * looks a blob up by {accountName, containerName, name, snapshot} and a block by {accountName,
 * containerName, blobName, name}, in that key order.
 */
const SELECTIVE_FIELD: Readonly<Record<string, string>> = { $BLOBS_COLLECTION$: "name", $BLOCKS_COLLECTION$: "blobName" };

/**
 * LokiJS answers a query on several fields through the index of the first field only, then scans
 * what that index returned: with the account name first (the same in every document), every blob
 * lookup scanned every blob of the account, so each storage request got slower as rounds added
 * blobs (K x 4 per round). Putting the field that tells documents apart first (a query's key order
 * does not change what it matches) makes the index lookup return the one document.
 */
function lookUpBlobsByName(db: LokiDb): void {
  for (const [name, field] of Object.entries(SELECTIVE_FIELD)) {
    const collection = db.getCollection(name);
    if (!collection?.binaryIndices[field]) continue;
    const chain = collection.chain.bind(collection);
    collection.chain = (transform?: unknown, parameters?: unknown) => {
      const resultset = chain(transform, parameters);
      if (transform !== undefined) return resultset;
      const find = resultset.find.bind(resultset);
      resultset.find = (query: unknown, firstOnly?: boolean) => find(selectiveFieldFirst(query, field), firstOnly);
      return resultset;
    };
  }
}

/** The same query with `field` first, when it is a plain equality on a string. */
export function selectiveFieldFirst(query: unknown, field: string): unknown {
  if (typeof query !== "object" || query === null || Array.isArray(query)) return query;
  const fields = query as Record<string, unknown>;
  const keys = Object.keys(fields);
  if (keys.length < 2 || keys[0] === field || typeof fields[field] !== "string") return query;
  const reordered: Record<string, unknown> = { [field]: fields[field] };
  for (const key of keys) if (key !== field) reordered[key] = fields[key];
  return reordered;
}

const KEEP_ALIVE_TIMEOUT_S = 5;
const EXTENT_WRITE_CONCURRENCY = 10;

function validateOptions(options: StartAzuriteOptions): AzuriteService[] {
  const services = [...(options.services ?? ALL_AZURITE_SERVICES)];
  for (const s of services) {
    if (!ALL_AZURITE_SERVICES.includes(s)) {
      throw new AzuriteOptionsError(`services: expected one of ${ALL_AZURITE_SERVICES.join("|")}, got ${JSON.stringify(s)}`);
    }
  }
  if (services.length === 0) throw new AzuriteOptionsError("services: expected at least one service, got []");
  for (const [service, port] of Object.entries(options.ports ?? {})) {
    if (port === undefined) continue;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new AzuriteOptionsError(`ports.${service}: expected an integer 0..65535, got ${port}`);
    }
  }
  if (options.durability !== undefined && options.durability !== "acknowledged" && options.durability !== "periodic") {
    throw new AzuriteOptionsError(`durability: expected "acknowledged" or "periodic", got ${JSON.stringify(options.durability)}`);
  }
  if (options.autosaveIntervalMs !== undefined && !(options.autosaveIntervalMs > 0)) {
    throw new AzuriteOptionsError(`autosaveIntervalMs: expected a positive number, got ${options.autosaveIntervalMs}`);
  }
  return [...new Set(services)];
}

function createServer(mod: AzuriteModules, service: AzuriteService, host: string, port: number, location: string | undefined, memoryStore: unknown): AzuriteServer {
  const inMemory = location === undefined;
  const file = (name: string) => (inMemory ? name : path.join(location, name));
  // Positional arguments mirror Azurite 3.35's *Configuration constructors (see azurite/dist/src/*/…Configuration.js).
  if (service === "table") {
    const config = new mod.TableConfiguration(
      host,
      port,
      KEEP_ALIVE_TIMEOUT_S,
      file("__azurite_db_table__.json"),
      false /* debug log */,
      false /* access log */,
      undefined,
      undefined,
      true /* loose */,
      true /* skipApiVersionCheck */,
      "",
      "",
      "",
      undefined,
      false,
      inMemory,
    );
    return new mod.TableServer(config);
  }
  const persistence = [
    {
      locationId: "Default",
      locationPath: file(service === "blob" ? "__blobstorage__" : "__queuestorage__"),
      maxConcurrency: EXTENT_WRITE_CONCURRENCY,
    },
  ];
  const Config = service === "blob" ? mod.BlobConfiguration : mod.QueueConfiguration;
  const Server = service === "blob" ? mod.BlobServer : mod.QueueServer;
  const config = new Config(
    host,
    port,
    KEEP_ALIVE_TIMEOUT_S,
    file(`__azurite_db_${service}__.json`),
    file(`__azurite_db_${service}_extent__.json`),
    persistence,
    false /* access log */,
    undefined,
    false /* debug log */,
    undefined,
    true /* loose */,
    true /* skipApiVersionCheck */,
    "",
    "",
    "",
    undefined,
    false,
    inMemory,
    memoryStore,
  );
  return new Server(config);
}

/**
 * Serializes saves of one Loki database so that a flush always waits for a save that started
 * after the caller's change (Loki's own throttling may answer with an older, in-flight save).
 */
class LokiFlusher {
  private running: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  constructor(private readonly db: LokiDb) {}

  /** True when everything changed so far is already on disk. */
  get settled(): boolean {
    return !this.running && !this.db.autosaveDirty();
  }

  flush(): Promise<void> {
    if (!this.db.autosaveDirty()) return this.running ?? Promise.resolve();
    if (this.queued) return this.queued;
    if (this.running) {
      const queued = this.running
        .catch(() => undefined)
        .then(() => {
          this.queued = undefined;
          return this.save();
        });
      this.queued = queued;
      return queued;
    }
    return this.save();
  }

  private save(): Promise<void> {
    if (!this.db.autosaveDirty()) return Promise.resolve();
    const run = new Promise<void>((resolve, reject) => {
      this.db.saveDatabase((err) => (err ? reject(err instanceof Error ? err : new Error("Azurite could not save its metadata", { cause: err })) : resolve()));
    }).finally(() => {
      if (this.running === run) this.running = undefined;
    });
    this.running = run;
    return run;
  }
}

/**
 * Holds every response while a metadata change is unsaved, reads included: a reader must not see
 * (and act on) data that a kill could still take back.
 */
function delayResponsesUntilSaved(httpServer: HttpServer, flushers: LokiFlusher[]): void {
  const listeners = httpServer.listeners("request") as Array<(req: IncomingMessage, res: ServerResponse) => void>;
  if (listeners.length !== 1) {
    throw new AzuriteError(`expected one request listener on the Azurite HTTP server, found ${listeners.length}`);
  }
  const [handle] = listeners;
  httpServer.removeAllListeners("request");
  httpServer.on("request", (req: IncomingMessage, res: ServerResponse) => {
    const end = res.end.bind(res);
    res.end = function endAfterSave(this: ServerResponse, ...args: unknown[]) {
      if (flushers.every((f) => f.settled)) return end.apply(this, args as never);
      Promise.all(flushers.map((f) => f.flush())).then(
        () => end.apply(this, args as never),
        (err: unknown) => this.destroy(err instanceof Error ? err : new Error(String(err))),
      );
      return this;
    } as typeof res.end;
    handle(req, res);
  });
}

const LOCK_FILE = "flo-azurite.lock";
/** Ports of the last run on a folder, reused so blob URIs (which embed the port) stay valid across restarts. */
const PORTS_FILE = "flo-azurite-ports.json";

async function readRememberedPorts(location: string): Promise<Partial<Record<AzuriteService, number>>> {
  try {
    const saved = JSON.parse(await fs.promises.readFile(path.join(location, PORTS_FILE), "utf8")) as { ports?: Record<string, unknown> };
    const out: Partial<Record<AzuriteService, number>> = {};
    for (const service of ALL_AZURITE_SERVICES) {
      const port = saved.ports?.[service];
      if (typeof port === "number" && Number.isInteger(port) && port > 0 && port < 65536) out[service] = port;
    }
    return out;
  } catch {
    return {}; // first run, or an unreadable file: choose free ports
  }
}
const locksHeldHere = new Set<string>();

/** Linux: a process's state and start time (clock ticks since boot) from /proc/<pid>/stat; undefined elsewhere or when gone. */
export function readProcessStat(pid: number): { state: string; startTime: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // The command name (field 2) is parenthesised and may hold spaces or ')': fields resume after the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // fields[0] is field 3 (state); field 22 (starttime) is fields[19].
  return fields.length > 19 ? { state: fields[0], startTime: fields[19] } : undefined;
}

const HAS_PROC = fs.existsSync("/proc/self/stat");

/**
 * Whether the lock's owner still runs. A zombie (killed, not yet reaped by its parent, e.g. `npx`)
 * holds no files and is not alive; a pid whose start time differs from the one in the lock was
 * reused by an unrelated process.
 */
export function lockOwnerAlive(pid: number, recordedStartTime: string | undefined): boolean {
  if (HAS_PROC) {
    const stat = readProcessStat(pid);
    if (!stat) return false;
    if (stat.state === "Z" || stat.state === "X") return false;
    return recordedStartTime === undefined || recordedStartTime === "" || stat.startTime === recordedStartTime;
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM"; // exists, owned by someone else
  }
}

/** How long a restart waits for a lock owner that is still exiting (SIGKILL is delivered asynchronously). */
const LOCK_OWNER_EXIT_WAIT_MS = 3000;

/** True when the owner is gone now or within LOCK_OWNER_EXIT_WAIT_MS (a killed process may still be tearing down). */
async function ownerGoneSoon(pid: number, startTime: string | undefined): Promise<boolean> {
  const deadline = Date.now() + LOCK_OWNER_EXIT_WAIT_MS;
  while (lockOwnerAlive(pid, startTime)) {
    if (Date.now() >= deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return true;
}

/**
 * One live Azurite per folder: two would overwrite each other's Loki files. The lock names the
 * owner's pid and (on Linux) its start time; a lock whose owner is dead, a zombie, or a different
 * process that reused the pid is taken over, and an owner that exits within a few seconds (a host
 * killed just before its restart) is waited for. Returns the release.
 */
async function lockLocation(location: string): Promise<() => Promise<void>> {
  const lockPath = path.join(location, LOCK_FILE);
  const token = `${process.pid}:start=${readProcessStat(process.pid)?.startTime ?? ""}:${Date.now()}:${Math.random()}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await fs.promises.writeFile(lockPath, token, { flag: "wx" });
      locksHeldHere.add(location);
      return async () => {
        locksHeldHere.delete(location);
        const current = await fs.promises.readFile(lockPath, "utf8").catch(() => "");
        if (current === token) await fs.promises.rm(lockPath, { force: true });
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const [pidText, startField] = (await fs.promises.readFile(lockPath, "utf8").catch(() => "")).split(":");
      // Locks written before start times were recorded hold `pid:<ms>:...`: no start time to compare.
      const startTime = startField?.startsWith("start=") ? startField.slice("start=".length) : undefined;
      const owner = Number(pidText);
      // Our own pid counts only if this process holds the lock: a container restart reuses pids
      // (often 1), so a lock from a dead earlier incarnation can carry our pid. This process holds
      // it if this thread does, or if its start time is ours (another thread, e.g. the embedded
      // host's Azurite thread: each thread has its own `locksHeldHere`).
      const ownStartTime = readProcessStat(process.pid)?.startTime;
      const heldByThisProcess = locksHeldHere.has(location) || (startTime !== undefined && startTime === ownStartTime);
      const liveOwner = owner === process.pid ? heldByThisProcess : Number.isInteger(owner) && owner > 0 && !(await ownerGoneSoon(owner, startTime));
      if (liveOwner) {
        throw new AzuriteLocationInUseError(location, owner, lockPath);
      }
      await fs.promises.rm(lockPath, { force: true }); // stale: its owner is gone
    }
  }
  throw new AzuriteLocationInUseError(location, undefined, lockPath);
}

function abortError(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException("startAzurite was aborted", "AbortError");
}

/**
 * Starts the requested Azurite services in this process. Resolves once every service listens.
 * On failure or abort, servers already started are closed before the promise rejects.
 */
export async function startAzurite(options: StartAzuriteOptions = {}): Promise<AzuriteHandle> {
  const services = validateOptions(options);
  const { signal } = options;
  if (signal?.aborted) throw abortError(signal);
  const host = options.host ?? "127.0.0.1";
  const location = options.location === undefined ? undefined : path.resolve(options.location);
  const durability = options.durability ?? "acknowledged";
  if (location !== undefined) {
    try {
      await fs.promises.mkdir(location, { recursive: true });
      await fs.promises.access(location, fs.constants.W_OK);
    } catch (err) {
      throw new AzuriteStartError(services[0], `location ${location} is not a writable folder: ${(err as Error).message}`, { cause: err });
    }
  }
  const unlock = location === undefined ? () => Promise.resolve() : await lockLocation(location);
  const mod = loadAzurite();
  // A store per launch (not Azurite's process-wide default) so stop() releases the memory.
  const memoryStore = location === undefined ? new mod.MemoryExtentChunkStore(options.memoryLimitBytes ?? mod.DEFAULT_EXTENT_MEMORY_LIMIT) : undefined;

  const started = new Map<AzuriteService, AzuriteServer>();
  const portsChanged: AzuriteService[] = [];
  const flushers: LokiFlusher[] = [];
  const closeStarted = async () => {
    await Promise.all(flushers.map((f) => f.flush().catch(() => undefined)));
    await Promise.allSettled([...started.values()].map((s) => s.close()));
    await unlock();
  };
  try {
    const remembered = location === undefined ? {} : await readRememberedPorts(location);
    /** Builds and starts one server; if it fails to start, releases what beforeStart() opened. */
    const launch = async (service: AzuriteService, port: number) => {
      const server = createServer(mod, service, host, port, location, memoryStore);
      const dbs = location === undefined ? [] : [server.metadataStore?.db, server.extentMetadataStore?.db].filter((d): d is LokiDb => !!d);
      const serviceFlushers = dbs.map((db) => new LokiFlusher(db));
      if (durability === "acknowledged" && dbs.length > 0) delayResponsesUntilSaved(server.httpServer, serviceFlushers);
      try {
        await server.start();
      } catch (err) {
        // A failed listen leaves the stores and GC loop that start() opened running; a GC loop
        // with stale metadata next to a live server on the same folder would delete its extents.
        await server.afterClose().catch(() => undefined);
        throw err;
      }
      for (const db of dbs) {
        db.autosaveDisable();
        if (durability === "periodic") {
          db.autosaveInterval = options.autosaveIntervalMs ?? 1000;
          db.autosaveEnable();
        }
      }
      if (service === "blob" && server.metadataStore?.db) lookUpBlobsByName(server.metadataStore.db);
      started.set(service, server);
      flushers.push(...serviceFlushers);
    };
    for (const service of services) {
      if (signal?.aborted) throw abortError(signal);
      const requested = options.ports?.[service];
      const previous = requested === undefined ? remembered[service] : undefined;
      try {
        try {
          await launch(service, requested ?? previous ?? 0);
        } catch (err) {
          if (previous === undefined || (err as NodeJS.ErrnoException).code !== "EADDRINUSE") throw err;
          // The remembered port is taken now: any free port still works, but URIs minted earlier
          // (they embed the port) will not resolve; `portsChanged` tells the caller.
          portsChanged.push(service);
          await launch(service, 0);
        }
      } catch (err) {
        throw new AzuriteStartError(service, (err as Error).message ?? String(err), { cause: err });
      }
    }
    if (signal?.aborted) throw abortError(signal);
    if (location !== undefined) {
      const ports = Object.fromEntries([...started].map(([service, server]) => [service, Number(new URL(server.getHttpServerAddress()).port)]));
      await fs.promises.writeFile(path.join(location, PORTS_FILE), JSON.stringify({ ports }, null, 2) + "\n");
    }
  } catch (err) {
    await closeStarted();
    throw err;
  }

  const endpoints = Object.fromEntries([...started].map(([service, server]) => [service, azuriteAccountUrl(server.getHttpServerAddress())]));
  return azuriteHandle({
    services,
    location,
    endpoints,
    portsChanged,
    flush: async () => {
      await Promise.all(flushers.map((f) => f.flush()));
    },
    stop: closeStarted,
  });
}

/**
 * The handle of running Azurite services from their endpoints (`http://127.0.0.1:<port>/<account>`
 * by service): the endpoint getters throw for a service not started, and `stop` runs once.
 */
export function azuriteHandle(parts: {
  services: readonly AzuriteService[];
  location: string | undefined;
  endpoints: Partial<Record<AzuriteService, string>>;
  portsChanged: readonly AzuriteService[];
  flush: () => Promise<void>;
  stop: () => Promise<void>;
}): AzuriteHandle {
  const endpoint = (service: AzuriteService): string => {
    const url = parts.endpoints[service];
    if (url === undefined) throw new AzuriteServiceNotStartedError(service, parts.services);
    return url;
  };
  let stopping: Promise<void> | undefined;
  return {
    accountName: AZURITE_ACCOUNT_NAME,
    accountKey: AZURITE_ACCOUNT_KEY,
    services: parts.services,
    location: parts.location,
    get blobEndpoint() {
      return endpoint("blob");
    },
    get queueEndpoint() {
      return endpoint("queue");
    },
    get tableEndpoint() {
      return endpoint("table");
    },
    connectionString: azuriteConnectionString({ blobEndpoint: parts.endpoints.blob, queueEndpoint: parts.endpoints.queue, tableEndpoint: parts.endpoints.table }),
    portsChanged: parts.portsChanged,
    flush: parts.flush,
    stop: () => (stopping ??= parts.stop()),
  };
}
