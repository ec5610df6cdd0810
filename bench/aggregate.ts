/**
 * `npm run bench:aggregate [-- --size 100 --count 10 --tensors 8 --chunk-elements N --dir D --keep]`
 * (FLO_BENCH_SECAGG=none skips the secure-aggregation rows)
 *
 * Writes `count` updates of `size` MB of F32 each (split into `tensors` tensors) into a temp dir, then
 * prints: the FedAvg kernel's in-memory throughput (GB/s of input); `flo aggregate` end to end on the
 * files (in a child process, so its peak RSS is its own); the numpy in-place reference on the same
 * files (python3 + numpy) with the ratio; then the same aggregation reading from Azurite (in-memory,
 * in this process) versus a raw parallel download of the same blobs. Files are read from the page
 * cache in both cases; each file measurement runs `--repeat` times alternating, best time kept
 * (the machine is shared). Then both as whole processes, start included (`--whole-runs` interleaved
 * runs, medians; see aggregateWholeProcess.ts), with the time of each stage against its limit.
 */

import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { aggregateUpdates } from "../lib/aggregation/engine";
import { createFedAvg } from "../lib/aggregation/fedavg";
import { weightedSum } from "../lib/aggregation/weightedSum";
import { SimdArena } from "../lib/aggregation/simdKernel";
import { readSiloMetrics } from "../lib/compute/siloCompute";
import { STORE_AGGREGATION_READS } from "../lib/federation/storeAggregationReads";
import { runAggregate } from "../lib/cli/aggregate";
import { runStrategyBenchRows, STRATEGY_CHILD_FLAG, strategyBenchChild } from "./strategyRows";
import { fileSink, fileSource } from "../lib/models/fileBytes";
import { SafetensorsWriter } from "../lib/models/safetensors";
import type { ByteSink, ByteSource } from "../lib/models/bytes";
import { peakRssKb } from "./processReportFormat";
import { median, RSS_BUDGET_MB, wholeProcessRows } from "./aggregateWholeProcess";
import { secureAggregationRows } from "./secagg";

const run = promisify(execFile);

interface BenchFlags {
  sizeMb: number;
  count: number;
  tensors: number;
  chunkElements?: number;
  dir?: string;
  keep: boolean;
  repeat: number;
  azurite: boolean;
  /** Only the Azurite rows (the file rows and the strategy rows are skipped). */
  azuriteOnly: boolean;
  /** Interleaved runs of the whole-process comparison. */
  wholeRuns: number;
}

function parseFlags(argv: string[]): BenchFlags {
  const flags: BenchFlags = { sizeMb: 100, count: 10, tensors: 8, keep: false, repeat: 2, azurite: true, azuriteOnly: false, wholeRuns: 5 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (name: string) => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v <= 0) throw new Error(`${name}: expected a positive number, got "${argv[i]}"`);
      return v;
    };
    if (a === "--size") flags.sizeMb = num(a);
    else if (a === "--count") flags.count = Math.floor(num(a));
    else if (a === "--tensors") flags.tensors = Math.floor(num(a));
    else if (a === "--chunk-elements") flags.chunkElements = Math.floor(num(a));
    else if (a === "--dir") flags.dir = argv[++i];
    else if (a === "--keep") flags.keep = true;
    else if (a === "--repeat") flags.repeat = Math.floor(num(a));
    else if (a === "--no-azurite") flags.azurite = false;
    else if (a === "--azurite-only") flags.azuriteOnly = true;
    else if (a === "--whole-runs") flags.wholeRuns = Math.floor(num(a));
    else throw new Error(`unknown flag ${a}; expected --size MB, --count K, --tensors T, --chunk-elements N, --dir D, --keep, --repeat R, --no-azurite, --azurite-only, --whole-runs N`);
  }
  return flags;
}

/** Writes one update: `tensors` F32 tensors totalling ~sizeMb, cheap pseudo-random values. */
async function writeUpdate(dir: string, index: number, sizeMb: number, tensors: number): Promise<string> {
  await fs.mkdir(dir, { recursive: true });
  const totalElements = Math.floor((sizeMb * 1e6) / 4);
  const per = Math.floor(totalElements / tensors);
  const specs = Array.from({ length: tensors }, (_, t) => ({ name: `layer${String(t).padStart(3, "0")}.weight`, dtype: "F32" as const, shape: [per] }));
  const writer = new SafetensorsWriter(fileSink(path.join(dir, "model.safetensors")), specs);
  const block = new Float32Array(1 << 20);
  let seed = (index + 1) * 2654435761;
  for (const spec of writer.layout.tensors) {
    for (let done = 0; done < per; done += block.length) {
      const n = Math.min(block.length, per - done);
      for (let i = 0; i < n; i++) {
        seed = (Math.imul(seed, 1664525) + 1013904223) | 0;
        block[i] = (seed >>> 8) / 16777216 - 0.5;
      }
      await writer.write(spec.name, new Uint8Array(block.buffer, 0, n * 4));
    }
  }
  const written = await writer.commit();
  await fs.writeFile(path.join(dir, "metrics.json"), JSON.stringify({ num_examples: 100 + index * 10, metrics: { loss: 1 / (index + 1) } }));
  return written.sha256;
}

function kernelThroughput(count: number, simd: boolean): { gbPerSecond: number } {
  const length = 1 << 19;
  const arena = simd ? new SimdArena(count * length * 4 + length * 8 + 64 * (count + 1)) : undefined;
  const rows = Array.from({ length: count }, (_, k) => {
    const row = arena ? new Float32Array(arena.buffer, arena.allocate(length * 4).byteOffset, length) : new Float32Array(length);
    for (let i = 0; i < length; i++) row[i] = ((i * (k + 3)) % 97) / 97;
    return row;
  });
  const weights = rows.map(() => 1 / count);
  const out = arena ? new Float64Array(arena.buffer, arena.allocate(length * 8).byteOffset, length) : new Float64Array(length);
  weightedSum(rows, weights, out, length); // warm up
  let iterations = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < 1.5) {
    weightedSum(rows, weights, out, length);
    iterations++;
    elapsed = Number(process.hrtime.bigint() - start) / 1e9;
  }
  return { gbPerSecond: (iterations * count * length * 4) / elapsed / 1e9 };
}

/** Child mode: run `flo aggregate`'s code path, then report time and this process's peak RSS. */
async function child(argv: string[]): Promise<void> {
  const [out, chunk, digestsFile, ...dirs] = argv;
  const chunkElements = chunk === "default" ? undefined : Number(chunk);
  const start = process.hrtime.bigint();
  let code = 0;
  if (digestsFile === "-") {
    code = await runAggregate({ out, strategy: "fedavg", minUpdates: dirs.length, updateDirs: dirs, chunkElements }, { out: () => undefined, err: (l) => console.error(l) });
  } else {
    // Inputs' digests known (as when the model store recorded them at upload): no re-hashing.
    const digests = JSON.parse(await fs.readFile(digestsFile, "utf8")) as string[];
    const sources = dirs.map((d) => fileSource(path.join(d, "model.safetensors")));
    await aggregateUpdates({
      updates: await Promise.all(
        dirs.map(async (d, i) => ({ id: path.basename(d), model: sources[i], metrics: await readSiloMetrics(fileSource(path.join(d, "metrics.json"))), knownSha256: digests[i] })),
      ),
      output: () => fileSink(out),
      strategy: createFedAvg(),
      minUpdates: dirs.length,
      chunkElements,
    });
    for (const s of sources) await s.close!();
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ code, seconds, maxrss_kb: peakRssKb() }));
}

/**
 * Azurite computes the MD5 of every ranged read of at most 4 MiB (to send Content-MD5; Azure Storage
 * does so only when asked) on its single thread: reads above that size skip it.
 */
const AZURITE_MD5_MAX_RANGE = 4 << 20;

type Timing = { seconds: number; maxrss_kb: number; rangeBytes?: number };

/**
 * Aggregation reading from Azurite vs the raw transfers it needs, from the same Azurite: a parallel
 * download of the inputs with the output's upload running alongside. Azurite runs in this process,
 * the measured clients in child processes (as the aggregation activity runs apart from its storage
 * service); this process does nothing else meanwhile.
 */
async function azuriteRow(dirs: string[], inputBytes: number, chunkElements?: number): Promise<void> {
  // Loaded here, not at the top: the child process measuring peak RSS must not carry these modules.
  const { ModelStore } = await import("../lib/models/store");
  const { startAzurite } = await import("../lib/storage/azurite");
  const azurite = await startAzurite({ services: ["blob"] });
  try {
    const store = ModelStore.fromConnectionString(azurite.connectionString, "bench");
    await store.ensureContainer();
    const t0 = Date.now();
    const paths = await Promise.all(
      dirs.map(async (d, i) => {
        const prefix = `federations/bench/rounds/1/updates/silo-${i}`;
        await store.uploadFile(path.join(d, "model.safetensors"), `${prefix}/model.safetensors`);
        await store.uploadFile(path.join(d, "metrics.json"), `${prefix}/metrics.json`);
        return prefix;
      }),
    );
    console.log(`uploaded to Azurite (in-memory, in the benchmark's process) in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    const env = { ...process.env, FLO_BENCH_AZURITE: azurite.connectionString };
    const runChild = async (mode: string) =>
      JSON.parse((await run(process.execPath, [__filename, mode, String(chunkElements ?? "default"), ...paths], { env, maxBuffer: 1 << 20 })).stdout.trim().split("\n").at(-1)!) as Timing;
    const rounds = 3;
    const times: Record<"raw" | "download" | "activity" | "flo" | "readOnly", Timing[]> = { raw: [], download: [], activity: [], flo: [], readOnly: [] };
    for (let r = 0; r < rounds; r++) {
      // interleaved, so that a busy moment on the shared machine hits every row alike
      times.raw.push(await runChild("--child-azurite-transfer"));
      times.activity.push(await runChild("--child-azurite-activity"));
      times.flo.push(await runChild("--child-azurite-aggregate"));
      times.download.push(await runChild("--child-azurite-download"));
      times.readOnly.push(await runChild("--child-azurite-aggregate-discard"));
    }
    const seconds = (t: Timing[]) => median(t.map((x) => x.seconds));
    const range = (t: Timing[]) => `${Math.min(...t.map((x) => x.seconds)).toFixed(2)}-${Math.max(...t.map((x) => x.seconds)).toFixed(2)} s`;
    const rss = (t: Timing[]) => Math.max(...t.map((x) => x.maxrss_kb)) / 1024;
    const outputBytes = inputBytes / dirs.length;
    const rangeMb = (times.flo[0].rangeBytes ?? 0) / 1e6;
    console.log(`from Azurite, ${rounds} interleaved runs each (median, range; peak RSS = the largest of the runs):`);
    console.log(
      `  raw transfers: download of the ${paths.length} inputs at once (8 MiB ranges, 4 per blob) + upload of ${(outputBytes / 1e6).toFixed(0)} MB alongside (${store.blockSize >> 20} MiB blocks, ${store.uploadConcurrency} staged at once, as flo's): ${seconds(times.raw).toFixed(2)} s (${range(times.raw)}); peak RSS ${rss(times.raw).toFixed(0)} MB`,
    );
    const activityRangeMb = (times.activity[0].rangeBytes ?? 0) / 1e6;
    console.log(
      `  flo as the aggregation activity runs it (${activityRangeMb.toFixed(1)} MB ranged reads: above Azurite's ${AZURITE_MD5_MAX_RANGE >> 20} MiB MD5 limit; ${STORE_AGGREGATION_READS.prefetchChunks} chunk read ahead; every input sha256-hashed on the engine's thread; output staged to Azurite while combining): ${seconds(times.activity).toFixed(2)} s (${range(times.activity)}); peak RSS ${rss(times.activity).toFixed(0)} MB`,
    );
    const ratio = seconds(times.raw) / seconds(times.activity);
    console.log(
      `ratio flo / raw transfers (speed): ${ratio.toFixed(2)}x (target >= 0.9x: ${ratio >= 0.9 ? "PASS" : "MISS"}); peak RSS ${rss(times.activity).toFixed(0)} MB (target <= ${RSS_BUDGET_MB} MB: ${rss(times.activity) <= RSS_BUDGET_MB ? "PASS" : "MISS"})`,
    );
    console.log(
      `  the same with the input digests taken from upload metadata instead of hashed (not what the activity does; ${rangeMb.toFixed(1)} MB ranged reads): ${seconds(times.flo).toFixed(2)} s (${range(times.flo)}); peak RSS ${rss(times.flo).toFixed(0)} MB; ${(seconds(times.raw) / seconds(times.flo)).toFixed(2)}x the raw transfers`,
    );
    console.log(
      `  reads alone: raw download ${seconds(times.download).toFixed(2)} s (${range(times.download)}), the same with its output discarded ${seconds(times.readOnly).toFixed(2)} s (${range(times.readOnly)}); ratio ${(seconds(times.download) / seconds(times.readOnly)).toFixed(2)}x`,
    );
  } finally {
    await azurite.stop();
  }
}

/** A sink that keeps nothing: the aggregation's reads measured without its upload. */
function discardSink(): ByteSink {
  let size = 0;
  return {
    name: "discard",
    write: async (chunk) => void (size += chunk.byteLength),
    commit: async () => ({ uri: "discard", size, sha256: "" }),
    abort: async () => undefined,
  };
}

/**
 * Child modes for the Azurite row: the raw transfers (download of `paths` with, or without, an
 * upload of one input's size alongside), or the aggregation (output uploaded or discarded).
 */
async function azuriteChild(mode: string, argv: string[]): Promise<void> {
  const { ModelStore } = await import("../lib/models/store");
  // The store's defaults, as the app's (lib/federation/services.ts): every row stages the same blocks at once.
  const store = ModelStore.fromConnectionString(process.env.FLO_BENCH_AZURITE!, "bench");
  const [chunk, ...paths] = argv;
  const start = process.hrtime.bigint();
  let rangeBytes: number | undefined;
  if (mode === "--child-azurite-download" || mode === "--child-azurite-transfer") {
    const download = Promise.all(
      paths.map(async (p) => {
        for await (const piece of store.readChunks(`${p}/model.safetensors`)) void piece;
      }),
    );
    if (mode === "--child-azurite-transfer") {
      // the output's bytes: as many as one input holds, written as the engine hands them over
      const size = (await store.stat(`${paths[0]}/model.safetensors`)).size;
      const piece = new Uint8Array(4 << 20).fill(1);
      const sink = store.sink("federations/bench/rounds/2/raw/model.safetensors");
      for (let done = 0; done < size; done += piece.length) await sink.write(piece.subarray(0, Math.min(piece.length, size - done)));
      await sink.commit();
    }
    await download;
  } else if (mode === "--child-azurite-activity") {
    // As aggregateRound (lib/federation/activities.ts) calls the engine: store sources, its read
    // options, no known digests (a silo can write its own blob's metadata, so inputs are hashed).
    const sources = paths.map((p) => recordingRangeSize(store.source(`${p}/model.safetensors`), (n) => (rangeBytes = Math.max(rangeBytes ?? 0, n))));
    await aggregateUpdates({
      updates: await Promise.all(paths.map(async (p, i) => ({ id: `silo-${i}`, model: sources[i], metrics: await readSiloMetrics(store.source(`${p}/metrics.json`)) }))),
      output: () => store.sink("federations/bench/rounds/2/global/model.safetensors"),
      strategy: createFedAvg(),
      minUpdates: paths.length,
      ...STORE_AGGREGATION_READS,
      ...(chunk === "default" ? {} : { chunkElements: Number(chunk) }),
    });
  } else {
    const sources = paths.map((p) => recordingRangeSize(store.source(`${p}/model.safetensors`), (n) => (rangeBytes = Math.max(rangeBytes ?? 0, n))));
    await aggregateUpdates({
      updates: await Promise.all(
        paths.map(async (p, i) => ({
          id: `silo-${i}`,
          model: sources[i],
          metrics: await readSiloMetrics(store.source(`${p}/metrics.json`)),
          // the digest the store recorded at upload (the activity does not trust it: see the activity row)
          knownSha256: (await store.stat(`${p}/model.safetensors`)).sha256,
        })),
      ),
      output: () => (mode === "--child-azurite-aggregate-discard" ? discardSink() : store.sink("federations/bench/rounds/2/global/model.safetensors")),
      strategy: createFedAvg(),
      minUpdates: paths.length,
      ...STORE_AGGREGATION_READS,
      ...(chunk === "default" ? {} : { chunkElements: Number(chunk) }),
    });
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ seconds, maxrss_kb: peakRssKb(), ...(rangeBytes !== undefined ? { rangeBytes } : {}) }));
}

/** `source`, reporting the size of each ranged read it serves. */
function recordingRangeSize(source: ByteSource, onRead: (bytes: number) => void): ByteSource {
  return {
    name: source.name,
    size: (options) => source.size(options),
    read: (offset, length, options) => {
      onRead(length);
      return source.read(offset, length, options);
    },
    readInto: (target, offset, options) => {
      onRead(target.byteLength);
      return source.readInto!(target, offset, options);
    },
  };
}

async function main(): Promise<void> {
  if (process.argv[2] === "--child-aggregate") return child(process.argv.slice(3));
  if (process.argv[2]?.startsWith("--child-azurite-")) return azuriteChild(process.argv[2], process.argv.slice(3));
  if (process.argv[2] === STRATEGY_CHILD_FLAG) return strategyBenchChild(process.argv.slice(3)); // one strategy row, in a child process
  const flags = parseFlags(process.argv.slice(2));
  const dir = flags.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), "flo-bench-aggregate-")));
  const dirs = Array.from({ length: flags.count }, (_, i) => path.join(dir, `silo-${String(i).padStart(2, "0")}`));
  const inputBytes = flags.count * flags.sizeMb * 1e6;
  console.log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 1e9)} GB RAM, node ${process.version}`);
  console.log(`updates: ${flags.count} x ${flags.sizeMb} MB F32 (${flags.tensors} tensors each) in ${dir}`);
  try {
    const t0 = Date.now();
    const digests: string[] = [];
    for (let i = 0; i < dirs.length; i++) digests.push(await writeUpdate(dirs[i], i, flags.sizeMb, flags.tensors));
    const digestsFile = path.join(dir, "digests.json");
    await fs.writeFile(digestsFile, JSON.stringify(digests));
    console.log(`generated in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    if (flags.azuriteOnly) return await azuriteRow(dirs, inputBytes, flags.chunkElements);

    const jsKernel = kernelThroughput(flags.count, false);
    const simdKernel = kernelThroughput(flags.count, true);
    console.log(
      `kernel (weighted sum, f32 rows -> f64 accumulator, K=${flags.count}, in memory): WebAssembly SIMD ${simdKernel.gbPerSecond.toFixed(2)} GB/s, plain JS ${jsKernel.gbPerSecond.toFixed(2)} GB/s of input`,
    );

    const out = path.join(dir, "flo-out.safetensors");
    const best = <T extends { seconds: number }>(a: T | undefined, b: T) => (a && a.seconds <= b.seconds ? a : b);
    type ChildResult = { code: number; seconds: number; maxrss_kb: number };
    const runChild = async (digestsArg: string): Promise<ChildResult> => {
      const res = JSON.parse(
        (await run(process.execPath, [__filename, "--child-aggregate", out, String(flags.chunkElements ?? "default"), digestsArg, ...dirs], { maxBuffer: 1 << 20 })).stdout.trim().split("\n").at(-1)!,
      ) as ChildResult;
      if (res.code !== 0) throw new Error(`flo aggregate exited with ${res.code}`);
      return res;
    };
    let flo: ChildResult | undefined;
    let floKnown: ChildResult | undefined;
    let numpy: { seconds: number; maxrss_kb: number } | undefined;
    let numpyError: string | undefined;
    for (let r = 0; r < flags.repeat; r++) {
      flo = best(flo, await runChild("-"));
      floKnown = best(floKnown, await runChild(digestsFile));
      if (numpyError) continue;
      try {
        const np = await run("python3", [path.join(__dirname, "..", "..", "bench", "numpy_reference.py"), path.join(dir, "numpy-out.safetensors"), ...dirs], { maxBuffer: 1 << 20 });
        numpy = best(numpy, JSON.parse(np.stdout.trim().split("\n").at(-1)!) as { seconds: number; maxrss_kb: number });
      } catch (err) {
        numpyError = (err as Error).message.split("\n")[0];
      }
    }
    console.log(
      `flo aggregate (files, end to end, incl. sha256 of every input and the output; best of ${flags.repeat}): ${flo!.seconds.toFixed(2)} s = ${(inputBytes / flo!.seconds / 1e9).toFixed(2)} GB/s of input; peak RSS ${(flo!.maxrss_kb / 1024).toFixed(0)} MB`,
    );
    console.log(
      `flo aggregate (files, inputs' sha256 known from upload records, output hashed; best of ${flags.repeat}): ${floKnown!.seconds.toFixed(2)} s = ${(inputBytes / floKnown!.seconds / 1e9).toFixed(2)} GB/s of input; peak RSS ${(floKnown!.maxrss_kb / 1024).toFixed(0)} MB`,
    );
    if (numpyError) console.log(`numpy reference: not run (${numpyError})`);
    if (numpy) {
      console.log(
        `numpy in-place reference (files, end to end): ${numpy.seconds.toFixed(2)} s = ${(inputBytes / numpy.seconds / 1e9).toFixed(2)} GB/s; peak RSS ${(numpy.maxrss_kb / 1024).toFixed(0)} MB`,
      );
      console.log(
        `ratio flo / numpy (speed): ${(numpy.seconds / flo!.seconds).toFixed(2)}x hashing every input, ${(numpy.seconds / floKnown!.seconds).toFixed(2)}x with known input digests (numpy hashes nothing; target >= 1.0x)`,
      );
    }
    await wholeProcessRows({ dirs, scratchDir: dir, inputBytes, runs: flags.wholeRuns, kernelGbPerSecond: simdKernel.gbPerSecond });
    if (flags.azurite) await azuriteRow(dirs, inputBytes, flags.chunkElements);
    // one row per strategy definition's bench rows (FLO_BENCH_STRATEGIES=all|none|name,name)
    await runStrategyBenchRows({ script: __filename, dirs, scratchDir: dir, inputBytes, chunkElements: flags.chunkElements });
    // Secure aggregation: silo-side masking MB/s, orchestrator unmasking vs a plain weighted sum.
    if (process.env.FLO_BENCH_SECAGG !== "none") await secureAggregationRows({ sizeMb: flags.sizeMb, count: flags.count, tensors: flags.tensors, repeat: flags.repeat });
  } finally {
    if (!flags.keep && !flags.dir) await fs.rm(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
