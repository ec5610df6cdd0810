/**
 * The fraud demo's silo evaluator, following flo's job contract for evaluation jobs:
 *
 *   node evaluate.js --model <dir> --data <dir> --out <dir>
 *
 * Scores <model>/model.safetensors on the silo's held-out splits and writes <out>/metrics.json:
 * num_examples (the test rows), the test split's metrics under their plain names (auc, accuracy,
 * loss, precision, recall: what the report shows of the final model) and the validation split's
 * AUC and loss as val_auc and val_loss (what evaluation.select may choose by: the test split never
 * takes part in a choice, so its figures stay unbiased).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { featurize, FraudDataError, readCsvFile } from "./dataset";
import { binaryMetrics } from "./metrics";
import { FraudModelError, modelPath, predict, readModelFile } from "./model";
import { SafetensorsError } from "../../lib/models/safetensors";

export class EvaluatorUsageError extends Error {
  override readonly name = "EvaluatorUsageError";
}

const USAGE = "usage: node evaluate.js --model <dir> --data <dir> --out <dir>";

export interface EvaluatorArgs {
  model: string;
  data: string;
  out: string;
}

export function parseEvaluatorArgs(argv: readonly string[]): EvaluatorArgs {
  let values: Record<string, string | undefined>;
  try {
    values = parseArgs({ args: [...argv], options: { model: { type: "string" }, data: { type: "string" }, out: { type: "string" } }, strict: true, allowPositionals: false }).values;
  } catch (err) {
    throw new EvaluatorUsageError(`${(err as Error).message}\n${USAGE}`);
  }
  for (const name of ["model", "data", "out"] as const) if (!values[name]) throw new EvaluatorUsageError(`--${name} <dir> is required\n${USAGE}`);
  return { model: values.model!, data: values.data!, out: values.out! };
}

export interface EvaluatorMetrics {
  num_examples: number;
  metrics: Record<string, number>;
}

/** Scores the model on <data>/test.csv (reported) and <data>/valid.csv (val_* for selection). */
export async function runEvaluator(args: EvaluatorArgs, options: { signal?: AbortSignal } = {}): Promise<EvaluatorMetrics> {
  const weights = await readModelFile(modelPath(args.model), options);
  const test = featurize(readCsvFile(join(args.data, "test.csv")));
  const valid = featurize(readCsvFile(join(args.data, "valid.csv")));
  const onTest = binaryMetrics(await predict(weights, test), test.y);
  const onValid = binaryMetrics(await predict(weights, valid), valid.y);
  const result: EvaluatorMetrics = { num_examples: test.rows, metrics: { ...onTest, val_auc: onValid.auc, val_loss: onValid.loss } };
  mkdirSync(args.out, { recursive: true });
  writeFileSync(join(args.out, "metrics.json"), JSON.stringify(result, null, 2) + "\n");
  return result;
}

/** The command-line entry (evaluate.js): exit 0 on success, 2 on usage/data/model errors, 1 otherwise. */
export async function main(argv: readonly string[] = process.argv.slice(2)): Promise<number> {
  try {
    const result = await runEvaluator(parseEvaluatorArgs(argv));
    console.log(`fraud evaluator: ${result.num_examples} test rows: auc=${result.metrics.auc.toFixed(4)} (validation auc=${result.metrics.val_auc.toFixed(4)})`);
    return 0;
  } catch (err) {
    const known = err instanceof EvaluatorUsageError || err instanceof FraudDataError || err instanceof FraudModelError || err instanceof SafetensorsError;
    console.error(`fraud evaluator: ${known ? (err as Error).message : ((err as Error).stack ?? String(err))}`);
    return known ? 2 : 1;
  }
}

if (require.main === module) {
  void main().then((code) => (process.exitCode = code));
}
