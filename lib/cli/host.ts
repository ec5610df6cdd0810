/**
 * `flo host <app-entry.js>`: runs a Functions v4 + Durable Functions app on flo's embedded local host,
 * printing the function table and the management URL like `func start`, until SIGINT/SIGTERM.
 */
import { resolve } from "node:path";
import type { Command } from "commander";
// Types only: the runtime (Azurite, Azure SDKs) loads when the command runs, not for `flo --help`.
import type { LocalHost, LocalHostStorage } from "../runtime/host";
import { triggerBinding } from "../runtime/invoke";
import { LocalComputeSettings } from "../compute/local/settings";

/** A CLI option value that is not acceptable. */
export class HostCliError extends Error {
  constructor(
    readonly option: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`${option}: expected ${expected}, got ${got}`);
    this.name = "HostCliError";
  }
}

export function parsePort(text: string): number {
  const port = Number(text);
  if (!/^\d+$/.test(text) || !Number.isInteger(port) || port < 0 || port > 65535) throw new HostCliError("--port", "an integer 0..65535", JSON.stringify(text));
  return port;
}

export function parseStorage(text: string): LocalHostStorage {
  if (text === "memory" || text === "persisted") return text;
  if (/AccountName=|BlobEndpoint=|UseDevelopmentStorage=/i.test(text)) return { connectionString: text };
  throw new HostCliError("--storage", '"memory", "persisted" or a storage connection string', JSON.stringify(text.slice(0, 30)));
}

/** The startup banner: one line per function (HTTP with its URL), then the management URL. */
export function formatFunctionTable(host: LocalHost): string[] {
  const lines: string[] = ["Functions:", ""];
  const routes = new Map(host.routes.map((r) => [r.functionName, r]));
  const sbByName = new Map(host.serviceBus.describeTriggers().map((t) => [t.functionName, t]));
  const timers = new Map(host.timers.triggers.map((t) => [t.functionName, t]));
  const prefix = host.hostConfig.routePrefix ? `/${host.hostConfig.routePrefix}` : "";
  for (const [name, fn] of [...host.registry.functions].sort(([a], [b]) => a.localeCompare(b))) {
    const route = routes.get(name);
    if (route) {
      const methods = route.methods.length ? route.methods.join(",") : "*";
      const auth = route.authLevel === "anonymous" ? "" : ` (authLevel ${route.authLevel})`;
      lines.push(`        ${name}: [${methods}] ${host.url}${prefix}/${route.template.replace(/^\/+/, "")}${auth}`);
      continue;
    }
    let type = "unknown";
    try {
      type = triggerBinding(fn.metadata).type;
    } catch {
      // a registration without a trigger is listed as unknown
    }
    const timer = timers.get(name);
    const sb = sbByName.get(name);
    if (timer) lines.push(`        ${name}: timerTrigger (${timer.schedule.expression}${timer.runOnStartup ? ", runOnStartup" : ""})`);
    else if (sb) lines.push(`        ${name}: serviceBusTrigger (${sb.source} via ${sb.transport})`);
    else lines.push(`        ${name}: ${type}`);
  }
  lines.push("", `Durable management API: ${host.managementUrl}`);
  return lines;
}

export interface RunHostOptions {
  port?: string;
  data?: string;
  settings?: string;
  storage?: string;
}

/** Starts the host and resolves when it has stopped after SIGINT/SIGTERM. */
export async function runHost(appEntry: string, options: RunHostOptions, out: (line: string) => void = (l) => console.log(l)): Promise<void> {
  const port = options.port === undefined ? 7071 : parsePort(options.port);
  const storage = options.storage === undefined ? undefined : parseStorage(options.storage);
  const { startLocalHost } = await import("../runtime/host");
  const dataDir = options.data ?? ".flo";
  const host = await startLocalHost({
    appEntry,
    port,
    dataDir,
    settings: options.settings,
    // Local silo jobs live in the data folder too (`.flo/jobs` by default), unless a setting says otherwise.
    defaultSettings: { [LocalComputeSettings.jobsDir]: resolve(dataDir, "jobs") },
    storage,
    log: (line) => console.error(line),
  });
  for (const line of formatFunctionTable(host)) out(line);
  if (!process.env.FLO_FUNCTION_KEY) out(`Function key (generated for this run; set FLO_FUNCTION_KEY to fix it): ${host.functionKey}`);
  if (!process.env.FLO_MASTER_KEY) out(`Master key for the Durable management API (generated for this run; set FLO_MASTER_KEY to fix it): ${host.masterKey}`);
  out(`Host started at ${host.url}. Press Ctrl+C to stop.`);
  await new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals): void => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      out(`${signal}: stopping…`);
      host.stop().then(resolve, (err) => {
        console.error(`stop failed: ${(err as Error).message}`);
        resolve();
      });
    };
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);
  });
  out("Host stopped.");
}

export function register(command: Command): void {
  command
    .argument("<app-entry>", "compiled app entry module (e.g. dist/functions/index.js), or an app folder whose package.json main is a file, folder or glob")
    .option("--port <port>", "HTTP port (0 = any free port)", "7071")
    .option("--data <dir>", "data folder; Azurite persists under <dir>/azurite, local silo jobs under <dir>/jobs", ".flo")
    .option("--settings <file>", "local.settings.json to load (default: next to host.json, if present)")
    .option("--storage <mode>", 'storage: "persisted" (default), "memory", or a storage connection string')
    .action(async (appEntry: string, opts: RunHostOptions) => {
      await runHost(appEntry, opts);
      // Like the Functions host ending its worker: the app's own clients (e.g. a Service Bus
      // connection held by a module) must not keep a stopped host's process alive.
      process.exit(process.exitCode ?? 0);
    });
}
