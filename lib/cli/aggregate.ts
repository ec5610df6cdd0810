/**
 * `flo aggregate --out <file.safetensors> [--strategy fedavg] [--min-updates N] <update-dir>...`
 * Each update dir is a silo job output (model.safetensors + metrics.json). Same code path as the
 * orchestrator's aggregation activity: `aggregateUpdates`.
 */

import type { Command } from "commander";
import { statSync } from "node:fs";
import * as path from "node:path";
// The engine (kernel workers, hashing) loads when the command runs; the help text needs only the
// strategy names and flags.
import type { AggregationResult, UpdateInput } from "../aggregation/engine";
import type { UpdateMetrics } from "../aggregation/metrics";
import { METRICS_FILE, MODEL_FILE, readSiloMetrics, SiloOutputError } from "../compute/siloCompute";
import { AggregationError } from "../aggregation/errors";
import { createStrategy, strategyNames } from "../aggregation/registry";
import type { Json } from "../aggregation/strategy";
import { fileSink, fileSource } from "../models/fileBytes";
import { StrategyConfigError } from "../aggregation/strategies/errors";
import { loadStateDir, stateDirOutput, writeStateDirJson, type LoadedStateDir } from "../aggregation/strategies/stateFiles";
import { addStrategyFlags, strategyOptionFlags, strategyOptionsFromFlags } from "./strategyFlags";

export interface AggregateCommandOptions {
  out: string;
  strategy: string;
  /** Strategy options (the strategy option flags map onto this). */
  strategyOptions?: Json;
  minUpdates: number;
  updateDirs: string[];
  /** The round's global model file (server optimizers, clipping). */
  global?: string;
  /** Strategy state dirs: read the previous round's, write this round's. */
  stateIn?: string;
  stateOut?: string;
  chunkElements?: number;
  /** Kernel worker threads (engine default when absent; the benchmark compares 0 with it). */
  kernelWorkers?: number;
  signal?: AbortSignal;
}

export interface CommandIO {
  out(line: string): void;
  err(line: string): void;
}

/** Runs the command; returns the process exit code (0 iff >= minUpdates updates were aggregated). */
export async function runAggregate(options: AggregateCommandOptions, io: CommandIO): Promise<number> {
  if (options.updateDirs.length === 0) {
    io.err("flo aggregate: give at least one update directory (each holding model.safetensors and metrics.json)");
    return 2;
  }
  const strategy = createStrategyForFlags(options.strategy, options.strategyOptions ?? {});
  if (strategy.stateTensors.length > 0 && !options.stateOut) {
    io.err(
      `flo aggregate: ${strategy.name} keeps per-coordinate state (${strategy.stateTensors.map((s) => s.name).join(", ")}): give --state-out <dir> (and --state-in <dir> from the previous round)`,
    );
    return 2;
  }
  let stateIn: LoadedStateDir | undefined;
  if (options.stateIn)
    stateIn = await loadStateDir(
      options.stateIn,
      strategy.stateTensors.map((s) => s.name),
    );
  const globalSource = options.global ? fileSource(path.resolve(options.global)) : undefined;
  const ids = uniqueIds(options.updateDirs);
  await prestartHashing(options.updateDirs.map((dir) => path.join(dir, MODEL_FILE)));
  const sources = options.updateDirs.map((dir) => ({ model: fileSource(path.join(dir, MODEL_FILE)), metricsPath: path.join(dir, METRICS_FILE) }));
  const unreadable: { id: string; reason: string }[] = [];
  const updates: UpdateInput[] = [];
  for (const [i, s] of sources.entries()) {
    const metrics = await readMetricsFile(s.metricsPath, options.signal);
    if ("reason" in metrics) unreadable.push({ id: ids[i], reason: metrics.reason });
    else updates.push({ id: ids[i], model: s.model, metrics });
  }
  let result: AggregationResult;
  try {
    const { aggregateUpdates } = await import("../aggregation/engine");
    result = await aggregateUpdates({
      updates,
      output: () => fileSink(path.resolve(options.out)),
      strategy,
      ...(globalSource ? { global: globalSource } : {}),
      ...(stateIn ? { state: stateIn.input } : {}),
      ...(options.stateOut ? { stateOutput: stateDirOutput(options.stateOut) } : {}),
      minUpdates: options.minUpdates,
      chunkElements: options.chunkElements,
      ...(options.kernelWorkers !== undefined ? { kernelWorkers: options.kernelWorkers } : {}),
      signal: options.signal,
    });
  } catch (err) {
    if (err instanceof AggregationError && err.code === "TOO_FEW_UPDATES") {
      const excluded = [...unreadable, ...err.excluded];
      for (const e of excluded) io.out(`excluded  ${e.id}  ${e.reason}`);
      const details = excluded.map((e) => `${e.id}: ${e.reason}`).join("; ");
      const valid = updates.length - err.excluded.length;
      io.err(`flo aggregate: not aggregated: ${valid} valid update(s), need at least ${options.minUpdates}${details ? ` (excluded ${details})` : ""} [${err.code}]`);
      return 1;
    }
    throw err;
  } finally {
    await stateIn?.close();
    await globalSource?.close?.();
    for (const s of sources) await s.model.close?.();
  }
  for (const u of result.included) io.out(`included  ${u.id}  num_examples=${u.numExamples}  sha256=${u.sha256}`);
  for (const e of [...unreadable, ...result.excluded]) io.out(`excluded  ${e.id}  ${e.reason}`);
  const metrics = Object.entries(result.metrics)
    .map(([k, v]) => `${k}=${v}`)
    .join("  ");
  if (metrics) io.out(`metrics   ${metrics}`);
  if (options.stateOut) await writeStateDirJson(options.stateOut, { strategy: strategy.name, state: result.state.json, ...(result.state.report !== undefined ? { report: result.state.report } : {}) });
  if (result.state.report !== undefined) io.out(`strategy  ${JSON.stringify(result.state.report)}`);
  io.out(`output    ${result.output.uri}  size=${result.output.size}  sha256=${result.output.sha256}`);
  io.out(`engine    kernel_workers=${result.kernelWorkers}`);
  io.out(`aggregated ${result.included.length} of ${options.updateDirs.length} updates with ${strategy.name} (${result.totalExamples} examples)`);
  return 0;
}

/** An update's metrics.json, validated by the silo job contract's parser, or why it is unusable. */
async function readMetricsFile(metricsPath: string, signal?: AbortSignal): Promise<UpdateMetrics | { reason: string }> {
  const source = fileSource(metricsPath);
  try {
    return await readSiloMetrics(source, { signal });
  } catch (err) {
    if (signal?.aborted) throw err;
    if (err instanceof SiloOutputError) return { reason: `metrics: ${err.message}` };
    return { reason: `metrics: ${metricsPath}: cannot read metrics: ${(err as Error).message}` };
  } finally {
    await source.close?.();
  }
}

/** createStrategy, with option errors naming the flag (--server-lr) rather than the spec field. */
export function createStrategyForFlags(name: string, options: Json): ReturnType<typeof createStrategy> {
  try {
    return createStrategy(name, options);
  } catch (err) {
    if (!(err instanceof StrategyConfigError)) throw err;
    const key = err.field.replace(/^aggregation\./, "");
    const flag = key === "strategy" ? { flag: "--strategy" } : strategyOptionFlags().find((f) => f.key === key);
    if (!flag) throw err;
    throw new StrategyConfigError(flag.flag, err.expected, err.got);
  }
}

/** Update ids: the directory's base name, or the path as given when base names collide. */
function uniqueIds(dirs: string[]): string[] {
  const bases = dirs.map((d) => path.basename(path.resolve(d)));
  return dirs.map((d, i) => (bases.filter((b) => b === bases[i]).length > 1 ? d : bases[i]));
}

function positiveInt(flag: string) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${flag}: expected an integer >= 1, got "${value}"`);
    return n;
  };
}

export function register(command: Command): void {
  command
    .argument("<update-dir...>", "update directories")
    .requiredOption("--out <file>", "output model file (.safetensors)")
    .option("--strategy <name>", `aggregation strategy (${strategyNames().join(", ")})`, "fedavg")
    .option("--min-updates <n>", "fail unless at least this many valid updates are aggregated", positiveInt("--min-updates"), 1)
    .option("--chunk-elements <n>", "elements per streamed chunk and update", positiveInt("--chunk-elements"));
  addStrategyFlags(command) // one flag per strategy option (--beta, --byzantine, --server-lr...), --global, --state-in, --state-out
    .action(
      async (
        updateDirs: string[],
        flags: { out: string; strategy: string; minUpdates: number; chunkElements?: number; global?: string; stateIn?: string; stateOut?: string } & Record<string, unknown>,
      ) => {
        const code = await runAggregate(
          {
            out: flags.out,
            strategy: flags.strategy,
            strategyOptions: strategyOptionsFromFlags(flags),
            minUpdates: flags.minUpdates,
            chunkElements: flags.chunkElements,
            updateDirs,
            global: flags.global,
            stateIn: flags.stateIn,
            stateOut: flags.stateOut,
          },
          { out: (l) => console.log(l), err: (l) => console.error(l) },
        );
        if (code !== 0) process.exitCode = code;
      },
    );
}

/**
 * Starts the engine's hash workers before the engine itself loads, when it will want them (the
 * models total enough bytes): they boot on the other core meanwhile, instead of after the headers
 * are read.
 */
async function prestartHashing(modelFiles: string[]): Promise<void> {
  const { defaultHashWorkers, prestartHashWorkers } = await import("../aggregation/hashPool");
  const bytes = modelFiles.reduce((sum, file) => sum + (statSync(file, { throwIfNoEntry: false })?.size ?? 0), 0);
  prestartHashWorkers(Math.min(defaultHashWorkers(bytes), modelFiles.length));
}
