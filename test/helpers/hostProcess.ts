/** A `flo host` child process, ready once it prints "Host started at <url>". */
import type { ChildProcess } from "child_process";

export interface HostProcess {
  child: ChildProcess;
  /** `http://127.0.0.1:<port>` */
  url: string;
  port: number;
  /** stdout + stderr so far. */
  output: () => string;
}

/** Resolves when `child` prints its "Host started at" line; rejects if it exits first or takes longer than `timeoutMs`. */
export function whenHostStarted(child: ChildProcess, what = "flo host", timeoutMs = 60_000): Promise<HostProcess> {
  let out = "";
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start within ${timeoutMs / 1000} s:\n${out}`)), timeoutMs);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      const m = /Host started at (http:\/\/[\d.]+:(\d+))/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve({ child, url: m[1], port: Number(m[2]), output: () => out });
      }
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited early (${code ?? signal}):\n${out}`));
    });
  });
}

/** Polls `probe` every 100 ms until it yields a value (a throw counts as "not yet"). */
export async function poll<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
