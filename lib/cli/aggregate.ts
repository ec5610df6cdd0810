/**
 * `flo aggregate --out <file.safetensors> [--strategy fedavg] [--min-updates N] <update-dir>...`
 * Each update dir is a silo job output (model.safetensors + metrics.json). Same code path as the
 * orchestrator's aggregation activity: `aggregateUpdates`.
 */

import type { Command } from "commander";
import * as path from "node:path";
import { aggregateUpdates, AggregationResult } from "../aggregation/engine";
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
    io.err(`flo aggregate: ${strategy.name} keeps per-coordinate state (${strategy.stateTensors.map((s) => s.name).join(", ")}): give --state-out <dir> (and --state-in <dir> from the previous round)`);
    return 2;
  }
  let stateIn: LoadedStateDir | undefined;
  if (options.stateIn) stateIn = await loadStateDir(options.stateIn, strategy.stateTensors.map((s) => s.name));
  const globalSource = options.global ? fileSource(path.resolve(options.global)) : undefined;
  const ids = uniqueIds(options.updateDirs);
  const sources = options.updateDirs.map((dir) => ({
    model: fileSource(path.join(dir, "model.safetensors")),
    metrics: fileSource(path.join(dir, "metrics.json")),
  }));
  let result: AggregationResult;
  try {
    result = await aggregateUpdates({
      updates: sources.map((s, i) => ({ id: ids[i], model: s.model, metrics: s.metrics })),
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
      for (const e of err.excluded) io.out(`excluded  ${e.id}  ${e.reason}`);
      io.err(`flo aggregate: not aggregated: ${err.message}`);
      return 1;
    }
    throw err;
  } finally {
    await stateIn?.close();
    await globalSource?.close?.();
    for (const s of sources) {
      await s.model.close?.();
      await s.metrics.close?.();
    }
  }
  for (const u of result.included) io.out(`included  ${u.id}  num_examples=${u.numExamples}  sha256=${u.sha256}`);
  for (const e of result.excluded) io.out(`excluded  ${e.id}  ${e.reason}`);
  const metrics = Object.entries(result.metrics).map(([k, v]) => `${k}=${v}`).join("  ");
  if (metrics) io.out(`metrics   ${metrics}`);
  if (options.stateOut) await writeStateDirJson(options.stateOut, { strategy: strategy.name, state: result.state.json, ...(result.state.report !== undefined ? { report: result.state.report } : {}) });
  if (result.state.report !== undefined) io.out(`strategy  ${JSON.stringify(result.state.report)}`);
  io.out(`output    ${result.output.uri}  size=${result.output.size}  sha256=${result.output.sha256}`);
  io.out(`aggregated ${result.included.length} of ${options.updateDirs.length} updates with ${strategy.name} (${result.totalExamples} examples)`);
  return 0;
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

export function register(program: Command): void {
  const command = program
    .command("aggregate")
    .description("Aggregate silo updates (dirs with model.safetensors + metrics.json) into one model, streaming")
    .argument("<update-dir...>", "update directories")
    .requiredOption("--out <file>", "output model file (.safetensors)")
    .option("--strategy <name>", `aggregation strategy (${strategyNames().join(", ")})`, "fedavg")
    .option("--min-updates <n>", "fail unless at least this many valid updates are aggregated", positiveInt("--min-updates"), 1)
    .option("--chunk-elements <n>", "elements per streamed chunk and update", positiveInt("--chunk-elements"));
  addStrategyFlags(command) // one flag per strategy option (--beta, --byzantine, --server-lr...), --global, --state-in, --state-out
    .action(async (updateDirs: string[], flags: { out: string; strategy: string; minUpdates: number; chunkElements?: number; global?: string; stateIn?: string; stateOut?: string } & Record<string, unknown>) => {
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
    });
}
