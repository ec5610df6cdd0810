/**
 * `startAzurite` on a worker thread of this process: the same servers, options, ports, persistence
 * and lock, and the same `AzuriteHandle`, but Azurite's request handling (HTTP parsing, express,
 * SharedKey checks, XML, LokiJS) runs beside the caller's event loop instead of on it.
 *
 * The embedded Functions host uses it for its own storage: there one thread otherwise serves the
 * app, the Durable engine and every storage request of every silo, and Azurite's share of that
 * thread (about a quarter at 100 local silos, docs/benchmarks.md) moves to the other core.
 *
 * The worker runs the compiled module (`dist/lib/storage/azurite.js`), found as the kernel worker
 * finds its registry, so it works from `dist/`, from the bundled CLI and under jest after a build.
 */

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { AzuriteError, AzuriteLocationInUseError, AzuriteOptionsError, AzuriteStartError, azuriteHandle, type AzuriteHandle, type AzuriteService, type StartAzuriteOptions } from "./azurite";

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { startAzurite } = require(workerData.modulePath);
let handle;
const describe = (err) => ({
  name: err && err.name, message: String((err && err.message) || err), service: err && err.service, detail: err && err.detail,
  location: err && err.location, ownerPid: err && err.ownerPid, lockPath: err && err.lockPath, code: err && err.code,
});
parentPort.on("message", async (m) => {
  try {
    if (m.type === "start") {
      handle = await startAzurite(m.options);
      const endpoint = (service) => (handle.services.includes(service) ? handle[service + "Endpoint"] : undefined);
      parentPort.postMessage({ id: m.id, ok: {
        services: handle.services, location: handle.location, portsChanged: handle.portsChanged,
        endpoints: { blob: endpoint("blob"), queue: endpoint("queue"), table: endpoint("table") },
      } });
    } else if (m.type === "flush") {
      await handle.flush();
      parentPort.postMessage({ id: m.id, ok: true });
    } else if (m.type === "stop") {
      if (handle) await handle.stop();
      parentPort.postMessage({ id: m.id, ok: true });
    }
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: describe(err) });
  }
});
`;

interface WorkerError {
  name?: string;
  message: string;
  service?: AzuriteService;
  detail?: string;
  location?: string;
  ownerPid?: number;
  lockPath?: string;
  code?: string;
}

interface Started {
  services: AzuriteService[];
  location: string | undefined;
  portsChanged: AzuriteService[];
  endpoints: Partial<Record<AzuriteService, string>>;
}

/** The compiled azurite module a worker can `require`. */
function compiledAzuritePath(): string {
  const candidates = [
    join(__dirname, "azurite.js"), // dist/lib/storage/
    resolve(__dirname, "..", "..", "dist", "lib", "storage", "azurite.js"), // sources under jest
  ];
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new AzuriteError(`the compiled Azurite launcher is missing (looked for ${candidates.join(", ")}): run \`npm run build\``);
  return found;
}

/** The launcher's error as the worker threw it, with its class and fields. */
function rebuildError(e: WorkerError): Error {
  let err: Error;
  if (e.name === "AzuriteStartError" && e.service) err = new AzuriteStartError(e.service, e.detail ?? e.message);
  else if (e.name === "AzuriteLocationInUseError" && e.location && e.lockPath) err = new AzuriteLocationInUseError(e.location, e.ownerPid, e.lockPath);
  else if (e.name === "AzuriteOptionsError") err = new AzuriteOptionsError(e.message);
  else if (e.name === "AbortError") err = new DOMException(e.message, "AbortError");
  else err = new AzuriteError(e.message);
  if (e.code) Object.assign(err, { code: e.code });
  return err;
}

/** Starts the requested Azurite services on a worker thread; see `startAzurite` for the options. */
export async function startAzuriteThread(options: StartAzuriteOptions = {}): Promise<AzuriteHandle> {
  const { signal, ...rest } = options;
  signal?.throwIfAborted();
  const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { modulePath: compiledAzuritePath() } });
  let nextId = 0;
  const pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  let failure: Error | undefined;
  const failAll = (err: Error) => {
    failure ??= err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  worker.on("message", (m: { id: number; ok?: unknown; error?: WorkerError }) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.error) p.reject(rebuildError(m.error));
    else p.resolve(m.ok);
  });
  worker.on("error", (err) => failAll(err));
  worker.on("exit", (code) => failAll(new AzuriteError(`the Azurite thread exited (code ${code})`)));
  const call = <T>(type: string, extra: Record<string, unknown> = {}): Promise<T> => {
    if (failure) return Promise.reject(failure);
    const id = nextId++;
    return new Promise<T>((resolvePromise, reject) => {
      pending.set(id, { resolve: resolvePromise as (value: unknown) => void, reject });
      worker.postMessage({ type, id, ...extra });
    });
  };

  let started: Started;
  const onAbort = () => void worker.terminate();
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    started = await call<Started>("start", { options: rest });
  } catch (err) {
    await worker.terminate();
    signal?.throwIfAborted();
    throw err;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }

  return azuriteHandle({
    services: started.services,
    location: started.location,
    endpoints: started.endpoints,
    portsChanged: started.portsChanged,
    flush: () => call<void>("flush"),
    stop: async () => {
      try {
        await call<void>("stop");
      } finally {
        await worker.terminate();
      }
    },
  });
}
