/**
 * Synthetic card transactions for the fraud demo: three regional silos with different sizes,
 * different everyday spending (amounts, hours, merchant mix: a feature shift) and a different
 * dominant fraud scheme each (a concept shift), so the silos are non-IID and a model trained on one
 * region alone misses the schemes it never saw. Deterministic from the seed.
 *
 *   node dist/examples/fraud/generate.js [--out examples/fraud/data] [--seed 42] [--scale 1]
 *
 * writes <out>/<silo>/train.csv, valid.csv and test.csv (columns: CSV_COLUMNS in dataset.ts).
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { CATEGORIES, createRng, normal, toCsv, type Transaction } from "./dataset";

type Rng = () => number;
type Category = (typeof CATEGORIES)[number];
const cat = (name: Category) => CATEGORIES.indexOf(name);

export interface RegionProfile {
  name: string;
  trainRows: number;
  validRows: number;
  /** Probability that a transaction is fraudulent. */
  fraudRate: number;
  /** Everyday spending: log-amount mean/sd, hour of peak activity, merchant mix (weights per CATEGORIES). */
  amountLogMean: number;
  amountLogSd: number;
  peakHour: number;
  categoryWeights: readonly number[];
  foreignRate: number;
  /** Mean transactions per card per day. */
  dailyTxns: number;
  /** The region's dominant fraud scheme (drawn for `schemeShare` of its frauds; the rest are generic). */
  scheme: (rng: Rng, row: Transaction) => void;
  schemeShare: number;
}

function pick(rng: Rng, weights: readonly number[]): number {
  const total = weights.reduce((a, b) => a + b, 0);
  let u = rng() * total;
  for (let i = 0; i < weights.length; i++) {
    u -= weights[i];
    if (u < 0) return i;
  }
  return weights.length - 1;
}

function poisson(rng: Rng, mean: number): number {
  const limit = Math.exp(-mean);
  let k = 0;
  let p = rng();
  while (p > limit) {
    k++;
    p *= rng();
  }
  return k;
}

const round = (v: number, digits: number) => Number(v.toFixed(digits));
const wrapHour = (h: number) => ((Math.round(h) % 24) + 24) % 24;

/** East: card-not-present fraud, online or electronics, often foreign, at night, far above the card's usual amount. */
function cardNotPresent(rng: Rng, row: Transaction): void {
  row.category = rng() < 0.75 ? cat("online") : cat("electronics");
  row.card_present = 0;
  row.foreign = rng() < 0.55 ? 1 : 0;
  row.hour = wrapHour(2 + 2.5 * normal(rng));
  row.amount_ratio = Math.exp(0.9 + 0.5 * normal(rng));
}

/** Central: skimmed cards used in person far from home, fuel and grocery, several uses within the hour. */
function skimming(rng: Rng, row: Transaction): void {
  row.category = rng() < 0.65 ? cat("fuel") : cat("grocery");
  row.card_present = 1;
  row.distance_km = Math.exp(5.3 + 0.7 * normal(rng));
  row.txn_1h = 2 + poisson(rng, 1.5);
}

/** West: account takeover on new accounts, electronics and travel, bursts of activity over the day. */
function accountTakeover(rng: Rng, row: Transaction): void {
  row.category = rng() < 0.6 ? cat("electronics") : cat("travel");
  row.account_age_days = Math.round(Math.exp(2.8 + 0.8 * normal(rng)));
  row.txn_24h = 8 + poisson(rng, 6);
  row.amount_ratio = Math.exp(1.2 + 0.5 * normal(rng));
}

/** Fraud seen everywhere: somewhat larger than usual amounts and a little more velocity. */
function genericFraud(rng: Rng, row: Transaction): void {
  row.amount_ratio = Math.exp(0.6 + 0.6 * normal(rng));
  row.txn_1h += poisson(rng, 0.8);
  row.hour = wrapHour(row.hour + 6 * normal(rng));
}

export const REGIONS: readonly RegionProfile[] = [
  {
    name: "east",
    trainRows: 6000,
    validRows: 1500,
    fraudRate: 0.015,
    amountLogMean: 3.9,
    amountLogSd: 1.0,
    peakHour: 18,
    categoryWeights: [0.22, 0.24, 0.08, 0.3, 0.06, 0.1],
    foreignRate: 0.04,
    dailyTxns: 3.5,
    scheme: cardNotPresent,
    schemeShare: 0.7,
  },
  {
    name: "central",
    trainRows: 4000,
    validRows: 1000,
    fraudRate: 0.02,
    amountLogMean: 3.5,
    amountLogSd: 0.8,
    peakHour: 12,
    categoryWeights: [0.32, 0.16, 0.26, 0.12, 0.04, 0.1],
    foreignRate: 0.01,
    dailyTxns: 2.5,
    scheme: skimming,
    schemeShare: 0.7,
  },
  {
    name: "west",
    trainRows: 2000,
    validRows: 750,
    fraudRate: 0.03,
    amountLogMean: 4.3,
    amountLogSd: 1.1,
    peakHour: 15,
    categoryWeights: [0.2, 0.18, 0.12, 0.2, 0.14, 0.16],
    foreignRate: 0.06,
    dailyTxns: 3,
    scheme: accountTakeover,
    schemeShare: 0.7,
  },
];

/** One everyday transaction in `region`, then (if `fraud`) rewritten by a fraud scheme. */
export function generateTransaction(rng: Rng, region: RegionProfile, fraud: boolean): Transaction {
  const category = pick(rng, region.categoryWeights);
  const isOnline = category === cat("online");
  const isTravel = category === cat("travel");
  const amountShift = [-0.3, -0.1, -0.2, 0, 0.8, 0.9][category];
  const row: Transaction = {
    amount: 0,
    hour: wrapHour(region.peakHour + 3.5 * normal(rng)),
    category,
    distance_km: Math.exp((isTravel ? 4.5 : 1.6) + 0.9 * normal(rng)),
    txn_1h: poisson(rng, 0.25),
    txn_24h: poisson(rng, region.dailyTxns),
    card_present: isOnline ? 0 : rng() < 0.92 ? 1 : 0,
    foreign: rng() < region.foreignRate * (isTravel ? 5 : 1) ? 1 : 0,
    account_age_days: Math.round(Math.exp(6.3 + 0.8 * normal(rng))),
    amount_ratio: Math.exp(0.45 * normal(rng)),
    is_fraud: fraud ? 1 : 0,
  };
  if (isOnline) row.distance_km = 0;
  const baseAmount = Math.exp(region.amountLogMean + amountShift + region.amountLogSd * normal(rng));
  if (fraud) {
    if (rng() < region.schemeShare) region.scheme(rng, row);
    else genericFraud(rng, row);
  }
  // Amounts follow the card's usual level times the ratio, so an unusually large ratio shows in both.
  row.amount = round(Math.max(1, baseAmount * Math.sqrt(row.amount_ratio)), 2);
  row.distance_km = round(row.distance_km, 1);
  row.amount_ratio = round(row.amount_ratio, 3);
  return row;
}

export interface SiloData {
  train: Transaction[];
  valid: Transaction[];
  /** Held out from training and from model selection: what the final model is reported on. */
  test: Transaction[];
}

export interface GenerateOptions {
  seed?: number;
  /** Multiplies every region's row counts (e.g. 0.2 for fast tests). */
  scale?: number;
  regions?: readonly RegionProfile[];
}

/** All silos' splits; each silo draws from its own stream (seed, silo index), so silos are independent. */
export function generateFraudData(options: GenerateOptions = {}): Record<string, SiloData> {
  const seed = options.seed ?? 42;
  const scale = options.scale ?? 1;
  if (!(scale > 0)) throw new RangeError(`scale must be > 0, got ${scale}`);
  const out: Record<string, SiloData> = {};
  (options.regions ?? REGIONS).forEach((region, index) => {
    const rng = createRng((seed * 1_000_003 + index * 7919 + 1) >>> 0);
    const rows = (n: number) => Array.from({ length: Math.max(1, Math.round(n * scale)) }, () => generateTransaction(rng, region, rng() < region.fraudRate));
    const train = rows(region.trainRows);
    const valid = rows(region.validRows);
    // The test split draws from a stream of its own, so adding it left train and valid unchanged.
    const testRng = createRng((seed * 1_000_003 + index * 7919 + 2) >>> 0);
    const test = Array.from({ length: valid.length }, () => generateTransaction(testRng, region, testRng() < region.fraudRate));
    out[region.name] = { train, valid, test };
  });
  return out;
}

/** Writes <outDir>/<silo>/{train,valid,test}.csv and returns the row counts. */
export function writeFraudData(outDir: string, data: Record<string, SiloData>): Record<string, { train: number; valid: number; test: number; fraudRate: number }> {
  const summary: Record<string, { train: number; valid: number; test: number; fraudRate: number }> = {};
  for (const [silo, split] of Object.entries(data)) {
    const dir = join(outDir, silo);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "train.csv"), toCsv(split.train));
    writeFileSync(join(dir, "valid.csv"), toCsv(split.valid));
    writeFileSync(join(dir, "test.csv"), toCsv(split.test));
    const frauds = split.train.filter((r) => r.is_fraud === 1).length;
    summary[silo] = { train: split.train.length, valid: split.valid.length, test: split.test.length, fraudRate: frauds / split.train.length };
  }
  return summary;
}

function main(): void {
  const { values } = parseArgs({
    options: { out: { type: "string", default: "examples/fraud/data" }, seed: { type: "string", default: "42" }, scale: { type: "string", default: "1" } },
  });
  const seed = Number(values.seed);
  const scale = Number(values.scale);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new Error(`--seed must be a non-negative integer, got ${values.seed}`);
  if (!(scale > 0)) throw new Error(`--scale must be a positive number, got ${values.scale}`);
  const outDir = resolve(values.out);
  const summary = writeFraudData(outDir, generateFraudData({ seed, scale }));
  const parts = Object.entries(summary).map(([s, v]) => `${s} ${v.train}+${v.valid}+${v.test} rows (${(100 * v.fraudRate).toFixed(1)}% fraud)`);
  console.log(`fraud data (seed ${seed}) in ${outDir}: ${parts.join(", ")}`);
}

if (require.main === module) {
  try {
    main();
  } catch (err) {
    console.error(`generate: ${(err as Error).message}`);
    process.exitCode = 2;
  }
}
