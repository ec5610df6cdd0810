/**
 * Per-strategy rows of `npm run bench:aggregate` (issue #6): which strategies run, with which
 * options, and how the bench's child process maps one row onto `runAggregate` options. The child
 * receives the row as JSON in the FLO_BENCH_STRATEGY environment variable.
 */
import * as path from "node:path";
import type { Json } from "../strategy";

export interface BenchStrategyRow {
  label: string;
  strategy: string;
  options: Json;
  /** server optimizers and clipping need the round's global model (the bench uses update 0's) */
  needsGlobal: boolean;
  /** optimizers keep state files */
  keepsState: boolean;
}

export const BENCH_STRATEGY_ROWS: readonly BenchStrategyRow[] = [
  { label: "median", strategy: "median", options: {}, needsGlobal: false, keepsState: false },
  { label: "trimmed-mean (beta 0.2)", strategy: "trimmed-mean", options: { beta: 0.2 }, needsGlobal: false, keepsState: false },
  { label: "krum (f 2)", strategy: "krum", options: { byzantine: 2 }, needsGlobal: false, keepsState: false },
  { label: "multi-krum (f 2, keep 5)", strategy: "multi-krum", options: { byzantine: 2, keep: 5 }, needsGlobal: false, keepsState: false },
  { label: "bulyan (f 1)", strategy: "bulyan", options: { byzantine: 1 }, needsGlobal: false, keepsState: false },
  { label: "fedavgm (mu 0.9)", strategy: "fedavgm", options: { momentum: 0.9 }, needsGlobal: true, keepsState: true },
  { label: "fedadam", strategy: "fedadam", options: {}, needsGlobal: true, keepsState: true },
  { label: "fedyogi", strategy: "fedyogi", options: {}, needsGlobal: true, keepsState: true },
  { label: "fedadagrad", strategy: "fedadagrad", options: {}, needsGlobal: true, keepsState: true },
  {
    label: "fedavg + clipping + central DP",
    strategy: "fedavg",
    options: { clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 1, delta: 1e-5 } },
    needsGlobal: true,
    keepsState: false,
  },
];

/** Rows selected by `--strategies all|none|name,name` (matched on the strategy name). */
export function selectBenchRows(selector: string | undefined, count: number): BenchStrategyRow[] {
  const rows = BENCH_STRATEGY_ROWS.filter((r) => r.strategy !== "bulyan" || count >= 7 || selector === "bulyan");
  if (selector === undefined || selector === "all") return rows;
  if (selector === "none") return [];
  const wanted = selector.split(",").map((s) => s.trim());
  const unknown = wanted.filter((w) => !BENCH_STRATEGY_ROWS.some((r) => r.strategy === w));
  if (unknown.length) throw new Error(`--strategies: unknown ${unknown.join(", ")}; expected all, none or names from ${[...new Set(BENCH_STRATEGY_ROWS.map((r) => r.strategy))].join(", ")}`);
  return rows.filter((r) => wanted.includes(r.strategy));
}

/** The runAggregate options of the row in FLO_BENCH_STRATEGY (plain fedavg when unset). */
export function benchStrategyFromEnv(
  dirs: readonly string[],
  scratchDir: string,
  env: NodeJS.ProcessEnv = process.env,
): { strategy: string; strategyOptions?: Json; global?: string; stateOut?: string } {
  const raw = env.FLO_BENCH_STRATEGY;
  if (!raw) return { strategy: "fedavg" };
  const row = JSON.parse(raw) as BenchStrategyRow;
  return {
    strategy: row.strategy,
    strategyOptions: row.options,
    ...(row.needsGlobal ? { global: path.join(dirs[0], "model.safetensors") } : {}),
    ...(row.keepsState ? { stateOut: path.join(scratchDir, `state-${row.strategy}`) } : {}),
  };
}
