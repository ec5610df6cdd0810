/**
 * An update's metrics.json (`{"num_examples": int > 0, "metrics": {name: number, ...}}`) and the
 * num_examples-weighted mean of metrics across updates.
 */

import type { ByteSource } from "../models/bytes";
import { UpdateMetricsError } from "./errors";

export interface UpdateMetrics {
  numExamples: number;
  /** Numeric metrics only (other values are kept out of aggregation). */
  metrics: Record<string, number>;
}

/** Largest metrics.json we read; anything larger is not a metrics file. */
const MAX_METRICS_BYTES = 1_000_000;

/** Validates a parsed metrics.json. `source` names it in errors. Pure. */
export function parseUpdateMetrics(value: unknown, source: string): UpdateMetrics {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new UpdateMetricsError(source, `expected an object {"num_examples": int > 0, "metrics": {...}}, got ${JSON.stringify(value)}`);
  }
  const record = value as Record<string, unknown>;
  const n = record.num_examples;
  if (n === undefined) throw new UpdateMetricsError(source, `"num_examples" is missing (expected an integer > 0)`);
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n <= 0) {
    throw new UpdateMetricsError(source, `"num_examples" must be an integer > 0, got ${JSON.stringify(n)}`);
  }
  const metrics: Record<string, number> = {};
  if (record.metrics !== undefined) {
    if (typeof record.metrics !== "object" || record.metrics === null || Array.isArray(record.metrics)) {
      throw new UpdateMetricsError(source, `"metrics" must be an object of numbers, got ${JSON.stringify(record.metrics)}`);
    }
    for (const [k, v] of Object.entries(record.metrics as Record<string, unknown>)) {
      if (typeof v === "number" && Number.isFinite(v)) metrics[k] = v;
    }
  }
  return { numExamples: n, metrics };
}

/** Reads and validates metrics.json from a ByteSource. */
export async function readUpdateMetrics(source: ByteSource, options: { signal?: AbortSignal } = {}): Promise<UpdateMetrics> {
  let text: string;
  try {
    const size = await source.size(options);
    if (size > MAX_METRICS_BYTES) throw new UpdateMetricsError(source.name, `${size} bytes is too large for a metrics file (limit ${MAX_METRICS_BYTES})`);
    text = (await source.read(0, size, options)).toString("utf8");
  } catch (err) {
    if (err instanceof UpdateMetricsError || options.signal?.aborted) throw err;
    throw new UpdateMetricsError(source.name, `cannot read metrics: ${(err as Error).message}`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UpdateMetricsError(source.name, `not valid JSON: ${(err as Error).message}`);
  }
  return parseUpdateMetrics(parsed, source.name);
}

/** num_examples-weighted mean of each metric over the updates that report it. Pure. */
export function weightedMetricMeans(updates: readonly UpdateMetrics[]): Record<string, number> {
  const sums = new Map<string, { weighted: number; weight: number }>();
  for (const u of updates) {
    for (const [k, v] of Object.entries(u.metrics)) {
      const s = sums.get(k) ?? { weighted: 0, weight: 0 };
      s.weighted += u.numExamples * v;
      s.weight += u.numExamples;
      sums.set(k, s);
    }
  }
  const out: Record<string, number> = {};
  for (const k of [...sums.keys()].sort()) out[k] = sums.get(k)!.weighted / sums.get(k)!.weight;
  return out;
}
