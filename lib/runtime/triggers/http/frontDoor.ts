/**
 * The local HTTP front door: one loopback `http.Server` that routes requests to the app's `app.http`
 * functions (route templates, methods, route prefix, function keys) and to mounted handlers such as
 * the Durable management API. Functions are invoked through the worker-faithful path: trigger
 * TypedData `{http: {...}}` in, `returnValue.http` out.
 */
import * as http from "http";
import type { AddressInfo } from "net";
import type { FunctionRegistry, CoreFunctionMetadata } from "../../functionsCore";
import type { Invoker, TypedData } from "../../invoke";
import { triggerBinding, durableClientBindings } from "../../invoke";
import type { HostKeys } from "../../settings";
import { compileRoute, compareRoutePrecedence, type CompiledRoute } from "./routeTemplate";
import { allowedHostHeaders, checkRequestSource, closeIfBodyUnread, DEFAULT_MAX_REQUEST_BODY_BYTES, keyMatches, presentedKey, readBodyCapped, RequestRefusedError } from "./requestGuard";

export type AuthLevel = "anonymous" | "function" | "admin";

export interface HttpRoute {
  functionName: string;
  /** The template as registered (default: the function name). */
  template: string;
  /** Upper-case methods; empty = any method. */
  methods: string[];
  authLevel: AuthLevel;
  compiled: CompiledRoute;
  /** Names of durableClient inputs that get a client binding payload. */
  durableClientInputs: string[];
  /** A lower body cap for this route (binding property `maxRequestBodyBytes`, local only; the real host ignores it). */
  maxBodyBytes?: number;
}

/** A registration the front door cannot serve (bad route, auth level, ...). */
export class HttpRouteError extends Error {
  constructor(
    readonly functionName: string,
    message: string,
  ) {
    super(`HTTP function "${functionName}": ${message}`);
    this.name = "HttpRouteError";
  }
}

/** Builds the route table of every `httpTrigger` function, sorted by routing precedence. */
export function buildHttpRoutes(registry: FunctionRegistry, routePrefix: string): HttpRoute[] {
  const routes: HttpRoute[] = [];
  for (const [name, fn] of registry.functions) {
    const trigger = safeTrigger(fn.metadata);
    if (!trigger || trigger.type.toLowerCase() !== "httptrigger") continue;
    const binding = trigger.binding as { route?: unknown; methods?: unknown; authLevel?: unknown; maxRequestBodyBytes?: unknown };
    const template = typeof binding.route === "string" && binding.route.trim() !== "" ? binding.route : name;
    const methods = Array.isArray(binding.methods) ? binding.methods.map((m) => String(m).toUpperCase()) : [];
    const authLevel = binding.authLevel ?? "anonymous";
    const rawAuth = typeof authLevel === "string" ? authLevel.toLowerCase() : "";
    if (rawAuth !== "anonymous" && rawAuth !== "function" && rawAuth !== "admin") {
      throw new HttpRouteError(name, `authLevel: expected anonymous|function|admin, got ${JSON.stringify(binding.authLevel)}`);
    }
    let compiled: CompiledRoute;
    try {
      compiled = compileRoute(template, routePrefix);
    } catch (err) {
      throw new HttpRouteError(name, (err as Error).message);
    }
    const cap = binding.maxRequestBodyBytes;
    if (cap !== undefined && !(typeof cap === "number" && Number.isInteger(cap) && cap > 0)) {
      throw new HttpRouteError(name, `maxRequestBodyBytes: expected a positive integer, got ${JSON.stringify(cap)}`);
    }
    routes.push({ functionName: name, template, methods, authLevel: rawAuth, compiled, durableClientInputs: durableClientBindings(fn.metadata), maxBodyBytes: cap });
  }
  return routes.sort((a, b) => compareRoutePrecedence(a.compiled, b.compiled));
}

function safeTrigger(metadata: CoreFunctionMetadata): ReturnType<typeof triggerBinding> | undefined {
  try {
    return triggerBinding(metadata);
  } catch {
    return undefined;
  }
}

export type RouteLookup = { kind: "match"; route: HttpRoute; params: Record<string, string> } | { kind: "method-not-allowed"; allowed: string[] } | { kind: "not-found" };

/** Finds the route for a path + method (pure; exported for tests and the CLI). */
export function lookupRoute(routes: HttpRoute[], method: string, pathname: string): RouteLookup {
  const allowed = new Set<string>();
  for (const route of routes) {
    const params = route.compiled.match(pathname);
    if (!params) continue;
    if (route.methods.length === 0 || route.methods.includes(method.toUpperCase())) return { kind: "match", route, params };
    route.methods.forEach((m) => allowed.add(m));
  }
  return allowed.size > 0 ? { kind: "method-not-allowed", allowed: [...allowed] } : { kind: "not-found" };
}

/**
 * A handler mounted under a path prefix (e.g. the Durable management API). It reads the request
 * body itself (the stream is untouched). Returns false to pass the request on.
 */
export type MountedHandler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => Promise<boolean> | boolean;

export interface HttpFrontDoorOptions {
  registry: FunctionRegistry;
  invoker: Invoker;
  routePrefix: string;
  keys: HostKeys;
  /** Payload for durableClient inputs, given the public origin (`http://127.0.0.1:7071`). */
  clientBindingData?: (origin: string) => unknown;
  /** Mounted handlers, tried in order before function routes. */
  mounts?: Array<{ pathPrefix: string; handler: MountedHandler }>;
  /** Default 7071; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1 (loopback only). */
  hostname?: string;
  /** Called with errors thrown by handlers (never with request bodies or keys). */
  onError?: (functionName: string, error: unknown) => void;
  /** Cap on request bodies (default 100 MB, the Functions host's limit). */
  maxBodyBytes?: number;
}

export interface HttpFrontDoor {
  readonly url: string;
  readonly port: number;
  readonly routes: HttpRoute[];
  close(): Promise<void>;
}

function problem(res: http.ServerResponse, status: number, title: string, detail: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ type: "about:blank", title, status, detail });
  res.writeHead(status, { "content-type": "application/problem+json; charset=utf-8", "content-length": Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** Checks `x-functions-key` (which wins) or `?code=` against the route's auth level. */
export function isAuthorized(authLevel: AuthLevel, keys: HostKeys, headerKey: string | undefined, queryKey: string | null): boolean {
  if (authLevel === "anonymous") return true;
  return keyMatches(presentedKey(headerKey, queryKey), authLevel === "function" ? [keys.masterKey, keys.functionKey] : [keys.masterKey]);
}

const TEXT_CONTENT = /^(text\/|application\/(json|.*\+json|xml|.*\+xml|x-www-form-urlencoded|javascript))/i;

/** The RPC http payload the host sends the worker for one request. */
export function toRpcHttpRequest(req: http.IncomingMessage, url: URL, params: Record<string, string>, body: Buffer): Record<string, unknown> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  const query: Record<string, string> = {};
  for (const [name, value] of url.searchParams) query[name] = value;
  const contentType = headers["content-type"];
  const rpcBody: TypedData | undefined = body.length === 0 ? undefined : !contentType || TEXT_CONTENT.test(contentType) ? { string: body.toString("utf8") } : { bytes: body };
  return { method: req.method ?? "GET", url: url.toString(), headers, query, params, body: rpcBody };
}

/** Writes a worker `returnValue.http` (statusCode string, headers, cookies, body TypedData) to `res`. */
export function writeRpcHttpResponse(res: http.ServerResponse, rpc: Record<string, unknown> | undefined): void {
  if (!rpc) {
    // The handler returned nothing: no content (like the host when no response is set).
    res.writeHead(204);
    res.end();
    return;
  }
  const status = Number(rpc.statusCode ?? 200) || 200;
  const headers = (rpc.headers ?? {}) as Record<string, string>;
  const outHeaders: Record<string, string | string[]> = { ...headers };
  const cookies = (rpc.cookies ?? []) as Array<Record<string, unknown>>;
  if (cookies.length > 0) outHeaders["set-cookie"] = cookies.map(formatCookie);
  const body = rpc.body as TypedData | undefined;
  let bytes: Buffer = Buffer.alloc(0);
  if (body?.bytes) bytes = Buffer.from(body.bytes as Uint8Array);
  else if (body?.string !== undefined) bytes = Buffer.from(body.string);
  else if (body?.json !== undefined) bytes = Buffer.from(body.json);
  res.writeHead(status, outHeaders);
  res.end(status === 204 || status === 304 ? undefined : bytes);
}

function formatCookie(cookie: Record<string, unknown>): string {
  const pick = (v: unknown): unknown => (v && typeof v === "object" && "value" in v ? v.value : v);
  // Attributes arrive as scalars or (after pick) unwrapped from RPC's { value } wrappers; nothing else belongs in a header.
  const scalar = (v: unknown): string => (typeof v === "string" || typeof v === "number" || typeof v === "boolean" ? String(v) : "");
  let text = `${scalar(cookie.name)}=${scalar(cookie.value)}`;
  const domain = pick(cookie.domain);
  const path = pick(cookie.path);
  const expires = pick(cookie.expires);
  const maxAge = pick(cookie.maxAge);
  if (domain) text += `; Domain=${scalar(domain)}`;
  if (path) text += `; Path=${scalar(path)}`;
  if (expires !== undefined && expires !== null) text += `; Expires=${new Date(Number(expires)).toUTCString()}`;
  if (maxAge !== undefined && maxAge !== null) text += `; Max-Age=${scalar(maxAge)}`;
  if (pick(cookie.secure)) text += "; Secure";
  if (pick(cookie.httpOnly)) text += "; HttpOnly";
  const sameSite = pick(cookie.sameSite);
  if (sameSite === 1 || sameSite === "Lax") text += "; SameSite=Lax";
  else if (sameSite === 2 || sameSite === "Strict") text += "; SameSite=Strict";
  else if (sameSite === 3 || sameSite === "None") text += "; SameSite=None";
  return text;
}

export interface GuardedServer {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * A loopback `http.Server` that refuses a foreign Host, a foreign Origin and cross-site browser
 * requests before `handle` sees them (every listener of the local host is one of these).
 */
export async function startGuardedServer(options: {
  handle: (req: http.IncomingMessage, res: http.ServerResponse, origin: string) => Promise<void>;
  port: number;
  hostname: string;
  onError?: (where: string, error: unknown) => void;
}): Promise<GuardedServer> {
  let origin = "";
  let allowedHosts = new Set<string>();
  const server = http.createServer((req, res) => {
    const run = async (): Promise<void> => {
      try {
        checkRequestSource(req, allowedHosts);
      } catch (err) {
        if (!(err instanceof RequestRefusedError)) throw err;
        closeIfBodyUnread(req, res);
        return problem(res, err.status, err.title, err.message);
      }
      await options.handle(req, res, origin);
    };
    run().catch((err) => {
      if (err instanceof RequestRefusedError) {
        closeIfBodyUnread(req, res);
        if (!res.headersSent) return problem(res, err.status, err.title, err.message);
      }
      options.onError?.("(front door)", err);
      if (!res.headersSent) problem(res, 500, "Internal Server Error", "the local host failed to handle the request");
      else res.destroy();
    });
  });
  // Keep-alive sockets would otherwise hold close() open until they time out.
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.hostname, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  origin = `http://${options.hostname}:${port}`;
  allowedHosts = allowedHostHeaders(options.hostname, port);
  return {
    url: origin,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Starts the front door. Resolves once listening. */
export async function startHttpFrontDoor(options: HttpFrontDoorOptions): Promise<HttpFrontDoor> {
  const routes = buildHttpRoutes(options.registry, options.routePrefix);
  const hostname = options.hostname ?? "127.0.0.1";

  async function handle(req: http.IncomingMessage, res: http.ServerResponse, origin: string): Promise<void> {
    const url = new URL(req.url ?? "/", origin);
    for (const mount of options.mounts ?? []) {
      if (url.pathname.toLowerCase().startsWith(mount.pathPrefix.toLowerCase())) {
        if (await mount.handler(req, res, url)) return;
      }
    }
    // Route and key first: nothing of the body is read for a request that will be refused.
    const found = lookupRoute(routes, req.method ?? "GET", url.pathname);
    if (found.kind !== "match") closeIfBodyUnread(req, res);
    if (found.kind === "not-found") return problem(res, 404, "Not Found", `No function route matches ${req.method} ${url.pathname}`);
    if (found.kind === "method-not-allowed") {
      return problem(res, 405, "Method Not Allowed", `${req.method} is not allowed on ${url.pathname}; allowed: ${found.allowed.join(", ")}`, { allow: found.allowed.join(", ") });
    }
    const { route, params } = found;
    const headerKey = req.headers["x-functions-key"];
    if (!isAuthorized(route.authLevel, options.keys, Array.isArray(headerKey) ? headerKey[0] : headerKey, url.searchParams.get("code"))) {
      closeIfBodyUnread(req, res);
      return problem(res, 401, "Unauthorized", `Function "${route.functionName}" has authLevel "${route.authLevel}": send the key in the x-functions-key header or ?code=`);
    }
    const body = await readBodyCapped(req, Math.min(route.maxBodyBytes ?? Infinity, options.maxBodyBytes ?? DEFAULT_MAX_REQUEST_BODY_BYTES));
    const extraInputs: Record<string, TypedData> = {};
    if (route.durableClientInputs.length > 0) {
      if (!options.clientBindingData) return problem(res, 500, "Durable client unavailable", `Function "${route.functionName}" needs a durable client but the host has no Durable engine`);
      const payload = JSON.stringify(options.clientBindingData(origin));
      for (const name of route.durableClientInputs) extraInputs[name] = { string: payload };
    }
    let result;
    try {
      result = await options.invoker.invoke(route.functionName, { http: toRpcHttpRequest(req, url, params, body) }, extraInputs);
    } catch (err) {
      options.onError?.(route.functionName, err);
      if (!res.headersSent) {
        res.writeHead(500, { "content-length": 0 });
        res.end();
      }
      return;
    }
    const fromOutputs = result.outputData.find((o) => o.data && o.data.http !== undefined)?.data;
    const rpcHttp = result.returnValue?.http ?? fromOutputs?.http;
    writeRpcHttpResponse(res, rpcHttp);
  }

  const server = await startGuardedServer({ handle, port: options.port ?? 7071, hostname, onError: options.onError });
  return { url: server.url, port: server.port, routes, close: () => server.close() };
}
