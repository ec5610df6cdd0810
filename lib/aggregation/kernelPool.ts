/**
 * A worker thread that runs a strategy's per-chunk kernels (`combine`, statistics `accumulate`) on
 * part of each chunk's coordinates while the engine's thread runs the rest: the robust rules
 * (median, trimmed mean, Krum's pairwise distances) cost far more per byte than reading, so the
 * second core pays for itself. The strategy is re-created in the worker from the registry by name +
 * options (the Strategy contract keeps kernels pure for this), after the worker has loaded the
 * modules registered with `registerStrategy(modulePath)`, so registered strategies work there too.
 * Rows and the output live in SharedArrayBuffers; posting a view of one shares the memory, nothing
 * is copied.
 *
 * The worker loads the compiled registry (`registry.js`): from dist/ next to this file, or, when
 * this file runs from TypeScript sources (jest), from the build in dist/ (`npm test` builds first).
 * Without a compiled registry there is no pool and the engine's thread does all the work.
 */

import { existsSync } from "node:fs";
import { join, resolve } from "node:path";
import { Worker } from "node:worker_threads";
import { registeredStrategyModules } from "./registry";
import type { CombineChunk, FloatRow, Json, RoundContext, StatisticsChunk } from "./strategy";

const WORKER_SOURCE = `
const { parentPort, workerData } = require("node:worker_threads");
const { createStrategy, registerStrategy } = require(workerData.registry);
for (const modulePath of workerData.modules) registerStrategy(modulePath);
let strategy, ctx, plan;
parentPort.on("message", (m) => {
  try {
    if (m.type === "round") {
      strategy = createStrategy(m.name, m.options);
      ctx = m.ctx;
      plan = undefined;
      return;
    }
    if (m.type === "plan") {
      plan = m.plan;
      return;
    }
    const chunk = { tensor: ctx.tensors[m.tensorIndex], start: m.start, length: m.length, rows: m.rows, weights: m.weights, state: {} };
    if (m.type === "combine") {
      chunk.out = m.out;
      chunk.stateOut = {};
      strategy.combine(chunk, plan, ctx);
      parentPort.postMessage({ id: m.id });
    } else {
      const acc = new Float64Array(m.size);
      strategy.statistics[m.pass].accumulate(chunk, acc, ctx);
      parentPort.postMessage({ id: m.id, acc }, [acc.buffer]);
    }
  } catch (err) {
    parentPort.postMessage({ id: m.id, error: { name: err && err.name, message: String(err && err.message || err) } });
  }
});
`;

/** The compiled registry a worker can `require`, or undefined (no pool). */
export function compiledRegistryPath(): string | undefined {
  const candidates = [
    join(__dirname, "registry.js"), // dist/lib/aggregation/
    join(__dirname, "lib", "aggregation", "registry.js"), // bundled into dist/cli.js (scripts/bundleCli.js)
    resolve(__dirname, "..", "..", "dist", "lib", "aggregation", "registry.js"), // sources under jest
  ];
  return candidates.find((p) => existsSync(p));
}

/** True when every array shares its memory with a worker when posted (no copy). */
export function allShared(arrays: readonly FloatRow[]): boolean {
  return arrays.every((a) => a.buffer instanceof SharedArrayBuffer);
}

/** An error thrown by a kernel in the worker, with the kernel's error name and message. */
export class KernelWorkerError extends Error {
  constructor(
    readonly kernelErrorName: string | undefined,
    message: string,
  ) {
    super(message);
    this.name = "KernelWorkerError";
  }
}

interface Pending {
  resolve: (acc?: Float64Array) => void;
  reject: (err: Error) => void;
}

export class KernelPool {
  private nextId = 0;
  private readonly pending = new Map<number, Pending>();
  private failure?: Error;

  private constructor(private readonly worker: Worker) {
    worker.on("message", (m: { id: number; acc?: Float64Array; error?: { name?: string; message: string } }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      if (m.error) p.reject(new KernelWorkerError(m.error.name, m.error.message));
      else p.resolve(m.acc);
    });
    worker.on("error", (err) => this.fail(err));
    worker.on("exit", (code) => this.fail(new Error(`kernel worker exited (code ${code})`)));
  }

  /** A pool of one worker, or undefined when no compiled registry is available. */
  static start(): KernelPool | undefined {
    const registry = compiledRegistryPath();
    const modules = [...registeredStrategyModules()];
    return registry ? new KernelPool(new Worker(WORKER_SOURCE, { eval: true, workerData: { registry, modules } })) : undefined;
  }

  /** Starts a round (or a restarted pass): the strategy and the round's context. */
  beginRound(strategy: { name: string; options: Json }, ctx: RoundContext): void {
    this.worker.postMessage({ type: "round", name: strategy.name, options: strategy.options, ctx });
  }

  setPlan(plan: Json): void {
    this.worker.postMessage({ type: "plan", plan });
  }

  /** Runs `combine` on a chunk in the worker; `chunk.rows` and `chunk.out` must be shared (allShared). */
  combine(tensorIndex: number, chunk: Pick<CombineChunk, "start" | "length" | "rows" | "weights" | "out">): Promise<void> {
    return this.request({ type: "combine", tensorIndex, start: chunk.start, length: chunk.length, rows: chunk.rows, weights: chunk.weights, out: chunk.out }).then(() => undefined);
  }

  /** Runs statistics pass `pass` on a chunk in the worker and returns its accumulator (length `size`). */
  accumulate(pass: number, size: number, tensorIndex: number, chunk: Pick<StatisticsChunk, "start" | "length" | "rows" | "weights">): Promise<Float64Array> {
    return this.request({ type: "accumulate", pass, size, tensorIndex, start: chunk.start, length: chunk.length, rows: chunk.rows, weights: chunk.weights }) as Promise<Float64Array>;
  }

  async close(): Promise<void> {
    this.worker.removeAllListeners("exit");
    await this.worker.terminate();
    this.fail(new Error("kernel pool closed"));
  }

  private request(message: Record<string, unknown>): Promise<Float64Array | undefined> {
    if (this.failure) return Promise.reject(this.failure);
    const id = this.nextId++;
    return new Promise((resolvePromise, reject) => {
      this.pending.set(id, { resolve: resolvePromise, reject });
      this.worker.postMessage({ ...message, id });
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }
}
