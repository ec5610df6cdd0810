/**
 * The fraud demo's data format, shared by the generator, the trainer and the baselines: the CSV
 * columns, a seeded PRNG, CSV reading, and the fixed featurization every silo applies. The
 * featurization uses constants, not per-silo statistics, so all silos map rows into the same
 * feature space (per-silo standardization would make the federated weights mean different things
 * in different silos).
 */
import { readFileSync } from "node:fs";

/** Columns of `train.csv` / `valid.csv`, in file order. `is_fraud` is the label (0/1). */
export const CSV_COLUMNS = [
  "amount", // transaction amount in dollars
  "hour", // local hour of day, 0..23
  "category", // merchant category code, index into CATEGORIES
  "distance_km", // distance from the cardholder's home
  "txn_1h", // transactions on the card in the previous hour
  "txn_24h", // transactions on the card in the previous 24 hours
  "card_present", // 1 = chip/swipe, 0 = card not present (online, phone)
  "foreign", // 1 = merchant abroad
  "account_age_days", // age of the card account
  "amount_ratio", // amount / the card's 90-day average amount
  "is_fraud",
] as const;
export type CsvColumn = (typeof CSV_COLUMNS)[number];
export type Transaction = Record<CsvColumn, number>;

export const CATEGORIES = ["grocery", "restaurant", "fuel", "online", "travel", "electronics"] as const;

/** Names of the model's input features, in order (see `featurize`). */
export const FEATURE_NAMES = [
  "log_amount",
  "hour_sin",
  "hour_cos",
  ...CATEGORIES.map((c) => `cat_${c}`),
  "log_distance",
  "txn_1h",
  "log_txn_24h",
  "card_present",
  "foreign",
  "log_account_age",
  "log_amount_ratio",
] as const;
export const NUM_FEATURES = FEATURE_NAMES.length;

/** A data file is missing or malformed; the message names the file, line and column. */
export class FraudDataError extends Error {
  override readonly name = "FraudDataError";
}

/** mulberry32: a small, fast, seedable PRNG with uniform output in [0, 1). */
export function createRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A standard normal draw (Box-Muller; 1 - u keeps log away from 0). */
export function normal(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}

/** In-place Fisher-Yates shuffle driven by `rng`. */
export function shuffleInPlace<T>(items: T[] | Int32Array, rng: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const tmp = items[i];
    items[i] = items[j];
    items[j] = tmp;
  }
}

/** Formats rows as CSV with the header line (numbers in their shortest exact form). */
export function toCsv(rows: readonly Transaction[]): string {
  const lines = [CSV_COLUMNS.join(",")];
  for (const row of rows) lines.push(CSV_COLUMNS.map((c) => String(row[c])).join(","));
  return lines.join("\n") + "\n";
}

/** Parses CSV text written by `toCsv` (the header may order columns differently; all are required). */
export function parseCsv(text: string, file: string): Transaction[] {
  const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
  if (lines.length === 0) throw new FraudDataError(`${file}: empty file, expected a header line with ${CSV_COLUMNS.join(",")}`);
  const header = lines[0].split(",").map((h) => h.trim());
  const index = CSV_COLUMNS.map((c) => {
    const i = header.indexOf(c);
    if (i < 0) throw new FraudDataError(`${file}: header lacks column "${c}" (expected columns ${CSV_COLUMNS.join(",")}, got ${header.join(",")})`);
    return i;
  });
  const rows: Transaction[] = [];
  for (let l = 1; l < lines.length; l++) {
    const cells = lines[l].split(",");
    const row = {} as Transaction;
    for (let c = 0; c < CSV_COLUMNS.length; c++) {
      const value = Number(cells[index[c]]);
      if (cells[index[c]] === undefined || cells[index[c]].trim() === "" || !Number.isFinite(value)) {
        throw new FraudDataError(`${file}:${l + 1}: column "${CSV_COLUMNS[c]}" must be a finite number, got ${JSON.stringify(cells[index[c]] ?? "")}`);
      }
      row[CSV_COLUMNS[c]] = value;
    }
    if (row.is_fraud !== 0 && row.is_fraud !== 1) throw new FraudDataError(`${file}:${l + 1}: column "is_fraud" must be 0 or 1, got ${row.is_fraud}`);
    rows.push(row);
  }
  if (rows.length === 0) throw new FraudDataError(`${file}: no data rows after the header`);
  return rows;
}

export function readCsvFile(file: string): Transaction[] {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new FraudDataError(`${file}: cannot read the data file (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}); generate it with "node dist/examples/fraud/generate.js"`);
  }
  return parseCsv(text, file);
}

/** A featurized split: row-major features [rows x NUM_FEATURES] and 0/1 labels. */
export interface FeatureMatrix {
  x: Float32Array;
  y: Float32Array;
  rows: number;
}

/** Maps one transaction to the model's features (fixed transforms, roughly unit scale). */
export function featurizeRow(row: Transaction, target: Float32Array, offset: number): void {
  const angle = (2 * Math.PI * row.hour) / 24;
  let k = offset;
  target[k++] = Math.log1p(row.amount) / 4 - 1;
  target[k++] = Math.sin(angle);
  target[k++] = Math.cos(angle);
  for (let c = 0; c < CATEGORIES.length; c++) target[k++] = row.category === c ? 1 : 0;
  target[k++] = Math.log1p(row.distance_km) / 3 - 1;
  target[k++] = row.txn_1h / 2;
  target[k++] = Math.log1p(row.txn_24h) / 2 - 0.5;
  target[k++] = row.card_present;
  target[k++] = row.foreign;
  target[k++] = Math.log1p(row.account_age_days) / 6 - 1;
  target[k++] = Math.log(Math.max(row.amount_ratio, 1e-3));
}

export function featurize(rows: readonly Transaction[]): FeatureMatrix {
  const x = new Float32Array(rows.length * NUM_FEATURES);
  const y = new Float32Array(rows.length);
  rows.forEach((row, i) => {
    featurizeRow(row, x, i * NUM_FEATURES);
    y[i] = row.is_fraud;
  });
  return { x, y, rows: rows.length };
}

/** Concatenates featurized splits (the centralized baseline pools all silos). */
export function concatFeatures(parts: readonly FeatureMatrix[]): FeatureMatrix {
  const rows = parts.reduce((n, p) => n + p.rows, 0);
  const x = new Float32Array(rows * NUM_FEATURES);
  const y = new Float32Array(rows);
  let r = 0;
  for (const p of parts) {
    x.set(p.x, r * NUM_FEATURES);
    y.set(p.y, r);
    r += p.rows;
  }
  return { x, y, rows };
}
