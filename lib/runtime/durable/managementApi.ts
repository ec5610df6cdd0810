/**
 * The Durable Functions HTTP management API (HttpApiHandler) served by the local host, and the
 * client binding payload that makes the real `df.getClient(context)` talk to it.
 *
 * Served under both `/durabletask/` (the `rpcBaseUrl` the JS client prefers) and
 * `/runtime/webhooks/durabletask/` (the legacy templates in `managementUrls`).
 */
import type { IncomingMessage, ServerResponse } from "http";
import { DurableEngine, OrchestrationStatus, StatusQuery } from "./engine";
import { InstanceAlreadyExistsError, InstanceFinishedError, InstanceNotFoundError, OrchestratorNotFoundError } from "./errors";
import { RuntimeStatus, TERMINAL_STATUSES } from "./store";
import { closeIfBodyUnread, hasBody, isKeyAccepted, mediaType, readBodyCapped, RequestRefusedError } from "../triggers/http/requestGuard";

export const RPC_PREFIX = "/durabletask/";
export const WEBHOOK_PREFIX = "/runtime/webhooks/durabletask/";
const CONNECTION_NAME = "Storage";
const RUNTIME_STATUSES: RuntimeStatus[] = ["Pending", "Running", "Completed", "ContinuedAsNew", "Failed", "Terminated"];
/** Management bodies are orchestration inputs and event data: far below the host's general 100 MB. */
export const DEFAULT_MANAGEMENT_MAX_BODY_BYTES = 16 * 1024 * 1024;

export interface ClientBindingData {
  taskHubName: string;
  creationUrls: { createNewInstancePostUri: string; createAndWaitOnNewInstancePostUri: string };
  managementUrls: Record<string, string>;
  baseUrl: string;
  requiredQueryStringParameters: string;
  rpcBaseUrl: string;
}

function trimOrigin(origin: string): string {
  return origin.replace(/\/+$/, "");
}

export interface ClientBindingOptions {
  /** The public listener (e.g. "http://127.0.0.1:7071"): the webhook URLs handed to callers. */
  origin: string;
  taskHubName: string;
  /** The host's master key, appended as `code=` to the webhook URLs like the real host's system key. */
  masterKey?: string;
  /** Where the durable client sends its calls (the loopback RPC listener); default `<origin>/durabletask/`. */
  rpcBaseUrl?: string;
}

/**
 * The `durableClient` binding payload (BindingHelper.DurableOrchestrationClientToString). The JS
 * client makes its calls to `rpcBaseUrl` (no key: the RPC listener is loopback-only and its path is
 * secret); the other URLs are what `createCheckStatusResponse` hands to callers, so they carry the
 * key like the real host's URLs carry its system key. `getClient` rewrites their origins to
 * http://localhost:7071 unless WEBSITE_HOSTNAME is set (see `websiteHostnameFor`).
 */
export function clientBindingData(options: ClientBindingOptions): ClientBindingData {
  const base = `${trimOrigin(options.origin)}${WEBHOOK_PREFIX.replace(/\/$/, "")}`;
  const code = options.masterKey ? `&code=${encodeURIComponent(options.masterKey)}` : "";
  const common = `taskHub=${encodeURIComponent(options.taskHubName)}&connection=${CONNECTION_NAME}${code}`;
  const creationQuery = options.masterKey ? `?code=${encodeURIComponent(options.masterKey)}` : "";
  const instance = `${base}/instances/INSTANCEID`;
  return {
    taskHubName: options.taskHubName,
    creationUrls: {
      createNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]${creationQuery}`,
      createAndWaitOnNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}${code}`,
    },
    managementUrls: {
      id: "INSTANCEID",
      statusQueryGetUri: `${instance}?${common}`,
      sendEventPostUri: `${instance}/raiseEvent/{eventName}?${common}`,
      terminatePostUri: `${instance}/terminate?reason={text}&${common}`,
      rewindPostUri: `${instance}/rewind?reason={text}&${common}`,
      purgeHistoryDeleteUri: `${instance}?${common}`,
      restartPostUri: `${instance}/restart?${common}`,
      suspendPostUri: `${instance}/suspend?reason={text}&${common}`,
      resumePostUri: `${instance}/resume?reason={text}&${common}`,
    },
    baseUrl: base,
    requiredQueryStringParameters: "",
    rpcBaseUrl: options.rpcBaseUrl ?? `${trimOrigin(options.origin)}${RPC_PREFIX}`,
  };
}

/** Value for WEBSITE_HOSTNAME so `getClient` keeps our origin in the legacy URL templates. */
export function websiteHostnameFor(origin: string): string {
  return new URL(origin).host;
}

export interface ManagementHandlerOptions {
  /** Default page size of instance queries (`top` overrides it); further pages via `x-ms-continuation-token` (default 100). */
  pageSize?: number;
  /**
   * The master key every request must present (`x-functions-key`, else `?code=`), checked before
   * the body is read. Undefined only for the loopback RPC listener, whose path is the secret.
   */
  masterKey?: string;
  /** The path prefixes served (default both `/durabletask/` and `/runtime/webhooks/durabletask/`). */
  prefixes?: string[];
  /** Origin and key of the public listener, for the URLs in responses (default: the request's own origin, no key). */
  publicUrls?: () => { origin: string; masterKey?: string };
  /** Cap on request bodies (default 16 MB). */
  maxBodyBytes?: number;
}

export type ManagementRequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body?: unknown,
  ) {
    super(message);
  }
}

function parseJsonBody(text: string, what: string): unknown {
  if (text.trim() === "") return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `${what} must be JSON: ${(err as Error).message}`);
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? "" : JSON.stringify(body);
  res.writeHead(status, { "Content-Type": "application/json; charset=utf-8", "Content-Length": Buffer.byteLength(text), ...headers });
  res.end(text);
}

/** Like .NET DateTime.TryParse: an unparseable value counts as absent. */
function parseDate(value: string | null): Date | undefined {
  if (!value) return undefined;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? undefined : date;
}

/** Like the extension's TryGetIEnumerableQueryParameterValue: names that do not parse are skipped; none left = no filter. */
function parseStatuses(value: string | null): RuntimeStatus[] | undefined {
  if (!value) return undefined;
  const list = value
    .split(",")
    .map((s) => s.trim())
    .filter((s): s is RuntimeStatus => RUNTIME_STATUSES.includes(s as RuntimeStatus));
  return list.length > 0 ? list : undefined;
}

/** Like .NET bool.TryParse ("true"/"false", any case); anything else = `fallback`. */
function parseBoolean(value: string | null, fallback: boolean): boolean {
  const v = value?.trim().toLowerCase();
  return v === "true" ? true : v === "false" ? false : fallback;
}

/** Seconds as the extension reads `timeout` / `pollingInterval` (double.TryParse); undefined when absent or not a number. */
function parseSeconds(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const n = Number(value);
  return Number.isFinite(n) ? n : undefined;
}

function queryFrom(params: URLSearchParams): StatusQuery {
  return {
    createdTimeFrom: parseDate(params.get("createdTimeFrom")),
    createdTimeTo: parseDate(params.get("createdTimeTo")),
    runtimeStatus: parseStatuses(params.get("runtimeStatus")),
    instanceIdPrefix: params.get("instanceIdPrefix") ?? undefined,
  };
}

/** The real host's answer to a JSON-taking route called with another content type. */
const ONLY_JSON = "Only application/json request content is supported";

function isJsonMediaType(type: string): boolean {
  return type === "application/json";
}

export function createManagementHandler(engine: DurableEngine, options: ManagementHandlerOptions = {}): ManagementRequestHandler {
  const defaultPageSize = options.pageSize ?? 100;
  const prefixes = options.prefixes ?? [RPC_PREFIX, WEBHOOK_PREFIX];
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MANAGEMENT_MAX_BODY_BYTES;

  function publicUrls(req: IncomingMessage): { origin: string; masterKey?: string } {
    return options.publicUrls?.() ?? { origin: `http://${req.headers.host ?? "127.0.0.1"}` };
  }

  function managementPayload(req: IncomingMessage, instanceId: string, extraStatusQuery = ""): Record<string, string> {
    const { origin, masterKey } = publicUrls(req);
    const urls = clientBindingData({ origin, taskHubName: engine.taskHubName, masterKey }).managementUrls;
    const payload: Record<string, string> = {};
    for (const [key, template] of Object.entries(urls)) payload[key] = template.replace("INSTANCEID", encodeURIComponent(instanceId));
    payload.statusQueryGetUri += extraStatusQuery;
    return payload;
  }

  /** HandleGetStatusRequestAsync: 202 + Location while running; 500 for Failed when asked; else 200. */
  function sendStatus(req: IncomingMessage, res: ServerResponse, status: OrchestrationStatus, internalErrorOnFailure: boolean): void {
    if (status.runtimeStatus === "Failed") send(res, internalErrorOnFailure ? 500 : 200, status);
    else if (TERMINAL_STATUSES.has(status.runtimeStatus)) send(res, 200, status);
    else send(res, 202, status, { Location: managementPayload(req, status.instanceId).statusQueryGetUri, "Retry-After": "5" });
  }

  async function readJsonBody(req: IncomingMessage, what: string): Promise<unknown> {
    if (!hasBody(req)) return undefined;
    // A browser can send text/plain cross-site without a preflight; JSON routes take only JSON.
    if (!isJsonMediaType(mediaType(req))) throw new HttpError(400, ONLY_JSON);
    return parseJsonBody((await readBodyCapped(req, maxBodyBytes)).toString("utf8"), what);
  }

  /** Start-and-wait (WaitForCompletionOrCreateCheckStatusResponseAsync): the output when it completes in time. */
  async function startAndWait(req: IncomingMessage, res: ServerResponse, instanceId: string, timeoutSeconds: number, pollingSeconds: number): Promise<void> {
    if (pollingSeconds > timeoutSeconds) throw new HttpError(400, `Total timeout ${timeoutSeconds} should be bigger than retry timeout ${pollingSeconds}`);
    const status = await engine
      .waitForStatus(instanceId, (s) => TERMINAL_STATUSES.has(s.runtimeStatus) && s.runtimeStatus !== "ContinuedAsNew", { timeoutMs: Math.max(0, timeoutSeconds * 1000) })
      .catch(() => undefined);
    if (status?.runtimeStatus === "Completed") return send(res, 200, status.output);
    if (status) return sendStatus(req, res, status, false);
    const payload = managementPayload(req, instanceId);
    delete payload.rewindPostUri;
    send(res, 202, payload, { Location: payload.statusQueryGetUri, "Retry-After": "10" });
  }

  async function route(req: IncomingMessage, res: ServerResponse, method: string, segments: string[], params: URLSearchParams): Promise<void> {
    const [head, ...rest] = segments;
    if (head === "orchestrators" && method === "POST" && (rest.length === 1 || rest.length === 2)) {
      const input = await readJsonBody(req, "The request body (orchestration input)");
      const instanceId = await engine.startNew(rest[0], { instanceId: rest[1], input });
      const timeout = parseSeconds(params.get("timeout"));
      const polling = parseSeconds(params.get("pollingInterval"));
      if (timeout !== undefined && polling !== undefined) return startAndWait(req, res, instanceId, timeout, polling);
      const payload: Record<string, string> = { ...managementPayload(req, instanceId), id: instanceId };
      delete payload.rewindPostUri;
      send(res, 202, payload, { Location: payload.statusQueryGetUri, "Retry-After": "10" });
      return;
    }
    if (head === "entities") throw new HttpError(501, "Durable entities are not supported by flo's local runtime");
    if (head !== "instances") throw new HttpError(404, `Unknown durable task route '${segments.join("/")}'`);
    if (rest.length === 0) {
      const query = queryFrom(params);
      if (method === "GET") {
        const all = engine.list(query, { showInput: parseBoolean(params.get("showInput"), true) });
        const top = Number(params.get("top"));
        const pageSize = Number.isInteger(top) && top > 0 ? top : defaultPageSize;
        const start = Number(req.headers["x-ms-continuation-token"] ?? 0) || 0;
        const page = all.slice(start, start + pageSize);
        const headers: Record<string, string> = {};
        if (start + pageSize < all.length) headers["x-ms-continuation-token"] = String(start + pageSize);
        send(res, 200, page, headers);
        return;
      }
      if (method === "DELETE") {
        // HandleDeleteHistoryWithFiltersRequestAsync: a filter purge needs a lower bound; the upper defaults to now.
        if (!query.createdTimeFrom) throw new HttpError(400, "Please provide value for 'createdTimeFrom' parameter.", "Please provide value for 'createdTimeFrom' parameter.");
        const deleted = await engine.purgeBy({ ...query, createdTimeTo: query.createdTimeTo ?? new Date() });
        send(res, deleted > 0 ? 200 : 404, { instancesDeleted: deleted });
        return;
      }
      throw new HttpError(405, `${method} is not supported on instances/`);
    }
    const instanceId = rest[0];
    const action = rest[1];
    if (!action) {
      if (method === "GET") {
        const showHistory = parseBoolean(params.get("showHistory"), false);
        if (showHistory) await engine.loadHistory(instanceId);
        const status = engine.getStatus(instanceId, {
          showHistory,
          showHistoryOutput: parseBoolean(params.get("showHistoryOutput"), false),
          showInput: parseBoolean(params.get("showInput"), true),
        });
        if (!status) throw new HttpError(404, `No instance with id '${instanceId}' was found`);
        sendStatus(req, res, status, parseBoolean(params.get("returnInternalServerErrorOnFailure"), false));
        return;
      }
      if (method === "DELETE") {
        const deleted = await engine.purge(instanceId);
        send(res, deleted > 0 ? 200 : 404, { instancesDeleted: deleted });
        return;
      }
      throw new HttpError(405, `${method} is not supported on instances/{id}`);
    }
    if (method !== "POST") throw new HttpError(405, `${method} is not supported on instances/{id}/${action}`);
    if (action === "raiseEvent" && rest.length === 3) {
      // HandleRaiseEventRequestAsync: 404 / 410 first, then the media type must be application/json, even for an empty body.
      const current = engine.getStatus(instanceId, { showInput: false });
      if (!current) throw new InstanceNotFoundError(instanceId);
      if (TERMINAL_STATUSES.has(current.runtimeStatus)) throw new InstanceFinishedError(instanceId, current.runtimeStatus);
      if (!isJsonMediaType(mediaType(req))) throw new HttpError(400, ONLY_JSON);
      const data = await readJsonBody(req, "The event data");
      await engine.raiseEvent(instanceId, rest[2], data);
      send(res, 202, undefined);
      return;
    }
    if (action === "terminate") {
      await engine.terminate(instanceId, params.get("reason") ?? undefined);
      send(res, 202, undefined);
      return;
    }
    if (["suspend", "resume", "rewind", "restart"].includes(action)) throw new HttpError(501, `${action} is not supported by flo's local runtime`);
    throw new HttpError(404, `Unknown instance action '${action}'`);
  }

  return async (req, res) => {
    const url = new URL(req.url ?? "/", "http://local");
    const pathname = url.pathname;
    const lower = pathname.toLowerCase();
    const prefix = prefixes.find((p) => lower.startsWith(p.toLowerCase()) || `${lower}/` === p.toLowerCase());
    if (!prefix) return false;
    const segments = pathname.slice(prefix.length).split("/").filter(Boolean).map(decodeURIComponent);
    const method = (req.method ?? "GET").toUpperCase();
    try {
      if (options.masterKey !== undefined && !isKeyAccepted(req, url, [options.masterKey])) {
        throw new HttpError(401, "The Durable management API requires the host's master key (x-functions-key header or ?code=)");
      }
      await route(req, res, method, segments, url.searchParams);
    } catch (err) {
      const status =
        err instanceof HttpError || err instanceof RequestRefusedError
          ? err.status
          : err instanceof InstanceNotFoundError
            ? 404
            : err instanceof InstanceFinishedError
              ? 410
              : err instanceof OrchestratorNotFoundError
                ? 400
                : err instanceof InstanceAlreadyExistsError
                  ? 500
                  : err instanceof RangeError
                    ? 400
                    : 500;
      closeIfBodyUnread(req, res);
      if (!res.headersSent) send(res, status, err instanceof HttpError && err.body !== undefined ? err.body : { Message: (err as Error).message });
    }
    return true;
  };
}
