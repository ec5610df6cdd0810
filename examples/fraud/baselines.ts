/**
 * Reference points for the fraud federation's report: (a) a centralized model trained on all
 * silos' training data pooled (what federating tries to approach without moving data) and (b) one
 * local-only model per silo trained on its own data (what a silo gets without federating). Each
 * trains for the federation's total epochs (rounds x epochs) and is evaluated on EVERY silo's
 * test split, the rows the federation's evaluator reports the final model on, and weighted like
 * it: by each silo's test rows (the evaluator's num_examples). `bySilo` has the per-silo figures:
 * the centralized model on each silo, and each silo's local-only model on its own test split.
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
  test: FeatureMatrix;
}

/** The JSON the report renderer reads (lib/report/html.ts `Baselines`). */
export interface BaselinesResult {
  metric: "auc";
  description: string;
  centralized: Record<string, number>;
  localOnly: Record<string, Record<string, number>>;
  bySilo: { centralized: Record<string, Record<string, number>>; localOnly: Record<string, Record<string, number>> };
}

export interface BaselineOptions {
  epochsTotal?: number;
  learningRate?: number;
  seed?: number;
  signal?: AbortSignal;
}

/** Reads <dataDir>/<silo>/{train,valid,test}.csv for every silo folder, sorted by name. */
export function loadSilos(dataDir: string): SiloSplits[] {
  let names: string[];
  try {
    names = readdirSync(dataDir)
      .filter((n) => statSync(join(dataDir, n)).isDirectory())
      .sort();
  } catch (err) {
    throw new FraudDataError(`${dataDir}: cannot list silo folders (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); generate the data first`);
  }
  if (names.length === 0) throw new FraudDataError(`${dataDir}: no silo folders (expected <silo>/train.csv, valid.csv and test.csv)`);
  return names.map((silo) => ({
    silo,
    train: featurize(readCsvFile(join(dataDir, silo, "train.csv"))),
    valid: featurize(readCsvFile(join(dataDir, silo, "valid.csv"))),
    test: featurize(readCsvFile(join(dataDir, silo, "test.csv"))),
  }));
}

/** A model's metrics on one silo's test split (the evaluator's rows). */
async function testMetrics(weights: Weights, silo: SiloSplits): Promise<Record<string, number>> {
  return { ...binaryMetrics(await predict(weights, silo.test), silo.test.y) };
}

/** A model's metrics on every silo's test split, averaged with the silos' test rows as weights (as the federated evaluation is). */
export async function evaluateAcrossSilos(weights: Weights, silos: readonly SiloSplits[]): Promise<{ mean: Record<string, number>; bySilo: Record<string, Record<string, number>> }> {
  const bySilo: Record<string, Record<string, number>> = {};
  for (const s of silos) bySilo[s.silo] = await testMetrics(weights, s);
  return { mean: weightedMean(silos.map((s) => ({ weight: s.test.rows, metrics: bySilo[s.silo] }))), bySilo };
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
  const localOnOwn: Record<string, Record<string, number>> = {};
  for (const s of silos) {
    const local = await evaluateAcrossSilos(await train(start, s.train, trainOptions), silos);
    localOnly[s.silo] = local.mean;
    localOnOwn[s.silo] = local.bySilo[s.silo];
  }
  return {
    metric: "auc",
    description:
      `each model trained for ${epochs} epochs (the federation's rounds x epochs) and evaluated on every silo's test split, ` +
      `weighted by the silos' test rows like the federated evaluation (${silos.map((s) => `${s.silo} ${s.test.rows}`).join(", ")}); ` +
      "centralized = one model on all silos' pooled training data; local-only = one model per silo on its own data",
    centralized: centralized.mean,
    localOnly,
    bySilo: { centralized: centralized.bySilo, localOnly: localOnOwn },
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
