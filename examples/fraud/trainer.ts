/**
 * The fraud demo's silo trainer, following flo's silo job contract (docs/demo.md):
 *
 *   node train.js [--global <dir>] --out <dir> --data <dir> --epochs N --round R [--lr X] [--seed S]
 *                 [--batch-size B] [--pos-weight W] [--poison-scale K]
 *
 * Reads <data>/train.csv and <data>/valid.csv. Round 1 (no --global) starts from weights drawn from
 * the seed (the same seed on every silo, so the first average is of comparable models). With
 * --global it loads <global>/model.safetensors, evaluates it on the validation split first
 * (global_metrics), then trains. Writes <out>/model.safetensors and <out>/metrics.json.
 * --poison-scale K != 1 makes this silo malicious: it sends global + K x (trained - global).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { featurize, readCsvFile, FraudDataError } from "./dataset";
import { binaryMetrics, type BinaryMetrics } from "./metrics";
import { SafetensorsError } from "../../lib/models/safetensors";
import { DEFAULT_BATCH_SIZE, DEFAULT_POSITIVE_WEIGHT, FraudModelError, initialWeights, modelPath, predict, readModelFile, scaleUpdate, train, writeModelFile } from "./model";

/** A bad command line (missing or malformed flag); exit code 2. */
export class TrainerUsageError extends Error {
  override readonly name = "TrainerUsageError";
}

export interface TrainerArgs {
  global?: string;
  out: string;
  data: string;
  epochs: number;
  round: number;
  lr: number;
  seed: number;
  batchSize: number;
  posWeight: number;
  poisonScale: number;
}

const USAGE = "usage: node train.js [--global <dir>] --out <dir> --data <dir> --epochs N --round R [--lr X] [--seed S] [--batch-size B] [--pos-weight W] [--poison-scale K]";

function numberFlag(values: Record<string, string | undefined>, name: string, fallback: number | undefined, check: (v: number) => boolean, expected: string): number {
  const raw = values[name];
  if (raw === undefined) {
    if (fallback === undefined) throw new TrainerUsageError(`--${name} is required (${expected})\n${USAGE}`);
    return fallback;
  }
  const value = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(value) || !check(value)) throw new TrainerUsageError(`--${name} must be ${expected}, got ${JSON.stringify(raw)}`);
  return value;
}

/** "--poison-scale -3" -> "--poison-scale=-3": parseArgs would otherwise read "-3" as a flag. */
function joinNegativeValues(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (/^--[a-z-]+$/.test(argv[i]) && /^-[\d.]/.test(argv[i + 1] ?? "")) out.push(`${argv[i]}=${argv[++i]}`);
    else out.push(argv[i]);
  }
  return out;
}

/** Parses the trainer's flags (pure; throws TrainerUsageError naming the flag). */
export function parseTrainerArgs(argv: readonly string[]): TrainerArgs {
  let values: Record<string, string | undefined>;
  try {
    const stringFlag = { type: "string" as const };
    values = parseArgs({
      args: joinNegativeValues(argv),
      options: {
        global: stringFlag,
        out: stringFlag,
        data: stringFlag,
        epochs: stringFlag,
        round: stringFlag,
        lr: stringFlag,
        seed: stringFlag,
        "batch-size": stringFlag,
        "pos-weight": stringFlag,
        "poison-scale": stringFlag,
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new TrainerUsageError(`${(err as Error).message}\n${USAGE}`);
  }
  for (const name of ["out", "data"]) if (!values[name]) throw new TrainerUsageError(`--${name} <dir> is required\n${USAGE}`);
  const integer = (v: number) => Number.isInteger(v);
  return {
    global: values.global || undefined,
    out: values.out!,
    data: values.data!,
    epochs: numberFlag(values, "epochs", undefined, (v) => integer(v) && v >= 0, "a non-negative integer"),
    round: numberFlag(values, "round", undefined, (v) => integer(v) && v >= 1, "an integer >= 1"),
    lr: numberFlag(values, "lr", 0.01, (v) => v > 0, "a positive number"),
    seed: numberFlag(values, "seed", 1, (v) => integer(v) && v >= 0, "a non-negative integer"),
    batchSize: numberFlag(values, "batch-size", DEFAULT_BATCH_SIZE, (v) => integer(v) && v >= 1, "an integer >= 1"),
    posWeight: numberFlag(values, "pos-weight", DEFAULT_POSITIVE_WEIGHT, (v) => v > 0, "a positive number"),
    poisonScale: numberFlag(values, "poison-scale", 1, () => true, "a number"),
  };
}

export interface TrainerMetrics {
  num_examples: number;
  metrics: BinaryMetrics;
  global_metrics?: BinaryMetrics;
}

/** Runs one silo job: reads data (and the global model), trains, writes the model and metrics.json. */
export async function runTrainer(args: TrainerArgs, options: { signal?: AbortSignal } = {}): Promise<TrainerMetrics> {
  const trainSet = featurize(readCsvFile(join(args.data, "train.csv")));
  const validSet = featurize(readCsvFile(join(args.data, "valid.csv")));
  const global = args.global ? await readModelFile(modelPath(args.global), options) : undefined;
  const globalMetrics = global ? binaryMetrics(await predict(global, validSet), validSet.y) : undefined;
  const trained = await train(global ?? initialWeights(args.seed), trainSet, {
    epochs: args.epochs,
    learningRate: args.lr,
    // Rounds reshuffle differently; reruns of the same round shuffle the same way.
    seed: (args.seed * 1_000_003 + args.round) >>> 0,
    batchSize: args.batchSize,
    positiveWeight: args.posWeight,
    signal: options.signal,
  });
  const metrics = binaryMetrics(await predict(trained, validSet), validSet.y);
  const sent = args.poisonScale === 1 ? trained : scaleUpdate(trained, global, args.poisonScale);
  mkdirSync(args.out, { recursive: true });
  await writeModelFile(modelPath(args.out), sent, options);
  const result: TrainerMetrics = { num_examples: trainSet.rows, metrics, ...(globalMetrics ? { global_metrics: globalMetrics } : {}) };
  writeFileSync(join(args.out, "metrics.json"), JSON.stringify(result, null, 2) + "\n");
  return result;
}

const fmt = (m: BinaryMetrics) => `auc=${m.auc.toFixed(4)} acc=${m.accuracy.toFixed(4)} loss=${m.loss.toFixed(4)}`;

/** The command-line entry (used by train.js): exit 0 on success, 2 on usage/data/model errors, 1 otherwise. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  const started = Date.now();
  try {
    const args = parseTrainerArgs(argv);
    const result = await runTrainer(args);
    const poison = args.poisonScale !== 1 ? ` POISONED x${args.poisonScale}` : "";
    const before = result.global_metrics ? `global ${fmt(result.global_metrics)}; ` : "";
    console.log(`fraud trainer: round ${args.round}, ${result.num_examples} rows, ${args.epochs} epoch(s): ${before}trained ${fmt(result.metrics)}${poison} (${Date.now() - started} ms)`);
    return 0;
  } catch (err) {
    const known = err instanceof TrainerUsageError || err instanceof FraudDataError || err instanceof FraudModelError || err instanceof SafetensorsError;
    console.error(`fraud trainer: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}`);
    return known ? 2 : 1;
  }
}
