/**
 * Checks every listener of the local host applies before it routes a request: the Host header must
 * name this listener (a DNS-rebinding page resolves attacker.example to 127.0.0.1 but still sends
 * `Host: attacker.example`), and a browser request from another site is refused (a page sends the
 * right Host, so only `Origin` / `Sec-Fetch-Site` reveal it). Bodies are read with a cap, and only
 * after the caller has checked the key.
 */
import type { IncomingMessage, ServerResponse } from "http";
import { timingSafeEqual } from "crypto";

/** The Functions host's request size limit (100 MB). */
export const DEFAULT_MAX_REQUEST_BODY_BYTES = 100 * 1024 * 1024;

/** A request the host refuses, with its HTTP status. */
export class RequestRefusedError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    message: string,
  ) {
    super(message);
    this.name = "RequestRefusedError";
  }
}

const LOOPBACK_NAMES = ["127.0.0.1", "localhost", "[::1]"];

/** `host:port` values a listener on `hostname:port` answers to (loopback names, plus a specific bound name). */
export function allowedHostHeaders(hostname: string, port: number): Set<string> {
  const names = new Set(LOOPBACK_NAMES);
  if (hostname !== "0.0.0.0" && hostname !== "::") names.add(hostname.includes(":") && !hostname.startsWith("[") ? `[${hostname}]` : hostname);
  return new Set([...names].map((name) => `${name}:${port}`.toLowerCase()));
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Throws RequestRefusedError (403) for a foreign Host, a foreign Origin or a cross-site browser request. */
export function checkRequestSource(req: IncomingMessage, allowedHosts: Set<string>): void {
  const host = header(req, "host")?.toLowerCase();
  if (!host || !allowedHosts.has(host)) {
    throw new RequestRefusedError(403, "Forbidden", `Host header ${JSON.stringify(host ?? null)} does not name this host; expected one of ${[...allowedHosts].join(", ")}`);
  }
  const origin = header(req, "origin");
  if (origin !== undefined) {
    let originHost: string | undefined;
    try {
      const parsed = new URL(origin);
      originHost = parsed.protocol === "http:" ? parsed.host.toLowerCase() : undefined;
    } catch {
      originHost = undefined;
    }
    if (!originHost || !allowedHosts.has(originHost)) {
      throw new RequestRefusedError(403, "Forbidden", `cross-origin request refused: Origin ${JSON.stringify(origin)} is not this host`);
    }
  }
  if (header(req, "sec-fetch-site")?.toLowerCase() === "cross-site") {
    throw new RequestRefusedError(403, "Forbidden", "cross-site request refused (Sec-Fetch-Site: cross-site)");
  }
}

/** The media type of the request (`application/json` from `application/json; charset=utf-8`), lower-case; "" when absent. */
export function mediaType(req: IncomingMessage): string {
  return (header(req, "content-type") ?? "").split(";")[0].trim().toLowerCase();
}

/** True when the request announces a body (a Content-Length above 0, or chunked transfer). */
export function hasBody(req: IncomingMessage): boolean {
  const length = header(req, "content-length");
  if (length !== undefined) return Number(length) > 0;
  return header(req, "transfer-encoding") !== undefined;
}

/**
 * Reads the body, refusing (413) a declared Content-Length above `maxBytes` before reading a byte,
 * and a streamed body as soon as it passes `maxBytes`.
 */
export async function readBodyCapped(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(header(req, "content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    throw new RequestRefusedError(413, "Payload Too Large", `the request body is ${declared} bytes; at most ${maxBytes} are accepted`);
  }
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req) {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
    total += buffer.length;
    if (total > maxBytes) {
      throw new RequestRefusedError(413, "Payload Too Large", `the request body exceeds ${maxBytes} bytes`);
    }
    chunks.push(buffer);
  }
  return Buffer.concat(chunks);
}

/**
 * Makes the response close the connection when the request body was not read (or not to the end), so
 * Node does not keep reading (and discarding) a body nobody asked for.
 */
export function closeIfBodyUnread(req: IncomingMessage, res: ServerResponse): void {
  if (!req.complete && !res.headersSent) res.setHeader("connection", "close");
}

function keysEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

/** The key a request presents: the `x-functions-key` header wins over `?code=`, like the Functions host. */
export function presentedKey(headerKey: string | string[] | undefined, queryKey: string | null): string | undefined {
  const fromHeader = Array.isArray(headerKey) ? headerKey[0] : headerKey;
  return fromHeader ?? queryKey ?? undefined;
}

/** True when `presented` is one of `accepted` (compared in constant time). */
export function keyMatches(presented: string | undefined, accepted: string[]): boolean {
  return presented !== undefined && presented !== "" && accepted.some((key) => keysEqual(presented, key));
}

/** True when the request presents one of `accepted`. */
export function isKeyAccepted(req: IncomingMessage, url: URL, accepted: string[]): boolean {
  return keyMatches(presentedKey(req.headers["x-functions-key"], url.searchParams.get("code")), accepted);
}
