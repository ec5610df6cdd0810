/**
 * sha256 of the update files, computed on worker threads while the engine streams: the engine reads
 * chunks into a SharedArrayBuffer and posts (file, offset, length) segments; each worker owns the
 * hashes of some files and updates them in order. Hashing is the costliest per-byte work after I/O
 * (~1 GB/s per core), so it moves off the main thread. The worker is an inline script (eval) so it
 * runs the same under jest (TypeScript via swc) and from dist/.
 */

import { createHash, Hash } from "node:crypto";
import { Worker } from "node:worker_threads";

// The shared buffer arrives in an "attach" message rather than workerData, so a worker can start
// before the engine has allocated it (see prestartHashWorkers).
const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { createHash } = require("node:crypto");
let memory;
const hashes = new Map();
parentPort.on("message", (m) => {
  try {
    if (m.type === "attach") {
      memory = new Uint8Array(m.buffer);
    } else if (m.type === "reset") {
      hashes.clear();
      for (const [id, prefix] of m.prefixes) hashes.set(id, createHash("sha256").update(prefix));
    } else if (m.type === "update") {
      for (const [id, offset, length] of m.segments) hashes.get(id).update(memory.subarray(offset, offset + length));
      parentPort.postMessage({ type: "ack", seq: m.seq });
    } else if (m.type === "digest") {
      const digests = [];
      for (const [id, h] of hashes) digests.push([id, h.digest("hex")]);
      hashes.clear();
      parentPort.postMessage({ type: "digests", seq: m.seq, digests });
    }
  } catch (err) {
    parentPort.postMessage({ type: "error", seq: m.seq, message: String(err && err.stack || err) });
  }
});
`;

/** Below this many bytes to hash, the engine hashes on its own thread (see HashPool's inline mode). */
export const HASH_WORKERS_MIN_BYTES = 32 << 20;

/** Hash workers the engine uses by default for `bytes` of models to hash. */
export function defaultHashWorkers(bytes: number): number {
  return bytes >= HASH_WORKERS_MIN_BYTES ? 2 : 0;
}

/** Workers started ahead of need, adopted by the next HashPool; unref'd until then, so an unused
 *  one never keeps the process alive. `drop` removes a worker that failed before adoption. */
const prestarted: { worker: Worker; drop: () => void }[] = [];

/**
 * Starts `count` hash workers now (~40 ms of CPU each to boot Node in a thread), so that they boot
 * on the other core while this thread still loads modules and reads headers; the next HashPool
 * adopts them instead of starting its own.
 */
export function prestartHashWorkers(count: number): void {
  while (prestarted.length < count) {
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.unref();
    // A worker that fails before it is adopted is dropped; the pool starts a fresh one instead.
    const entry = {
      worker,
      drop: () => {
        const at = prestarted.indexOf(entry);
        if (at >= 0) prestarted.splice(at, 1);
      },
    };
    worker.once("error", entry.drop);
    worker.once("exit", entry.drop);
    prestarted.push(entry);
  }
}

function adoptOrStartWorker(): Worker {
  const entry = prestarted.shift();
  if (!entry) return new Worker(WORKER_SOURCE, { eval: true });
  // Only our own listeners: the Worker's internal ones (message port referencing) must stay.
  entry.worker.off("error", entry.drop);
  entry.worker.off("exit", entry.drop);
  entry.worker.ref();
  return entry.worker;
}

interface Waiter {
  remaining: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class HashPool {
  private readonly workers: Worker[];
  private seq = 0;
  private readonly waiters = new Map<number, Waiter>();
  private readonly digestsBySeq = new Map<number, [number, string][]>();
  private failure?: Error;
  /** Inline mode (no workers): hashes on the calling thread, for small models where starting
   *  workers (~50-300 ms) costs more than it saves. */
  private readonly inline?: { memory: Uint8Array; hashes: Map<number, Hash> };

  constructor(buffer: SharedArrayBuffer, workerCount: number) {
    if (workerCount <= 0) this.inline = { memory: new Uint8Array(buffer), hashes: new Map() };
    this.workers = Array.from({ length: Math.max(0, workerCount) }, () => {
      const w = adoptOrStartWorker();
      w.postMessage({ type: "attach", buffer });
      w.on("message", (m: { type: string; seq: number; message?: string; digests?: [number, string][] }) => {
        if (m.type === "error") return this.fail(new Error(`hash worker: ${m.message}`));
        if (m.type === "digests") this.digestsBySeq.set(m.seq, [...(this.digestsBySeq.get(m.seq) ?? []), ...m.digests!]);
        const waiter = this.waiters.get(m.seq);
        if (waiter && --waiter.remaining === 0) {
          this.waiters.delete(m.seq);
          waiter.resolve();
        }
      });
      w.on("error", (err) => this.fail(err));
      return w;
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiters.values()) w.reject(err);
    this.waiters.clear();
  }

  private workerFor(id: number): number {
    return id % this.workers.length;
  }

  private expect(seq: number, count: number): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (count === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.set(seq, { remaining: count, resolve, reject }));
  }

  /** Starts new hashes: each file id begins with its prefix bytes (the safetensors header). */
  reset(prefixes: [id: number, prefix: Uint8Array][]): void {
    if (this.inline) {
      this.inline.hashes.clear();
      for (const [id, prefix] of prefixes) this.inline.hashes.set(id, createHash("sha256").update(prefix));
      return;
    }
    this.workers.forEach((w, i) => w.postMessage({ type: "reset", prefixes: prefixes.filter(([id]) => this.workerFor(id) === i) }));
  }

  /** Hashes segments of the shared buffer; resolves once the workers are done reading them. */
  update(segments: [id: number, offset: number, length: number][]): Promise<void> {
    if (this.inline) {
      const { memory, hashes } = this.inline;
      for (const [id, offset, length] of segments) hashes.get(id)!.update(memory.subarray(offset, offset + length));
      return Promise.resolve();
    }
    const seq = ++this.seq;
    const perWorker = this.workers.map(() => [] as [number, number, number][]);
    for (const s of segments) perWorker[this.workerFor(s[0])].push(s);
    let involved = 0;
    perWorker.forEach((segs, i) => {
      if (segs.length === 0) return;
      involved++;
      this.workers[i].postMessage({ type: "update", seq, segments: segs });
    });
    return this.expect(seq, involved);
  }

  /** Finishes all hashes; returns hex digests by file id. */
  async digests(): Promise<Map<number, string>> {
    if (this.inline) {
      const out = new Map([...this.inline.hashes].map(([id, h]) => [id, h.digest("hex")] as [number, string]));
      this.inline.hashes.clear();
      return out;
    }
    const seq = ++this.seq;
    const done = this.expect(seq, this.workers.length);
    for (const w of this.workers) w.postMessage({ type: "digest", seq });
    await done;
    const out = new Map(this.digestsBySeq.get(seq) ?? []);
    this.digestsBySeq.delete(seq);
    return out;
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
