/**
 * Reference points for the fraud federation's report: (a) a centralized model trained on all
 * silos' training data pooled (what federating tries to approach without moving data) and (b) one
 * local-only model per silo trained on its own data (what a silo gets without federating). Each
 * trains for the federation's total epochs (rounds x epochs) and is evaluated on EVERY silo's
 * validation split; the reported number is the num_examples-weighted mean over silos, the same
 * quantity the federation's global metrics report.
 *
 *   node dist/examples/fraud/baselines.js --data examples/fraud/data --out <file.json> [--epochs-total N] [--lr X] [--seed S]
 */
import { mkdirSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { concatFeatures, featurize, FraudDataError, readCsvFile, type FeatureMatrix } from "./dataset";
import { binaryMetrics, weightedMean } from "./metrics";
import { initialWeights, predict, train, type Weights } from "./model";

/** rounds x epochs of examples/fraud/federation.yaml (a test keeps them in step). */
export const DEFAULT_EPOCHS_TOTAL = 10;
export const DEFAULT_LEARNING_RATE = 0.01;

export interface SiloSplits {
  silo: string;
  train: FeatureMatrix;
  valid: FeatureMatrix;
}

/** The JSON the report renderer reads (lib/report/html.ts `Baselines`). */
export interface BaselinesResult {
  metric: "auc";
  description: string;
  centralized: Record<string, number>;
  localOnly: Record<string, Record<string, number>>;
}

export interface BaselineOptions {
  epochsTotal?: number;
  learningRate?: number;
  seed?: number;
  signal?: AbortSignal;
}

/** Reads <dataDir>/<silo>/{train,valid}.csv for every silo folder, sorted by name. */
export function loadSilos(dataDir: string): SiloSplits[] {
  let names: string[];
  try {
    names = readdirSync(dataDir)
      .filter((n) => statSync(join(dataDir, n)).isDirectory())
      .sort();
  } catch (err) {
    throw new FraudDataError(`${dataDir}: cannot list silo folders (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); generate the data first`);
  }
  if (names.length === 0) throw new FraudDataError(`${dataDir}: no silo folders (expected <silo>/train.csv and <silo>/valid.csv)`);
  return names.map((silo) => ({
    silo,
    train: featurize(readCsvFile(join(dataDir, silo, "train.csv"))),
    valid: featurize(readCsvFile(join(dataDir, silo, "valid.csv"))),
  }));
}

/** A model's metrics on every silo's validation split, averaged with the silos' training sizes as weights. */
export async function evaluateAcrossSilos(weights: Weights, silos: readonly SiloSplits[]): Promise<Record<string, number>> {
  const parts = [];
  for (const s of silos) parts.push({ weight: s.train.rows, metrics: { ...binaryMetrics(await predict(weights, s.valid), s.valid.y) } });
  return weightedMean(parts);
}

export async function computeBaselines(silos: readonly SiloSplits[], options: BaselineOptions = {}): Promise<BaselinesResult> {
  const epochs = options.epochsTotal ?? DEFAULT_EPOCHS_TOTAL;
  const seed = options.seed ?? 1;
  const trainOptions = { epochs, learningRate: options.learningRate ?? DEFAULT_LEARNING_RATE, seed, signal: options.signal };
  // Same starting weights as the federation's round 1 (the trainer's default seed).
  const start = initialWeights(seed);
  const pooled = concatFeatures(silos.map((s) => s.train));
  const centralized = await evaluateAcrossSilos(await train(start, pooled, trainOptions), silos);
  const localOnly: Record<string, Record<string, number>> = {};
  for (const s of silos) localOnly[s.silo] = await evaluateAcrossSilos(await train(start, s.train, trainOptions), silos);
  return {
    metric: "auc",
    description:
      `each model trained for ${epochs} epochs (the federation's rounds x epochs) and evaluated on every silo's validation split, ` +
      `weighted by the silos' training rows (${silos.map((s) => `${s.silo} ${s.train.rows}`).join(", ")}); ` +
      "centralized = one model on all silos' pooled training data; local-only = one model per silo on its own data",
    centralized,
    localOnly,
  };
}

async function cli(): Promise<void> {
  const { values } = parseArgs({
    options: { data: { type: "string", default: "examples/fraud/data" }, out: { type: "string" }, "epochs-total": { type: "string" }, lr: { type: "string" }, seed: { type: "string" } },
  });
  if (!values.out) throw new Error("--out <file.json> is required");
  const num = (name: "epochs-total" | "lr" | "seed", ok: (v: number) => boolean, expected: string) => {
    const raw = values[name];
    if (raw === undefined) return undefined;
    const v = Number(raw);
    if (!ok(v)) throw new Error(`--${name} must be ${expected}, got ${JSON.stringify(raw)}`);
    return v;
  };
  const started = Date.now();
  const result = await computeBaselines(loadSilos(resolve(values.data)), {
    epochsTotal: num("epochs-total", (v) => Number.isInteger(v) && v >= 1, "an integer >= 1"),
    learningRate: num("lr", (v) => v > 0, "a positive number"),
    seed: num("seed", (v) => Number.isInteger(v) && v >= 0, "a non-negative integer"),
  });
  const out = resolve(values.out);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + "\n");
  const locals = Object.entries(result.localOnly)
    .map(([s, m]) => `${s} ${m.auc.toFixed(4)}`)
    .join(", ");
  console.log(`fraud baselines (${((Date.now() - started) / 1000).toFixed(1)} s) -> ${out}: centralized auc ${result.centralized.auc.toFixed(4)}; local-only auc ${locals}`);
}

if (require.main === module) {
  cli().catch((err) => {
    console.error(`baselines: ${(err as Error).message}`);
    process.exitCode = 2;
  });
}
