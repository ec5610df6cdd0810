/**
 * `startLocalHost`: the embedded Functions host. Starts (or connects to) storage, applies
 * local.settings.json, loads the app through the `@azure/functions-core` hook, and wires the
 * Durable engine, the HTTP front door (app routes + Durable management API), timer triggers and
 * Service Bus triggers. `stop()` releases every handle (servers, pollers, timers, Azurite).
 */
import * as fs from "fs";
import * as path from "path";
import { loadFunctionsApp, type FunctionRegistry } from "./functionsCore";
import { AppEntryError, resolveAppEntries, type AppEntries } from "./appEntry";
import { triggerBinding, createInvoker, type Invoker } from "./invoke";
import { RealClock, type CancelTimer, type Clock } from "./clock";
import { TEST_CLOCK_ROUTE, testClockHandler, testClockHookEnabled, type ClockOffset } from "./testClockHook";
import { applySettingsToEnv, loadHostJson, loadLocalSettings, resolveHostKeys, type HostConfig, type LocalSettings } from "./settings";
import { startGuardedServer, startHttpFrontDoor, type HttpFrontDoor, type HttpRoute, type MountedHandler } from "./triggers/http/frontDoor";
import { TimerTriggers } from "./triggers/timer/timerTriggers";
import { BlobTimerStatusStore, MemoryTimerStatusStore, type TimerStatusStore } from "./triggers/timer/statusStore";
import { LocalServiceBus } from "./triggers/serviceBus/serviceBusTriggers";
import { withServiceBusOutputs } from "./triggers/serviceBus/outputBindings";
import type { AzuriteHandle } from "../storage/azurite";
import { startAzuriteThread } from "../storage/azuriteThread";
import { DurableEngine } from "./durable/engine";
import { InMemoryDurableStore, type DurableStore } from "./durable/store";
import { AzuriteDurableStore } from "./durable/azuriteStore";
import { clientBindingData, createManagementHandler, RPC_PREFIX, WEBHOOK_PREFIX, websiteHostnameFor, type ManagementRequestHandler } from "./durable/managementApi";
import { randomBytes } from "crypto";

/** The host could not start (bad options, app failed to load, port taken, ...). */
export class LocalHostError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "LocalHostError";
  }
}

/** "memory" / "persisted" Azurite, or an existing account: `{connectionString}` or the connection string itself. */
export type LocalHostStorage = { connectionString: string } | string;

function normalizeStorage(storage: LocalHostStorage | undefined): "memory" | "persisted" | { connectionString: string } | undefined {
  if (typeof storage !== "string" || storage === "memory" || storage === "persisted") return storage;
  if (!/AccountName=|BlobEndpoint=|UseDevelopmentStorage=/i.test(storage)) {
    throw new LocalHostError(`storage: expected "memory", "persisted" or a storage connection string, got ${JSON.stringify(storage.slice(0, 30))}`);
  }
  return { connectionString: storage };
}

export interface StartLocalHostOptions {
  /** Compiled app entry (`dist/functions/index.js` or any module registering `app.*` functions), or an app folder whose package.json `main` is a file, folder or glob. */
  appEntry: string;
  /** HTTP port; default 7071, 0 = a free port. */
  port?: number;
  /** Data folder for persisted storage (`<dataDir>/azurite`); default `.flo`. */
  dataDir?: string;
  /** App settings: an object (the `Values` of local.settings.json) or a path to a local.settings.json. Default: `<appRoot>/local.settings.json` if present. */
  settings?: Record<string, string> | string;
  /** Settings used where neither the environment nor `settings` gives a (non-empty) value (e.g. `flo host` puts job folders under its data folder). */
  defaultSettings?: Record<string, string>;
  /** host.json path; default: the nearest host.json from the entry's folder upwards (defaults if none). */
  hostJson?: string;
  clock?: Clock;
  /** Default "persisted"; a `{connectionString}` (or a non-dev `AzureWebJobsStorage` setting) skips Azurite. */
  storage?: LocalHostStorage;
  /** Where startup and error lines go (never setting values). Default: console.error for errors only. */
  log?: (line: string) => void;
  /** Idle poll interval of the embedded Service Bus transport (default 200 ms). */
  serviceBusPollIntervalMs?: number;
  signal?: AbortSignal;
}

export interface LocalHost {
  /** `http://127.0.0.1:<port>` */
  readonly url: string;
  readonly functionKey: string;
  readonly masterKey: string;
  /** Base URL of the Durable management API (`<url>/runtime/webhooks/durabletask`); needs the master key. */
  readonly managementUrl: string;
  /** The app's durable clients call this key-less loopback listener (random port, secret path); never print it. */
  readonly rpcBaseUrl: string;
  readonly engine: DurableAttachment["engine"];
  readonly serviceBus: LocalServiceBus;
  readonly timers: TimerTriggers;
  readonly routes: HttpRoute[];
  readonly registry: FunctionRegistry;
  readonly invoker: Invoker;
  readonly hostConfig: HostConfig;
  /** The storage connection string the host (and the app, as AzureWebJobsStorage) uses. */
  readonly storageConnectionString: string;
  stop(): Promise<void>;
}

/**
 * Node's setTimeout may fire ~1 ms before `Date.now()` reaches the due time; a consumer that then
 * checks "is it due?" against the clock sees "not yet" and never looks again (observed as durable
 * timers stuck forever in ~2% of runs). This adapter re-arms until the clock has really reached `at`.
 */
export class NeverEarlyClock implements Clock {
  constructor(private readonly inner: Clock) {}
  now(): Date {
    return this.inner.now();
  }
  setTimer(at: Date, callback: () => void | Promise<void>): CancelTimer {
    let cancelInner: CancelTimer = () => undefined;
    let cancelled = false;
    const arm = (): void => {
      cancelInner = this.inner.setTimer(at, () => {
        if (cancelled) return;
        if (this.inner.now().getTime() < at.getTime()) return arm();
        return callback();
      });
    };
    arm();
    return () => {
      cancelled = true;
      cancelInner();
    };
  }
}

/** Durable triggers (orchestrations, activities) always run; other triggers honour the Disabled setting. */
const ALWAYS_ENABLED_TRIGGERS = new Set(["orchestrationTrigger", "activityTrigger", "entityTrigger"]);

/** The registry without functions whose `AzureWebJobs.<name>.Disabled` setting is true (or 1). */
export function withoutDisabledTriggers(registry: FunctionRegistry, settings: Record<string, string | undefined>): FunctionRegistry {
  const functions = new Map(
    [...registry.functions].filter(([name, fn]) => {
      const value = settings[`AzureWebJobs.${name}.Disabled`]?.trim().toLowerCase();
      if (value !== "true" && value !== "1") return true;
      return ALWAYS_ENABLED_TRIGGERS.has(triggerBinding(fn.metadata).type);
    }),
  );
  return { ...registry, functions };
}

/** Finds host.json: the entry's folder, then each parent. */
export function findHostJson(appEntry: string): string | undefined {
  let dir = path.dirname(path.resolve(appEntry));
  for (;;) {
    const candidate = path.join(dir, "host.json");
    if (fs.existsSync(candidate)) return candidate;
    const parent = path.dirname(dir);
    if (parent === dir) return undefined;
    dir = parent;
  }
}

function isDevStorage(value: string | undefined): boolean {
  return value === undefined || value.trim() === "" || /UseDevelopmentStorage\s*=\s*true/i.test(value);
}

function hostIdFor(appRoot: string): string {
  const base = path
    .basename(appRoot)
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "");
  return `flo-${base || "app"}`.slice(0, 32);
}

export async function startLocalHost(options: StartLocalHostOptions): Promise<LocalHost> {
  const log = options.log ?? (() => undefined);
  const logError = (where: string, err: unknown): void => {
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    (options.log ?? ((line: string) => console.error(line)))(`[error] ${where}: ${message}`);
  };
  let entries: AppEntries;
  try {
    entries = resolveAppEntries(options.appEntry);
  } catch (err) {
    if (err instanceof AppEntryError) throw new LocalHostError(err.message);
    throw err;
  }
  const appEntry = entries.files[0];
  const hostJsonPath = options.hostJson ?? (entries.appRoot && fs.existsSync(path.join(entries.appRoot, "host.json")) ? path.join(entries.appRoot, "host.json") : findHostJson(appEntry));
  const appRoot = entries.appRoot ?? (hostJsonPath ? path.dirname(hostJsonPath) : path.dirname(appEntry));
  // Moved only by the clock test hook (testClockHook.ts), which exists when its setting enables it.
  const clockOffset: ClockOffset = { ms: 0 };
  const clock = options.clock ?? new NeverEarlyClock(new RealClock({ nowMs: () => Date.now() + clockOffset.ms }));
  const dataDir = path.resolve(options.dataDir ?? ".flo");
  const storage = normalizeStorage(options.storage);

  // ---- settings (file values never override the real environment, like Core Tools) ----
  let local: LocalSettings;
  if (typeof options.settings === "string") local = loadLocalSettings(options.settings, { required: true });
  else if (options.settings) local = { values: { ...options.settings }, connectionStrings: {} };
  else local = loadLocalSettings(path.join(appRoot, "local.settings.json"));
  // An empty value in the settings file means "not set" (local.settings.sample.json leaves them empty).
  for (const [name, value] of Object.entries(options.defaultSettings ?? {})) if (!local.values[name]?.trim()) local.values[name] = value;
  const appliedNames = applySettingsToEnv(local.values);
  const cleanups: Array<() => Promise<void> | void> = [() => appliedNames.forEach((n) => delete process.env[n])];
  const runCleanups = async (): Promise<void> => {
    for (const cleanup of cleanups.splice(0).reverse()) {
      try {
        await cleanup();
      } catch (err) {
        logError("stop", err);
      }
    }
  };
  const settingsView = (): Record<string, string | undefined> => ({ ...local.values, ...process.env });

  try {
    options.signal?.throwIfAborted();
    const hostConfig = loadHostJson(hostJsonPath ?? path.join(appRoot, "host.json"), settingsView());
    const keys = resolveHostKeys(settingsView());

    // ---- storage ----
    let storageConnectionString: string;
    const configuredStorage = settingsView().AzureWebJobsStorage;
    if (typeof storage === "object") storageConnectionString = storage.connectionString;
    else if (storage === undefined && !isDevStorage(configuredStorage)) storageConnectionString = configuredStorage as string;
    else {
      const location = storage === "memory" ? undefined : path.join(dataDir, "azurite");
      if (location) fs.mkdirSync(location, { recursive: true });
      // On its own thread: this one serves the app, the Durable engine and the triggers.
      const azurite: AzuriteHandle = await startAzuriteThread({ location, signal: options.signal });
      cleanups.push(() => azurite.stop());
      storageConnectionString = azurite.connectionString;
      log(`Azurite ${location ? `persisted under ${location}` : "in memory"}: ${azurite.blobEndpoint}`);
    }
    if (isDevStorage(process.env.AzureWebJobsStorage)) {
      const previous = process.env.AzureWebJobsStorage;
      process.env.AzureWebJobsStorage = storageConnectionString;
      cleanups.push(() => {
        if (previous === undefined) delete process.env.AzureWebJobsStorage;
        else process.env.AzureWebJobsStorage = previous;
      });
    }

    // ---- app ----
    options.signal?.throwIfAborted();
    const registry = loadFunctionsApp(entries.files, entries.appRoot ? { appRoot: entries.appRoot } : {});
    // Like the Functions host, `AzureWebJobs.<name>.Disabled` stops a function's trigger from firing.
    const triggers = withoutDisabledTriggers(registry, settingsView());
    for (const name of registry.functions.keys()) if (!triggers.functions.has(name)) log(`Function ${name} is disabled (AzureWebJobs.${name}.Disabled)`);
    // Service Bus output bindings are sent by the host after each invocation (whatever the trigger).
    let serviceBus: LocalServiceBus | undefined;
    const invoker = withServiceBusOutputs(
      createInvoker(registry),
      async (entity, messages, connection) => {
        if (!serviceBus) throw new LocalHostError(`Service Bus output to "${entity}" before the host's Service Bus side exists`);
        await serviceBus.send(entity, messages, { connection });
      },
      settingsView(),
    );

    // ---- Service Bus (receivers start last; the producer side is needed by output bindings) ----
    let origin = "";
    let clientPayload: (() => unknown) | undefined;
    serviceBus = new LocalServiceBus({
      registry: triggers,
      invoker,
      settings: settingsView(),
      options: hostConfig.serviceBus,
      storageConnectionString,
      clientBindingData: () => clientPayload?.(),
      pollIntervalMs: options.serviceBusPollIntervalMs,
      onError: (where, err) => logError(where, err),
    });
    const bus = serviceBus;
    cleanups.push(() => bus.stop());

    // ---- durable engine + front door (the engine's client payloads need the server's URL) ----
    const durable = await attachDurableEngine({
      registry,
      invoker,
      clock,
      hostConfig,
      storageConnectionString,
      storage: storage ?? "persisted",
      logError,
      masterKey: keys.masterKey,
      publicOrigin: () => origin,
    });
    cleanups.push(() => durable.stop());
    await durable.start();
    const mounts: Array<{ pathPrefix: string; handler: MountedHandler }> = [...durable.mounts];
    if (!options.clock && testClockHookEnabled(settingsView())) mounts.push({ pathPrefix: TEST_CLOCK_ROUTE, handler: testClockHandler(clockOffset, keys.masterKey) });
    const frontDoor: HttpFrontDoor = await startHttpFrontDoor({
      registry: triggers,
      invoker,
      routePrefix: hostConfig.routePrefix,
      keys,
      mounts,
      clientBindingData: durable.clientBindingData ? (o) => durable.clientBindingData!(o) : undefined,
      port: options.port ?? 7071,
      onError: (fn, err) => logError(fn, err),
    });
    origin = frontDoor.url;
    cleanups.push(() => frontDoor.close());
    if (process.env.WEBSITE_HOSTNAME === undefined) {
      // df.getClient rewrites the client's URL origins to localhost:7071 unless this is set.
      process.env.WEBSITE_HOSTNAME = websiteHostnameFor(origin);
      cleanups.push(() => {
        delete process.env.WEBSITE_HOSTNAME;
      });
    }
    if (durable.clientBindingData) clientPayload = () => durable.clientBindingData!(origin);

    // ---- timers ----
    const timerStore: TimerStatusStore = storage === "memory" ? new MemoryTimerStatusStore() : new BlobTimerStatusStore(storageConnectionString, hostIdFor(appRoot));
    const timers = new TimerTriggers({
      registry: triggers,
      invoker,
      clock,
      store: timerStore,
      settings: settingsView(),
      clientBindingData: clientPayload,
      onError: (fn, err) => logError(fn, err),
    });
    cleanups.push(() => timers.stop());

    await timers.start();
    bus.start();
    // Stop order (cleanups run in reverse): Service Bus receivers first, so in-flight handlers can
    // still reach the engine and the front door; then timers, the front door, the engine, storage.
    cleanups.push(() => bus.stop());

    const managementUrl = `${origin}/runtime/webhooks/durabletask`;
    let stopped: Promise<void> | undefined;
    return {
      url: origin,
      functionKey: keys.functionKey,
      masterKey: keys.masterKey,
      managementUrl,
      rpcBaseUrl: durable.rpcBaseUrl,
      engine: durable.engine,
      serviceBus: bus,
      timers,
      routes: frontDoor.routes,
      registry,
      invoker,
      hostConfig,
      storageConnectionString,
      stop: () => (stopped ??= runCleanups()),
    };
  } catch (err) {
    await runCleanups();
    if (err instanceof LocalHostError) throw err;
    throw new LocalHostError(`flo host failed to start: ${(err as Error)?.message ?? String(err)}`, { cause: err });
  }
}

// ---------------------------------------------------------------------------------------------
// Durable engine wiring (kept here so the host owns its adapter onto the engine's API).

interface DurableAttachOptions {
  registry: FunctionRegistry;
  invoker: Invoker;
  clock: Clock;
  hostConfig: HostConfig;
  storageConnectionString: string;
  storage: LocalHostStorage;
  logError: (where: string, err: unknown) => void;
  masterKey: string;
  /** The public listener's origin (known once the front door listens). */
  publicOrigin: () => string;
}

interface DurableAttachment {
  engine: DurableEngine;
  rpcBaseUrl: string;
  mounts: Array<{ pathPrefix: string; handler: MountedHandler }>;
  clientBindingData?: (origin: string) => unknown;
  start(): Promise<void>;
  stop(): Promise<void>;
}

async function attachDurableEngine(options: DurableAttachOptions): Promise<DurableAttachment> {
  // "memory" loses everything on stop anyway, so it skips the table round trips.
  const store: DurableStore =
    options.storage === "memory" ? new InMemoryDurableStore() : await AzuriteDurableStore.open({ connectionString: options.storageConnectionString, taskHubName: options.hostConfig.hubName });
  let engine: DurableEngine | undefined;
  let publicManagement: ManagementRequestHandler | undefined;
  let rpcManagement: ManagementRequestHandler | undefined;
  // The durable client sends no key (it calls rpcBaseUrl), so its API lives on a second loopback
  // listener, on a random port under a random path, like the extension's local RPC endpoint.
  const rpcPrefix = `/${randomBytes(18).toString("base64url")}${RPC_PREFIX}`;
  const rpcServer = await startGuardedServer({
    hostname: "127.0.0.1",
    port: 0,
    handle: async (req, res) => {
      if (rpcManagement && (await rpcManagement(req, res))) return;
      res.writeHead(404, { "content-length": 0, connection: "close" });
      res.end();
    },
    onError: (where, err) => options.logError(`durable rpc ${where}`, err),
  });
  const rpcBaseUrl = `${rpcServer.url}${rpcPrefix}`;
  const publicUrls = (): { origin: string; masterKey: string } => ({ origin: options.publicOrigin(), masterKey: options.masterKey });
  return {
    get engine(): DurableEngine {
      if (!engine) throw new LocalHostError("the Durable engine is not started yet");
      return engine;
    },
    rpcBaseUrl,
    // The public form of the management API: the master key is required.
    mounts: [
      {
        pathPrefix: WEBHOOK_PREFIX,
        handler: (req, res) => {
          if (!publicManagement) return false;
          return publicManagement(req, res);
        },
      },
    ],
    clientBindingData: (origin) => clientBindingData({ origin, taskHubName: options.hostConfig.hubName, masterKey: options.masterKey, rpcBaseUrl }),
    async start() {
      engine = await DurableEngine.start({
        invoker: options.invoker,
        store,
        clock: options.clock,
        taskHubName: options.hostConfig.hubName,
        logger: (level, message) => (level === "info" ? undefined : options.logError("durable", new Error(message))),
      });
      publicManagement = createManagementHandler(engine, { masterKey: options.masterKey, prefixes: [WEBHOOK_PREFIX], publicUrls });
      rpcManagement = createManagementHandler(engine, { prefixes: [rpcPrefix], publicUrls });
    },
    async stop() {
      // In-flight activities may still call their durable client: the RPC listener closes after the engine.
      await engine?.stop();
      await rpcServer.close();
      await store.close();
    },
  };
}
