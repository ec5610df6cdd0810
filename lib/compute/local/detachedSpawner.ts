/**
 * Starts detached processes from a worker thread. `child_process.spawn` blocks the calling thread
 * until the new process has exec'd; on a busy machine that is tens of milliseconds per process, so a
 * round of K local jobs blocked the host's event loop (its storage, events and episodes) K times.
 * The worker takes that wait instead; the processes are detached and outlive it.
 */
import { Worker } from "node:worker_threads";

/** A process could not be started. */
export class SpawnError extends Error {
  override readonly name = "SpawnError";
}

const WORKER_SOURCE = `
const { parentPort } = require("node:worker_threads");
const { spawn } = require("node:child_process");
parentPort.on("message", ({ id, command, args, env }) => {
  try {
    const child = spawn(command, args, { detached: true, stdio: "ignore", env });
    child.on("error", () => undefined);
    child.unref();
    parentPort.postMessage({ id, pid: child.pid });
  } catch (err) {
    parentPort.postMessage({ id, error: String((err && err.message) || err) });
  }
});`;

interface Waiter {
  resolve(pid: number | undefined): void;
  reject(err: Error): void;
}

export class DetachedSpawner {
  private worker?: Worker;
  private nextId = 0;
  private readonly waiting = new Map<number, Waiter>();

  /** Starts `command args` detached with stdio ignored and exactly the environment `env`; resolves with its pid. */
  spawn(command: string, args: readonly string[], env: Readonly<Record<string, string>>): Promise<number | undefined> {
    const worker = this.ensureWorker();
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      worker.postMessage({ id, command, args: [...args], env: { ...env } });
    });
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
  }

  private ensureWorker(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(WORKER_SOURCE, { eval: true });
    worker.on("message", (m: { id: number; pid?: number; error?: string }) => {
      const waiter = this.waiting.get(m.id);
      if (!waiter) return;
      this.waiting.delete(m.id);
      if (m.error !== undefined) waiter.reject(new SpawnError(m.error));
      else waiter.resolve(m.pid);
    });
    worker.on("error", (err) => this.failAll(new SpawnError(`the spawner thread failed: ${err.message}`)));
    worker.on("exit", () => {
      if (this.worker === worker) this.worker = undefined;
      this.failAll(new SpawnError("the spawner thread exited before starting the process"));
    });
    // The host exits when its work is done, whether or not the spawner is idle. After the
    // listeners: attaching a "message" listener refs the worker's port again.
    worker.unref();
    this.worker = worker;
    return worker;
  }

  private failAll(err: Error): void {
    for (const waiter of this.waiting.values()) waiter.reject(err);
    this.waiting.clear();
  }
}
