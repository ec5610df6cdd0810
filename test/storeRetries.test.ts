/**
 * Transient failures, injected by a proxy between the store and Azurite: a response body cut off
 * mid-way and 503 ServerBusy answers. Retries must be bounded and the bytes still exact.
 */
import { randomBytes } from "node:crypto";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import { ModelStore, StorageRequestError } from "../lib/models/store";
import { azuriteConnectionString } from "../lib/storage/devAccount";
import { useAzurite } from "./helpers/azurite";

const azurite = useAzurite({ services: ["blob"] });

type Fault = "pass" | "cut-body" | "busy";
interface Proxy {
  accountUrl: string;
  /** "METHOD path?query" of every request seen. */
  seen: string[];
  close(): Promise<void>;
}

async function startFaultyProxy(targetAccountUrl: string, decide: (req: http.IncomingMessage, seen: string[]) => Fault): Promise<Proxy> {
  const target = new URL(targetAccountUrl);
  const seen: string[] = [];
  const server = http.createServer((req, res) => {
    const fault = decide(req, seen);
    seen.push(`${req.method} ${req.url}`);
    if (fault === "busy") {
      req.resume();
      res.writeHead(503, { "content-type": "application/xml", "x-ms-error-code": "ServerBusy" });
      res.end('<?xml version="1.0" encoding="utf-8"?><Error><Code>ServerBusy</Code><Message>injected</Message></Error>');
      return;
    }
    const upstream = http.request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      if (fault === "cut-body") {
        const parts: Buffer[] = [];
        up.on("data", (d: Buffer) => parts.push(d));
        up.on("end", () => {
          const body = Buffer.concat(parts);
          res.writeHead(up.statusCode ?? 500, up.headers);
          res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.destroy());
        });
        return;
      }
      res.writeHead(up.statusCode ?? 500, up.headers);
      up.pipe(res);
    });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    accountUrl: `http://127.0.0.1:${port}${target.pathname}`,
    seen,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const fastRetries = { retryOptions: { maxTries: 3, retryDelayInMs: 5, maxRetryDelayInMs: 10 } };

function storeVia(proxy: Proxy, container: string, maxBodyRetries = 5): ModelStore {
  return ModelStore.fromConnectionString(azuriteConnectionString({ blobEndpoint: proxy.accountUrl }), container, {
    blockSize: 64 * 1024,
    maxBodyRetries,
    pipeline: fastRetries,
  });
}

let direct: ModelStore;
const data = randomBytes(256 * 1024 + 5);
beforeAll(async () => {
  direct = ModelStore.fromConnectionString(azurite.connectionString, "retries");
  await direct.ensureContainer();
  await direct.putBytes("model.bin", data);
});

const isRangedGet = (req: http.IncomingMessage) => req.method === "GET" && req.url?.includes("model.bin") === true;

test("a body cut off mid-way is resumed and the bytes are exact", async () => {
  let cuts = 0;
  const proxy = await startFaultyProxy(azurite.blobEndpoint, (req) => (isRangedGet(req) && cuts++ < 2 ? "cut-body" : "pass"));
  try {
    const store = storeVia(proxy, "retries");
    const got = await store.source("model.bin").read(1000, 150_001);
    expect(got.equals(data.subarray(1000, 151_001))).toBe(true);
    expect(proxy.seen.filter((s) => s.startsWith("GET")).length).toBe(3); // first cut, resume cut, resume ok
  } finally {
    await proxy.close();
  }
});

test("getBytes (one un-ranged GET) resumes a broken body with ranged reads", async () => {
  let cuts = 0;
  const proxy = await startFaultyProxy(azurite.blobEndpoint, (req) => (isRangedGet(req) && cuts++ < 1 ? "cut-body" : "pass"));
  try {
    const store = storeVia(proxy, "retries");
    expect((await store.getBytes("model.bin")).equals(data)).toBe(true);
    expect(proxy.seen.filter((s) => s.startsWith("GET")).length).toBe(2);
  } finally {
    await proxy.close();
  }
});

test("503 ServerBusy on reads and on block staging is retried", async () => {
  // The first attempt of every distinct request (method, URL, range) is answered 503.
  const attempted = new Set<string>();
  const proxy = await startFaultyProxy(azurite.blobEndpoint, (req) => {
    const key = `${req.method} ${req.url} ${String(req.headers["x-ms-range"] ?? req.headers.range ?? "")}`;
    if (attempted.has(key)) return "pass";
    attempted.add(key);
    return "busy";
  });
  try {
    const store = storeVia(proxy, "retries");
    const written = await (async () => {
      const sink = store.sink("copy.bin");
      await sink.write(data);
      return sink.commit();
    })();
    expect(written.size).toBe(data.length);
    expect((await direct.getBytes("copy.bin")).equals(data)).toBe(true);
    expect((await store.getBytes("model.bin")).equals(data)).toBe(true);
    const busyThenOk = proxy.seen.length;
    expect(busyThenOk).toBe(2 * attempted.size); // each request: one 503, one success
  } finally {
    await proxy.close();
  }
});

test("retries are bounded: a server that stays busy fails after maxTries with the status", async () => {
  const proxy = await startFaultyProxy(azurite.blobEndpoint, () => "busy");
  try {
    const store = storeVia(proxy, "retries");
    const err = await store
      .source("model.bin")
      .read(0, 10)
      .catch((e) => e);
    expect(err).toBeInstanceOf(StorageRequestError);
    expect(err.statusCode).toBe(503);
    expect(err.message).toContain(`read ${store.uri("model.bin")} failed (HTTP 503)`);
    expect(proxy.seen.length).toBe(3);
  } finally {
    await proxy.close();
  }
});

test("retries are bounded: a body that always breaks fails after maxBodyRetries resumes", async () => {
  const proxy = await startFaultyProxy(azurite.blobEndpoint, (req) => (isRangedGet(req) ? "cut-body" : "pass"));
  try {
    const store = storeVia(proxy, "retries", 2);
    const err = await store
      .source("model.bin")
      .read(0, 100_000)
      .catch((e) => e);
    expect(err).toBeInstanceOf(StorageRequestError);
    expect(err.message).toBe(`read (after 2 resumes) ${store.uri("model.bin")} failed: connection dropped while receiving the body`);
    expect(proxy.seen.filter((s) => s.startsWith("GET")).length).toBe(3); // 1 + 2 resumes
  } finally {
    await proxy.close();
  }
});
