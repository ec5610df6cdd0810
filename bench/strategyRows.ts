/**
 * Per-strategy rows of `npm run bench:aggregate`, derived from the strategy registry: every
 * definition's `bench` rows, with what the row needs (a global model, state files, a kernel worker)
 * read from the strategy itself. Each row runs `flo aggregate`'s code path in a child process (so
 * its peak RSS is its own). Rows are selected by FLO_BENCH_STRATEGIES=all (default) | none | name,name.
 */
import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";
import { createStrategy, strategyDefinitions } from "../lib/aggregation/registry";
import type { Json, RoundContext } from "../lib/aggregation/strategy";
import { runAggregate } from "../lib/cli/aggregate";

/** argv[2] of the bench script when it runs one strategy row as a child process. */
export const STRATEGY_CHILD_FLAG = "--child-strategy";

export interface BenchStrategyRow {
  label: string;
  strategy: string;
  options: Json;
  /** server optimizers and clipping need the round's global model (the bench uses update 0's) */
  needsGlobal: boolean;
  /** optimizers keep state files */
  keepsState: boolean;
  /** robust rules run part of each chunk on a kernel worker: the row also runs on one thread, for the ratio */
  kernelWorker?: boolean;
}

/** Every registered definition's bench rows (plain fedavg has its own rows in bench/aggregate.ts). */
export function benchStrategyRows(): BenchStrategyRow[] {
  return strategyDefinitions().flatMap((definition) =>
    definition.bench.map((row) => {
      const strategy = createStrategy(definition.name, row.options);
      return {
        label: row.label,
        strategy: definition.name,
        options: row.options,
        needsGlobal: strategy.needsGlobal,
        keepsState: strategy.stateTensors.length > 0,
        ...(strategy.parallelKernels ? { kernelWorker: true } : {}),
      };
    }),
  );
}

/** True when the row's strategy can aggregate `count` updates (e.g. Bulyan with f = 1 needs 7). */
function runsWith(row: BenchStrategyRow, count: number): boolean {
  const ctx: RoundContext = {
    updates: Array.from({ length: count }, (_, i) => ({ id: `u${i}`, numExamples: 1 })),
    tensors: [],
    floatElements: 0,
    state: undefined,
    stateTensorsPresent: [],
  };
  try {
    createStrategy(row.strategy, row.options).checkRound?.(ctx, true);
    return true;
  } catch {
    return false;
  }
}

/** Rows selected by `--strategies all|none|name,name` (matched on the strategy name). */
export function selectBenchRows(selector: string | undefined, count: number): BenchStrategyRow[] {
  const all = benchStrategyRows();
  const rows = all.filter((r) => runsWith(r, count) || selector === r.strategy);
  if (selector === undefined || selector === "all") return rows;
  if (selector === "none") return [];
  const wanted = selector.split(",").map((s) => s.trim());
  const unknown = wanted.filter((w) => !all.some((r) => r.strategy === w));
  if (unknown.length) throw new Error(`--strategies: unknown ${unknown.join(", ")}; expected all, none or names from ${[...new Set(all.map((r) => r.strategy))].join(", ")}`);
  return rows.filter((r) => wanted.includes(r.strategy));
}

/** The runAggregate options of one row (update 0's model stands in for the global model). */
export function benchRowAggregateOptions(row: BenchStrategyRow, dirs: readonly string[], scratchDir: string): { strategy: string; strategyOptions: Json; global?: string; stateOut?: string } {
  return {
    strategy: row.strategy,
    strategyOptions: row.options,
    ...(row.needsGlobal ? { global: path.join(dirs[0], "model.safetensors") } : {}),
    ...(row.keepsState ? { stateOut: path.join(scratchDir, `state-${row.strategy}`) } : {}),
  };
}

/**
 * This process's peak RSS. Linux carries getrusage's ru_maxrss over fork+exec, so a child spawned
 * by a big parent would report the parent's peak; VmHWM belongs to the exec'd image only.
 */
async function peakRssKb(): Promise<number> {
  try {
    const match = /^VmHWM:\s+(\d+) kB/m.exec(await fs.readFile("/proc/self/status", "utf8"));
    if (match) return Number(match[1]);
  } catch {
    // not Linux: fall back below
  }
  return process.resourceUsage().maxRSS;
}

/** Child side: `<script> --child-strategy <row json> <chunk|default> <kernel workers|default> <scratch dir> <update dir>...`. */
export async function strategyBenchChild(argv: readonly string[]): Promise<void> {
  const [rowJson, chunk, kernelWorkers, scratchDir, ...dirs] = argv;
  const row = JSON.parse(rowJson) as BenchStrategyRow;
  const start = process.hrtime.bigint();
  const code = await runAggregate(
    {
      out: path.join(scratchDir, `out-${row.strategy}.safetensors`),
      minUpdates: dirs.length,
      updateDirs: [...dirs],
      chunkElements: chunk === "default" ? undefined : Number(chunk),
      ...(kernelWorkers === "default" ? {} : { kernelWorkers: Number(kernelWorkers) }),
      ...benchRowAggregateOptions(row, dirs, scratchDir),
    },
    { out: () => undefined, err: (l) => console.error(l) },
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(JSON.stringify({ code, seconds, maxrss_kb: await peakRssKb() }));
}

/** Parent side: one printed row per selected strategy (throughput in GB/s of input, peak RSS). */
export async function runStrategyBenchRows(args: { script: string; dirs: readonly string[]; scratchDir: string; inputBytes: number; chunkElements?: number; selector?: string }): Promise<void> {
  const rows = selectBenchRows(args.selector ?? process.env.FLO_BENCH_STRATEGIES, args.dirs.length);
  const runRow = async (row: BenchStrategyRow, kernelWorkers: string) => {
    const res = await promisify(execFile)(
      process.execPath,
      [args.script, STRATEGY_CHILD_FLAG, JSON.stringify(row), String(args.chunkElements ?? "default"), kernelWorkers, args.scratchDir, ...args.dirs],
      { maxBuffer: 1 << 20 },
    );
    const result = JSON.parse(res.stdout.trim().split("\n").at(-1)!) as { code: number; seconds: number; maxrss_kb: number };
    if (result.code !== 0) throw new Error(`strategy ${row.label}: flo aggregate exited with ${result.code}`);
    return result;
  };
  for (const row of rows) {
    const result = await runRow(row, "default");
    let oneThread = "";
    if (row.kernelWorker) {
      const single = await runRow(row, "0");
      oneThread = `; on one thread (no kernel worker) ${single.seconds.toFixed(2)} s: the kernel worker makes it ${(single.seconds / result.seconds).toFixed(2)}x as fast`;
    }
    console.log(
      `strategy ${row.label} (files, end to end): ${result.seconds.toFixed(2)} s = ${(args.inputBytes / result.seconds / 1e9).toFixed(2)} GB/s of input; peak RSS ${(result.maxrss_kb / 1024).toFixed(0)} MB${oneThread}`,
    );
    await fs.rm(path.join(args.scratchDir, `out-${row.strategy}.safetensors`), { force: true });
  }
}
