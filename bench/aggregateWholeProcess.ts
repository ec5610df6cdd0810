/**
 * `flo aggregate` timed as a user runs it: `node bin/flo.js aggregate ...` as a whole process (Node
 * start, module loading, worker threads, sha256 of every input and of the output, the fsync'd write),
 * against the numpy reference run the same way (`python bench/numpy_reference.py`: Python start and
 * the numpy import included), interleaved, then each stage of flo's work alone against its limit on
 * this machine, measured in the same run.
 */

import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { HashPool } from "../lib/aggregation/hashPool";
import { fileSink, fileSource } from "../lib/models/fileBytes";
import { parseProcessReport } from "./processReportFormat";

const run = promisify(execFile);

export interface WholeProcessOptions {
  dirs: string[];
  /** Where the outputs go. */
  scratchDir: string;
  /** Bytes of tensor data in the inputs (for GB/s). */
  inputBytes: number;
  /** Interleaved runs of each process (medians reported). */
  runs: number;
  /** The combine kernel's in-memory rate measured earlier in the run (GB/s of input). */
  kernelGbPerSecond: number;
}

export const SPEED_TARGET = 1.5;
export const RSS_BUDGET_MB = 256;

interface Timed {
  seconds: number;
  cpuSeconds?: number;
  maxrssKb?: number;
}

const REPO = path.resolve(__dirname, "..", "..");

/** Wall time of one process from spawn to exit (a failure stops the benchmark). */
async function timeProcess(file: string, args: string[]): Promise<{ seconds: number; stdout: string; stderr: string }> {
  const start = process.hrtime.bigint();
  const { stdout, stderr } = await run(file, args, { cwd: REPO, maxBuffer: 16 << 20 });
  return { seconds: Number(process.hrtime.bigint() - start) / 1e9, stdout, stderr };
}

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/**
 * The Python interpreter with numpy: FLO_BENCH_PYTHON, else /usr/bin/python3, else the interpreter
 * behind `python3` (its real path, not a version manager's shell shim, whose own start would be
 * counted against the reference).
 */
async function findPython(): Promise<{ python: string; numpy: string } | { error: string }> {
  const candidates = [process.env.FLO_BENCH_PYTHON, "/usr/bin/python3", "python3"].filter((c): c is string => Boolean(c));
  const errors: string[] = [];
  for (const candidate of candidates) {
    try {
      const { stdout } = await run(candidate, ["-c", "import sys, numpy; print(sys.executable); print(numpy.__version__)"]);
      const [python, numpy] = stdout.trim().split("\n");
      return { python, numpy };
    } catch (err) {
      errors.push(`${candidate}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  return { error: errors.join("; ") };
}

/**
 * Bytes per CPU second of `work` on `bytes` (best of `runs`): the machine's limit for it, whatever
 * share of a core the other processes on this shared machine leave us at the moment.
 */
function cpuRate(bytes: number, runs: number, work: () => void): number {
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const before = process.cpuUsage();
    work();
    const used = process.cpuUsage(before);
    best = Math.min(best, (used.user + used.system) / 1e6);
  }
  return bytes / best / 1e9;
}

/** memcpy GB per CPU second (64 MB copies). */
function memcpyGbPerSecond(): number {
  const source = Buffer.alloc(64 << 20, 1);
  const target = Buffer.allocUnsafe(source.length);
  return cpuRate(source.length, 8, () => source.copy(target));
}

/** sha256 GB per CPU second on one core (64 MB at a time). */
function sha256GbPerSecond(): number {
  const data = Buffer.alloc(64 << 20, 7);
  return cpuRate(data.length, 4, () => createHash("sha256").update(data).digest());
}

/** The engine's read pattern alone: every update's bytes in 2 MB ranged reads, all updates at once per chunk. */
async function readStage(dirs: string[]): Promise<{ seconds: number; bytes: number }> {
  const chunk = 2 << 20;
  const sources = dirs.map((d) => fileSource(path.join(d, "model.safetensors")));
  try {
    const sizes = await Promise.all(sources.map((s) => s.size()));
    const buffers = sources.map(() => new Uint8Array(chunk));
    const start = process.hrtime.bigint();
    for (let offset = 0; offset < Math.max(...sizes); offset += chunk) {
      await Promise.all(sources.map((s, k) => (offset < sizes[k] ? s.readInto!(buffers[k].subarray(0, Math.min(chunk, sizes[k] - offset)), offset) : Promise.resolve())));
    }
    return { seconds: Number(process.hrtime.bigint() - start) / 1e9, bytes: sizes.reduce((a, b) => a + b, 0) };
  } finally {
    for (const s of sources) await s.close!();
  }
}

/** The hash workers alone on `bytes` from memory (as the engine feeds them), and their start. */
async function hashStage(bytes: number, files: number): Promise<{ startSeconds: number; seconds: number }> {
  const segment = 2 << 20;
  const buffer = new SharedArrayBuffer(files * segment);
  new Uint8Array(buffer).fill(5);
  const started = process.hrtime.bigint();
  const pool = new HashPool(buffer, 2);
  try {
    pool.reset(Array.from({ length: files }, (_, id) => [id, new Uint8Array(8)] as [number, Uint8Array]));
    await pool.update([]);
    await pool.digests(); // both workers up and answering
    const ready = process.hrtime.bigint();
    pool.reset(Array.from({ length: files }, (_, id) => [id, new Uint8Array(8)] as [number, Uint8Array]));
    let pending: Promise<void> = Promise.resolve();
    for (let done = 0; done < bytes; done += files * segment) {
      const update = pool.update(Array.from({ length: files }, (_, id) => [id, id * segment, segment] as [number, number, number]));
      await pending; // one batch in flight while the next is posted, like the engine's slots
      pending = update;
    }
    await pending;
    await pool.digests();
    return { startSeconds: Number(ready - started) / 1e9, seconds: Number(process.hrtime.bigint() - ready) / 1e9 };
  } finally {
    await pool.close();
  }
}

/** The output write alone: `bytes` through the file sink (sha256 while writing, fsync, rename). */
async function writeStage(file: string, bytes: number): Promise<number> {
  const chunk = new Uint8Array(4 << 20).fill(3);
  const start = process.hrtime.bigint();
  const sink = fileSink(file);
  for (let done = 0; done < bytes; done += chunk.length) await sink.write(chunk.subarray(0, Math.min(chunk.length, bytes - done)));
  await sink.commit();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

export async function wholeProcessRows(options: WholeProcessOptions): Promise<void> {
  const { dirs, scratchDir, inputBytes, runs } = options;
  const found = await findPython();
  const flo = path.join(REPO, "bin", "flo.js");
  const hook = path.join(REPO, "dist", "bench", "processReport.js");
  const floOut = path.join(scratchDir, "whole-flo.safetensors");
  const numpyOut = path.join(scratchDir, "whole-numpy.safetensors");
  const rows: { label: string; run: () => Promise<Timed>; times: Timed[] }[] = [
    { label: "node -e 0", run: async () => timeProcess(process.execPath, ["-e", "0"]), times: [] },
    { label: "flo aggregate --help", run: async () => timeProcess(process.execPath, [flo, "aggregate", "--help"]), times: [] },
    {
      label: "flo aggregate",
      run: async () => {
        const t = await timeProcess(process.execPath, ["--require", hook, flo, "aggregate", "--out", floOut, ...dirs]);
        const report = parseProcessReport(t.stderr);
        if (!t.stdout.includes(`aggregated ${dirs.length} of ${dirs.length} updates`)) throw new Error(`flo aggregate did not aggregate every update: ${t.stdout.slice(-300)}`);
        return { seconds: t.seconds, cpuSeconds: report?.cpu_s, maxrssKb: report?.maxrss_kb };
      },
      times: [],
    },
  ];
  if ("python" in found) {
    rows.push({ label: "python -c 'import numpy'", run: async () => timeProcess(found.python, ["-c", "import numpy"]), times: [] });
    rows.push({
      label: "numpy reference",
      run: async () => {
        const t = await timeProcess(found.python, [path.join(REPO, "bench", "numpy_reference.py"), numpyOut, ...dirs]);
        const report = JSON.parse(t.stdout.trim().split("\n").at(-1)!) as { maxrss_kb: number; cpu_s: number };
        return { seconds: t.seconds, cpuSeconds: report.cpu_s, maxrssKb: report.maxrss_kb };
      },
      times: [],
    });
  }
  for (const row of rows) await row.run(); // warm-up: page cache, compiled code caches
  for (let r = 0; r < runs; r++) for (const row of rows) row.times.push(await row.run());

  const stat = (label: string) => {
    const times = rows.find((r) => r.label === label)?.times;
    if (!times) return undefined;
    const cpu = times.map((t) => t.cpuSeconds).filter((c): c is number => c !== undefined);
    const rss = times.map((t) => t.maxrssKb).filter((c): c is number => c !== undefined);
    return {
      median: median(times.map((t) => t.seconds)),
      min: Math.min(...times.map((t) => t.seconds)),
      cpu: cpu.length ? median(cpu) : undefined,
      rssMb: rss.length ? Math.max(...rss) / 1024 : undefined,
    };
  };
  const ms = (s: number) => `${(s * 1000).toFixed(0)} ms`;
  console.log(`whole process, files in the page cache, ${runs} interleaved runs each (median, min; CPU = all threads, user + system):`);
  for (const row of rows) {
    const s = stat(row.label)!;
    console.log(
      `  ${row.label.padEnd(26)} ${s.median.toFixed(3)} s (min ${s.min.toFixed(3)} s)${s.cpu !== undefined ? `  CPU ${s.cpu.toFixed(2)} s` : ""}${s.rssMb !== undefined ? `  peak RSS ${s.rssMb.toFixed(0)} MB` : ""}`,
    );
  }
  const floStat = stat("flo aggregate")!;
  const numpyStat = stat("numpy reference");
  if ("error" in found) console.log(`numpy reference (whole process): not run (${found.error})`);
  else if (numpyStat) {
    const ratio = numpyStat.median / floStat.median;
    console.log(`  python: ${found.python}, numpy ${found.numpy}`);
    console.log(
      `ratio flo aggregate / numpy reference, whole processes (speed): ${ratio.toFixed(2)}x on medians, ${(numpyStat.min / floStat.min).toFixed(2)}x on minima (target >= ${SPEED_TARGET}x: ${ratio >= SPEED_TARGET ? "PASS" : "MISS"}); ` +
        `peak RSS ${floStat.rssMb!.toFixed(0)} MB (target <= ${RSS_BUDGET_MB} MB: ${floStat.rssMb! <= RSS_BUDGET_MB ? "PASS" : "MISS"})`,
    );
  }

  // Where the time goes: each stage alone, against what this machine allows for it.
  const memcpy = memcpyGbPerSecond();
  const sha = sha256GbPerSecond();
  const outputBytes = inputBytes / dirs.length;
  const hashedBytes = inputBytes + outputBytes;
  const read = await readStage(dirs);
  const hash = await hashStage(inputBytes, dirs.length);
  const write = await writeStage(path.join(scratchDir, "write-stage.safetensors"), outputBytes);
  const kernelSeconds = inputBytes / (options.kernelGbPerSecond * 1e9);
  const nodeStart = stat("node -e 0")!.median;
  const cliStart = stat("flo aggregate --help")!.median;
  console.log(
    `where flo aggregate's time goes (each stage alone, wall time, this run; limits per CPU second: memcpy ${memcpy.toFixed(1)} GB/s, sha256 ${sha.toFixed(2)} GB/s per core; 2 cores; load average ${os.loadavg()[0].toFixed(1)}):`,
  );
  console.log(`  start      node ${ms(nodeStart)} + flo's modules ${ms(cliStart - nodeStart)} (flo aggregate --help); limit: node alone`);
  console.log(
    `  read       ${(read.bytes / 1e9).toFixed(2)} GB in 2 MB ranged reads: ${read.seconds.toFixed(3)} s = ${(read.bytes / read.seconds / 1e9).toFixed(2)} GB/s; limit (memcpy) ${(read.bytes / memcpy / 1e9).toFixed(3)} s`,
  );
  console.log(
    `  hash       ${(hashedBytes / 1e9).toFixed(2)} GB (inputs + output): ${hash.seconds.toFixed(3)} s on the 2 hash workers (+ ${ms(hash.startSeconds)} to start them); limit (both cores hashing) ${(hashedBytes / (2 * sha) / 1e9).toFixed(3)} s`,
  );
  console.log(
    `  kernel     ${(inputBytes / 1e9).toFixed(2)} GB at ${options.kernelGbPerSecond.toFixed(1)} GB/s: ${kernelSeconds.toFixed(3)} s; limit (memcpy) ${(inputBytes / memcpy / 1e9).toFixed(3)} s`,
  );
  console.log(
    `  write      ${(outputBytes / 1e9).toFixed(2)} GB through the file sink (sha256, fsync, rename): ${write.toFixed(3)} s; limit (memcpy + sha256) ${((outputBytes / memcpy + outputBytes / sha) / 1e9).toFixed(3)} s`,
  );
  // Read, hash, kernel and write all compete for the same two cores: the sum of the CPU they need
  // over 2 is a floor on the whole aggregation, however well they overlap.
  const cpuFloor = nodeStart + (cliStart - nodeStart) + (read.bytes / memcpy + hashedBytes / sha + inputBytes / memcpy + outputBytes / memcpy) / 1e9 / 2;
  console.log(
    `  floor      start + (read + hash + kernel + write at their limits) / 2 cores = ${cpuFloor.toFixed(3)} s; flo aggregate measured ${floStat.median.toFixed(3)} s using ${floStat.cpu?.toFixed(2) ?? "?"} s of CPU${numpyStat ? `; at this floor the ratio would be ${(numpyStat.median / cpuFloor).toFixed(2)}x` : ""}`,
  );
}
