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

export const RPC_PREFIX = "/durabletask/";
export const WEBHOOK_PREFIX = "/runtime/webhooks/durabletask/";
const CONNECTION_NAME = "Storage";
const RUNTIME_STATUSES: RuntimeStatus[] = ["Pending", "Running", "Completed", "ContinuedAsNew", "Failed", "Terminated"];

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

/**
 * The `durableClient` binding payload (BindingHelper.DurableOrchestrationClientToString) for a
 * host listening at `origin` (e.g. "http://127.0.0.1:7071"). `rpcBaseUrl` is what the JS client
 * uses for its calls; note that `getClient` rewrites the other URLs' origins to
 * http://localhost:7071 unless WEBSITE_HOSTNAME is set (see `websiteHostnameFor`).
 */
export function clientBindingData(origin: string, taskHubName: string): ClientBindingData {
  const base = `${trimOrigin(origin)}${WEBHOOK_PREFIX.replace(/\/$/, "")}`;
  const common = `taskHub=${encodeURIComponent(taskHubName)}&connection=${CONNECTION_NAME}`;
  const instance = `${base}/instances/INSTANCEID`;
  return {
    taskHubName,
    creationUrls: {
      createNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]`,
      createAndWaitOnNewInstancePostUri: `${base}/orchestrators/{functionName}[/{instanceId}]?timeout={timeoutInSeconds}&pollingInterval={intervalInSeconds}`,
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
    rpcBaseUrl: `${trimOrigin(origin)}${RPC_PREFIX}`,
  };
}

/** Value for WEBSITE_HOSTNAME so `getClient` keeps our origin in the legacy URL templates. */
export function websiteHostnameFor(origin: string): string {
  return new URL(origin).host;
}

export interface ManagementHandlerOptions {
  /** Page size of instance queries; further pages via `x-ms-continuation-token` (default 100). */
  pageSize?: number;
}

export type ManagementRequestHandler = (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer | string>) chunks.push(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString("utf8");
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

function parseDate(value: string | null, field: string): Date | undefined {
  if (!value) return undefined;
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) throw new HttpError(400, `${field} must be an ISO date, got '${value}'`);
  return date;
}

function parseStatuses(value: string | null): RuntimeStatus[] | undefined {
  if (!value) return undefined;
  const list = value.split(",").map((s) => s.trim()).filter(Boolean);
  for (const s of list) {
    if (!RUNTIME_STATUSES.includes(s as RuntimeStatus)) throw new HttpError(400, `runtimeStatus '${s}' is not one of ${RUNTIME_STATUSES.join(", ")}`);
  }
  return list as RuntimeStatus[];
}

function queryFrom(params: URLSearchParams): StatusQuery {
  return {
    createdTimeFrom: parseDate(params.get("createdTimeFrom"), "createdTimeFrom"),
    createdTimeTo: parseDate(params.get("createdTimeTo"), "createdTimeTo"),
    runtimeStatus: parseStatuses(params.get("runtimeStatus")),
    instanceIdPrefix: params.get("instanceIdPrefix") ?? undefined,
  };
}

/** The request's origin as the client sees it (Host header), for the URLs we hand back. */
function requestOrigin(req: IncomingMessage): string {
  return `http://${req.headers.host ?? "127.0.0.1"}`;
}

export function createManagementHandler(engine: DurableEngine, options: ManagementHandlerOptions = {}): ManagementRequestHandler {
  const pageSize = options.pageSize ?? 100;

  function managementPayload(origin: string, instanceId: string): Record<string, string> {
    const urls = clientBindingData(origin, engine.taskHubName).managementUrls;
    const payload: Record<string, string> = {};
    for (const [key, template] of Object.entries(urls)) payload[key] = template.replace("INSTANCEID", encodeURIComponent(instanceId));
    return payload;
  }

  function sendStatus(res: ServerResponse, origin: string, status: OrchestrationStatus): void {
    if (TERMINAL_STATUSES.has(status.runtimeStatus)) send(res, 200, status);
    else send(res, 202, status, { Location: managementPayload(origin, status.instanceId).statusQueryGetUri, "Retry-After": "5" });
  }

  async function route(req: IncomingMessage, res: ServerResponse, method: string, segments: string[], params: URLSearchParams): Promise<void> {
    const origin = requestOrigin(req);
    const [head, ...rest] = segments;
    if (head === "orchestrators" && method === "POST" && (rest.length === 1 || rest.length === 2)) {
      const input = parseJsonBody(await readBody(req), "The request body (orchestration input)");
      const instanceId = await engine.startNew(rest[0], { instanceId: rest[1], input });
      const payload: Record<string, string> = { ...managementPayload(origin, instanceId), id: instanceId };
      delete payload.rewindPostUri;
      send(res, 202, payload, { Location: payload.statusQueryGetUri, "Retry-After": "10" });
      return;
    }
    if (head === "entities") throw new HttpError(501, "Durable entities are not supported by flo's local runtime");
    if (head !== "instances") throw new HttpError(404, `Unknown durable task route '${segments.join("/")}'`);
    if (rest.length === 0) {
      const query = queryFrom(params);
      if (method === "GET") {
        const all = engine.list(query, { showInput: params.get("showInput") === "true" });
        const start = Number(req.headers["x-ms-continuation-token"] ?? 0) || 0;
        const page = all.slice(start, start + pageSize);
        const headers: Record<string, string> = {};
        if (start + pageSize < all.length) headers["x-ms-continuation-token"] = String(start + pageSize);
        send(res, 200, page, headers);
        return;
      }
      if (method === "DELETE") {
        const deleted = await engine.purgeBy(query);
        send(res, deleted > 0 ? 200 : 404, { instancesDeleted: deleted });
        return;
      }
      throw new HttpError(405, `${method} is not supported on instances/`);
    }
    const instanceId = rest[0];
    const action = rest[1];
    if (!action) {
      if (method === "GET") {
        const status = engine.getStatus(instanceId, {
          showHistory: params.get("showHistory") === "true",
          showHistoryOutput: params.get("showHistoryOutput") === "true",
          showInput: params.get("showInput") !== "false",
        });
        if (!status) throw new HttpError(404, `No instance with id '${instanceId}' was found`);
        sendStatus(res, origin, status);
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
      const contentType = String(req.headers["content-type"] ?? "");
      if (contentType && !contentType.toLowerCase().includes("json")) throw new HttpError(400, `raiseEvent requires an application/json body, got Content-Type '${contentType}'`);
      const data = parseJsonBody(await readBody(req), "The event data");
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
    const prefix = [RPC_PREFIX, WEBHOOK_PREFIX].find((p) => pathname.startsWith(p) || `${pathname}/` === p);
    if (!prefix) return false;
    const segments = pathname.slice(prefix.length).split("/").filter(Boolean).map(decodeURIComponent);
    const method = (req.method ?? "GET").toUpperCase();
    try {
      await route(req, res, method, segments, url.searchParams);
    } catch (err) {
      const status =
        err instanceof HttpError ? err.status
        : err instanceof InstanceNotFoundError ? 404
        : err instanceof InstanceFinishedError ? 410
        : err instanceof OrchestratorNotFoundError ? 400
        : err instanceof InstanceAlreadyExistsError ? 500
        : err instanceof RangeError ? 400
        : 500;
      if (!res.headersSent) send(res, status, { Message: (err as Error).message });
    }
    return true;
  };
}
