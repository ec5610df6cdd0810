/**
 * Decides where storage lives from app settings, the way the Functions host reads a connection:
 * production code asks "is a storage connection configured?", never "am I local?".
 *
 * - `<name>` (default `AzureWebJobsStorage`) holding a connection string -> that account
 *   (`UseDevelopmentStorage=true` expands to Azurite's default ports 10000-10002).
 * - `<name>__accountName` or `<name>__blobServiceUri` / `__queueServiceUri` / `__tableServiceUri`
 *   -> identity-based connection (managed identity / DefaultAzureCredential), as in Functions'
 *   identity-based connections; `<name>__clientId` selects a user-assigned identity.
 * - nothing -> the caller starts embedded Azurite.
 */
import { AZURITE_ACCOUNT_NAME, azuriteConnectionString } from "./devAccount";

export type StorageSettings =
  | {
      kind: "connectionString";
      /** The setting it came from, for messages (never log the value: it holds a key). */
      settingName: string;
      connectionString: string;
      /** Parsed endpoints (derived from AccountName + EndpointSuffix when not explicit). */
      blobServiceUri?: string;
      queueServiceUri?: string;
      tableServiceUri?: string;
    }
  | {
      kind: "identity";
      settingName: string;
      blobServiceUri?: string;
      queueServiceUri?: string;
      tableServiceUri?: string;
      /** Client id of a user-assigned managed identity, if configured. */
      clientId?: string;
    }
  | { kind: "embedded" };

export class StorageSettingsError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StorageSettingsError";
  }
}

export const DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage";

/** Splits `Key=Value;Key=Value;` (values may contain `=`, e.g. base64 keys). Keys are case-insensitive. */
export function parseConnectionString(connectionString: string, settingName = "connection string"): Map<string, string> {
  const parts = new Map<string, string>();
  // Messages name segments by position only: a malformed string may hold a key.
  connectionString.split(";").forEach((segment, index) => {
    const trimmed = segment.trim();
    if (trimmed === "") return;
    const eq = trimmed.indexOf("=");
    const key = eq > 0 ? trimmed.slice(0, eq).trim() : "";
    if (!/^[A-Za-z]{1,64}$/.test(key)) {
      throw new StorageSettingsError(`${settingName}: expected "Key=Value" segments separated by ";", segment ${index + 1} has no valid key (value not shown)`);
    }
    parts.set(key.toLowerCase(), trimmed.slice(eq + 1).trim());
  });
  return parts;
}

function normalizeUri(value: string, field: string): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new StorageSettingsError(`${field}: expected an absolute http(s) URL, got ${JSON.stringify(value)}`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new StorageSettingsError(`${field}: expected an http(s) URL, got protocol ${url.protocol}`);
  }
  return value.replace(/\/+$/, "");
}

function fromConnectionString(settingName: string, raw: string): StorageSettings {
  const value = raw.trim();
  if (/^usedevelopmentstorage=true;?$/i.test(value)) {
    const connectionString = azuriteConnectionString({
      blobEndpoint: `http://127.0.0.1:10000/${AZURITE_ACCOUNT_NAME}`,
      queueEndpoint: `http://127.0.0.1:10001/${AZURITE_ACCOUNT_NAME}`,
      tableEndpoint: `http://127.0.0.1:10002/${AZURITE_ACCOUNT_NAME}`,
    });
    return fromConnectionString(settingName, connectionString);
  }
  const parts = parseConnectionString(value, settingName);
  const accountName = parts.get("accountname");
  const protocol = parts.get("defaultendpointsprotocol") ?? "https";
  const suffix = parts.get("endpointsuffix") ?? "core.windows.net";
  const endpoint = (service: "blob" | "queue" | "table"): string | undefined => {
    const explicit = parts.get(`${service}endpoint`);
    if (explicit) return normalizeUri(explicit, `${settingName} ${service[0].toUpperCase()}${service.slice(1)}Endpoint`);
    return accountName ? `${protocol}://${accountName}.${service}.${suffix}` : undefined;
  };
  const hasKey = parts.has("accountkey") && !!accountName;
  const hasSas = parts.has("sharedaccesssignature");
  if (!hasKey && !hasSas) {
    throw new StorageSettingsError(`${settingName}: expected a storage connection string with AccountName + AccountKey or SharedAccessSignature, ` + `got keys [${[...parts.keys()].join(", ")}]`);
  }
  const settings = {
    kind: "connectionString" as const,
    settingName,
    connectionString: value,
    blobServiceUri: endpoint("blob"),
    queueServiceUri: endpoint("queue"),
    tableServiceUri: endpoint("table"),
  };
  if (!settings.blobServiceUri && !settings.queueServiceUri && !settings.tableServiceUri) {
    throw new StorageSettingsError(`${settingName}: a SharedAccessSignature connection needs BlobEndpoint, QueueEndpoint or TableEndpoint`);
  }
  return settings;
}

/**
 * Reads the storage connection named `settingName` from `env` (process.env or app settings).
 * Throws StorageSettingsError when a setting is present but malformed; returns `{kind: "embedded"}`
 * only when nothing is configured.
 */
export function storageSettingsFromEnv(env: Readonly<Record<string, string | undefined>>, settingName: string = DEFAULT_STORAGE_SETTING): StorageSettings {
  const get = (suffix: string): string | undefined => {
    // App settings use "__"; some hosts (Linux env vars) also accept ":" — honour both.
    const value = env[`${settingName}${suffix}`] ?? (suffix ? env[`${settingName}${suffix.replace("__", ":")}`] : undefined);
    return value !== undefined && value.trim() !== "" ? value.trim() : undefined;
  };
  const connection = get("");
  if (connection !== undefined) return fromConnectionString(settingName, connection);

  const accountName = get("__accountName");
  const explicit = {
    blob: get("__blobServiceUri") ?? get("__serviceUri"), // __serviceUri: the older, blob-only form
    queue: get("__queueServiceUri"),
    table: get("__tableServiceUri"),
  };
  if (accountName === undefined && !explicit.blob && !explicit.queue && !explicit.table) return { kind: "embedded" };
  if (accountName !== undefined && !/^[a-z0-9]{3,24}$/.test(accountName)) {
    throw new StorageSettingsError(`${settingName}__accountName: expected a storage account name (3-24 lower-case letters/digits), got ${JSON.stringify(accountName)}`);
  }
  const uri = (service: "blob" | "queue" | "table"): string | undefined => {
    const value = explicit[service];
    if (value) return normalizeUri(value, `${settingName}__${service}ServiceUri`);
    return accountName ? `https://${accountName}.${service}.core.windows.net` : undefined;
  };
  return {
    kind: "identity",
    settingName,
    blobServiceUri: uri("blob"),
    queueServiceUri: uri("queue"),
    tableServiceUri: uri("table"),
    clientId: get("__clientId"),
  };
}
