/**
 * Local host settings: `local.settings.json` (app settings, like Core Tools) and `host.json` (the parts the
 * local host honours: HTTP route prefix, Durable hub name, Service Bus trigger options).
 *
 * Values are secrets-by-default: this module never logs them; callers print setting NAMES only.
 */
import * as fs from "fs";
import { randomBytes } from "crypto";

/** A settings file is missing a field, has the wrong type, or is not JSON. */
export class SettingsError extends Error {
  constructor(
    readonly file: string,
    readonly field: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`${file}: ${field}: expected ${expected}, got ${got}`);
    this.name = "SettingsError";
  }
}

export interface LocalSettings {
  /** `Values`: app settings exposed to the app as environment variables. */
  values: Record<string, string>;
  /** `ConnectionStrings` (kept for completeness; the Node worker does not expose them). */
  connectionStrings: Record<string, string>;
  /** The file the settings came from, or undefined when none was loaded. */
  file?: string;
}

export interface ServiceBusHostOptions {
  /**
   * Deliveries before a message is dead-lettered. In real Service Bus this is a property of the QUEUE
   * (default 10), not of host.json; the local transport reads it from the app setting
   * `FLO_SERVICEBUS_MAX_DELIVERY_COUNT`, else host.json `extensions.serviceBus.maxDeliveryCount`, else 10.
   */
  maxDeliveryCount: number;
  /** host.json `extensions.serviceBus.maxConcurrentCalls` (default 16): concurrent handler calls per trigger. */
  maxConcurrentCalls: number;
  /** Peek-lock duration. Real Service Bus: a queue property (default 1 min). Local: `FLO_SERVICEBUS_LOCK_DURATION` (TimeSpan) or 60 s. */
  lockDurationMs: number;
  /** host.json `extensions.serviceBus.maxAutoLockRenewalDuration` (default 5 min). */
  maxAutoLockRenewalDurationMs: number;
}

export interface HostConfig {
  /** host.json `extensions.http.routePrefix`; default "api"; "" means no prefix. */
  routePrefix: string;
  /** host.json `extensions.durableTask.hubName`; default "TestHubName" like the extension. */
  hubName: string;
  serviceBus: ServiceBusHostOptions;
  /** The file the config came from, or undefined for defaults. */
  file?: string;
}

const DEFAULT_SERVICE_BUS: ServiceBusHostOptions = {
  maxDeliveryCount: 10,
  maxConcurrentCalls: 16,
  lockDurationMs: 60_000,
  maxAutoLockRenewalDurationMs: 5 * 60_000,
};

function describe(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "array";
  if (typeof value === "string") return `string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + "…" : value)}`;
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- String() is reached only by primitives and functions
  return typeof value === "object" ? "object" : `${typeof value} ${String(value)}`;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function parseJsonFile(text: string, file: string): unknown {
  try {
    // host.json and local.settings.json may start with a BOM when written by Windows tools
    return JSON.parse(text.replace(/^\uFEFF/, ""));
  } catch (err) {
    throw new SettingsError(file, "(file)", "valid JSON", `parse error: ${(err as Error).message}`);
  }
}

/** Parses the text of a local.settings.json. Values must be strings, numbers or booleans (Core Tools' rule). */
export function parseLocalSettings(text: string, file = "local.settings.json"): LocalSettings {
  const doc = parseJsonFile(text, file);
  if (!isPlainObject(doc)) throw new SettingsError(file, "(root)", "object", describe(doc));
  const values: Record<string, string> = {};
  const rawValues = doc.Values ?? {};
  if (!isPlainObject(rawValues)) throw new SettingsError(file, "Values", "object", describe(rawValues));
  for (const [name, value] of Object.entries(rawValues)) {
    if (typeof value === "string") values[name] = value;
    else if (typeof value === "number" || typeof value === "boolean") values[name] = String(value);
    else throw new SettingsError(file, `Values.${name}`, "string, number or boolean", describe(value));
  }
  const connectionStrings: Record<string, string> = {};
  const rawConnections = doc.ConnectionStrings ?? {};
  if (!isPlainObject(rawConnections)) throw new SettingsError(file, "ConnectionStrings", "object", describe(rawConnections));
  for (const [name, value] of Object.entries(rawConnections)) {
    if (typeof value !== "string") throw new SettingsError(file, `ConnectionStrings.${name}`, "string", describe(value));
    connectionStrings[name] = value;
  }
  return { values, connectionStrings, file };
}

/** Loads local.settings.json. A missing file is an error only when `required` (an explicit --settings). */
export function loadLocalSettings(file: string, options: { required?: boolean } = {}): LocalSettings {
  if (!fs.existsSync(file)) {
    if (options.required) throw new SettingsError(file, "(file)", "an existing local.settings.json", "no such file");
    return { values: {}, connectionStrings: {} };
  }
  return parseLocalSettings(fs.readFileSync(file, "utf8"), file);
}

/**
 * Copies settings into `env` without overriding variables already set (Core Tools gives the process
 * environment precedence). Returns the names applied, for a log line that never shows values.
 */
export function applySettingsToEnv(values: Record<string, string>, env: NodeJS.ProcessEnv = process.env): string[] {
  const applied: string[] = [];
  for (const [name, value] of Object.entries(values)) {
    if (env[name] === undefined) {
      env[name] = value;
      applied.push(name);
    }
  }
  return applied;
}

/** `FLO_RUNTIME_LOG_USER=1`: the host echoes the functions' own log lines (context.log) to stdout. */
export function echoUserLogs(env: Record<string, string | undefined> = process.env): boolean {
  return env.FLO_RUNTIME_LOG_USER === "1";
}

/** Parses a .NET TimeSpan string `[d.]hh:mm:ss[.fffffff]` into milliseconds. */
export function parseTimeSpan(text: string, field = "TimeSpan"): number {
  const match = /^(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2})(?:\.(\d{1,7}))?$/.exec(text.trim());
  if (!match) throw new SettingsError("(setting)", field, 'a TimeSpan like "00:05:00" or "1.00:00:00"', describe(text));
  const [, days, hours, minutes, seconds, fraction] = match;
  const fractionMs = fraction ? Number(`0.${fraction}`) * 1000 : 0;
  return ((Number(days ?? 0) * 24 + Number(hours)) * 60 + Number(minutes)) * 60_000 + Number(seconds) * 1000 + fractionMs;
}

function positiveInt(value: unknown, file: string, field: string): number {
  const n = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) throw new SettingsError(file, field, "a positive integer", describe(value));
  return n;
}

/**
 * Parses host.json, with app-setting overrides `AzureFunctionsJobHost__extensions__serviceBus__<option>`
 * (the Functions host's override convention) and flo's local-only settings.
 */
export function parseHostJson(text: string | undefined, file = "host.json", settings: Record<string, string | undefined> = {}): HostConfig {
  const doc = text === undefined ? {} : parseJsonFile(text, file);
  if (!isPlainObject(doc)) throw new SettingsError(file, "(root)", "object", describe(doc));
  const extensions = doc.extensions ?? {};
  if (!isPlainObject(extensions)) throw new SettingsError(file, "extensions", "object", describe(extensions));

  const http = extensions.http ?? {};
  if (!isPlainObject(http)) throw new SettingsError(file, "extensions.http", "object", describe(http));
  const rawPrefix = http.routePrefix ?? "api";
  if (typeof rawPrefix !== "string") throw new SettingsError(file, "extensions.http.routePrefix", "string", describe(rawPrefix));

  const durable = extensions.durableTask ?? {};
  if (!isPlainObject(durable)) throw new SettingsError(file, "extensions.durableTask", "object", describe(durable));
  const hubName = durable.hubName ?? "TestHubName";
  if (typeof hubName !== "string" || hubName === "") throw new SettingsError(file, "extensions.durableTask.hubName", "non-empty string", describe(hubName));

  const sbJson = extensions.serviceBus ?? {};
  if (!isPlainObject(sbJson)) throw new SettingsError(file, "extensions.serviceBus", "object", describe(sbJson));
  const override = (option: string): string | undefined => settings[`AzureFunctionsJobHost__extensions__serviceBus__${option}`];
  const pick = (option: string): unknown => override(option) ?? sbJson[option];

  const serviceBus: ServiceBusHostOptions = { ...DEFAULT_SERVICE_BUS };
  const maxDelivery = settings.FLO_SERVICEBUS_MAX_DELIVERY_COUNT ?? pick("maxDeliveryCount");
  if (maxDelivery !== undefined) {
    const field = settings.FLO_SERVICEBUS_MAX_DELIVERY_COUNT !== undefined ? "FLO_SERVICEBUS_MAX_DELIVERY_COUNT" : "extensions.serviceBus.maxDeliveryCount";
    serviceBus.maxDeliveryCount = positiveInt(maxDelivery, file, field);
  }
  const maxCalls = pick("maxConcurrentCalls");
  if (maxCalls !== undefined) serviceBus.maxConcurrentCalls = positiveInt(maxCalls, file, "extensions.serviceBus.maxConcurrentCalls");
  const renewal = pick("maxAutoLockRenewalDuration");
  if (renewal !== undefined) {
    if (typeof renewal !== "string") throw new SettingsError(file, "extensions.serviceBus.maxAutoLockRenewalDuration", "TimeSpan string", describe(renewal));
    serviceBus.maxAutoLockRenewalDurationMs = parseTimeSpan(renewal, "extensions.serviceBus.maxAutoLockRenewalDuration");
  }
  if (settings.FLO_SERVICEBUS_LOCK_DURATION !== undefined) {
    serviceBus.lockDurationMs = parseTimeSpan(settings.FLO_SERVICEBUS_LOCK_DURATION, "FLO_SERVICEBUS_LOCK_DURATION");
  }
  return { routePrefix: rawPrefix.replace(/^\/+|\/+$/g, ""), hubName, serviceBus, file: text === undefined ? undefined : file };
}

/** Loads host.json; a missing file yields the defaults (like a host started without one). */
export function loadHostJson(file: string, settings: Record<string, string | undefined> = {}): HostConfig {
  if (!fs.existsSync(file)) return parseHostJson(undefined, file, settings);
  return parseHostJson(fs.readFileSync(file, "utf8"), file, settings);
}

/** Keys for `authLevel: function` / `admin` and the Durable management API. */
export interface HostKeys {
  functionKey: string;
  /** The host's master key: `authLevel: admin` routes and the Durable management API (the real host's system key). */
  masterKey: string;
  /** True when the function key was generated because `FLO_FUNCTION_KEY` was unset (print it once). */
  generated: boolean;
  /** True when the master key was generated because `FLO_MASTER_KEY` was unset (print it once). */
  masterGenerated: boolean;
}

/**
 * `FLO_FUNCTION_KEY` is the key for `authLevel: function`; `FLO_MASTER_KEY` is also accepted there and is
 * the only key for `authLevel: admin` and the Durable management API. Unset: a random key per start.
 * The two must differ: whoever may call an app's function must not thereby manage every instance.
 */
export function resolveHostKeys(settings: Record<string, string | undefined>): HostKeys {
  const configured = settings.FLO_FUNCTION_KEY;
  const configuredMaster = settings.FLO_MASTER_KEY;
  const functionKey = configured && configured.length > 0 ? configured : randomBytes(24).toString("base64url");
  const masterKey = configuredMaster && configuredMaster.length > 0 ? configuredMaster : randomBytes(24).toString("base64url");
  if (masterKey === functionKey) {
    throw new SettingsError("(app settings)", "FLO_MASTER_KEY", "a key different from FLO_FUNCTION_KEY", "the same value");
  }
  return { functionKey, masterKey, generated: !configured, masterGenerated: !configuredMaster };
}

/**
 * Resolves `%SettingName%` binding expressions (used in schedules, queue names, topic names) like the
 * Functions host does; an unknown setting is an error naming the binding property.
 */
export function resolveAppSettingExpression(value: string, settings: Record<string, string | undefined>, field: string): string {
  return value.replace(/%([^%]+)%/g, (_, name: string) => {
    const resolved = settings[name];
    if (resolved === undefined) throw new SettingsError("(app settings)", field, `app setting "${name}" to be defined`, "undefined");
    return resolved;
  });
}
