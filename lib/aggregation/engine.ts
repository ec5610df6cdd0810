/**
 * The streaming aggregation engine: one entry point, `aggregateUpdates`, used by the orchestrator's
 * aggregation activity and by `flo aggregate`.
 *
 * It reads K safetensors updates as aligned ranged chunks per tensor (offsets taken from each file's
 * own header), prefetching the next chunk while the current one is combined, so memory is bounded
 * by ~2 x K x chunk whatever the model size, and streams the result through the safetensors writer.
 *
 * Rules:
 * - Weight of an update = `numExamples` of its metrics, already validated by the caller (the silo
 *   job contract's metrics.json parser, lib/compute/siloCompute.ts). With `maxWeightShare` the
 *   normalized weights are capped first (weightShares.ts) and every rule, the chunk weights and the
 *   weighted metric means see the capped weights: a silo cannot steer more than its cap by claiming
 *   more examples.
 * - Every update is validated against the first valid one (same tensor names, dtypes, shapes);
 *   a mismatching, unreadable or invalid update is EXCLUDED with a reason naming it.
 * - Float tensors (F64/F32/F16/BF16) go through the strategy and keep their dtype. Integer and BOOL
 *   tensors (e.g. BatchNorm's num_batches_tracked) are NOT averaged: they are copied from one update,
 *   the one the strategy names (`integerTensorSource`, e.g. Krum's pick; default the first valid
 *   one), because a weighted mean of counters/indices/masks is meaningless (and Flower's in-place
 *   path silently zeroes them).
 * - Non-finite values in float tensors exclude the update. They are found while streaming; the pass
 *   then restarts without that update (rare, so the normal case reads every byte once).
 */

import { createHash } from "node:crypto";
import type { ByteSink, ByteSource, WrittenObject } from "../models/bytes";
import { decodeFloats, dtypeSize, encodeFloats, FloatDType, isFloatDType } from "../models/dtypes";
import { readSafetensorsHeader, SafetensorsError, SafetensorsHeader, SafetensorsWriter } from "../models/safetensors";
import { AggregationError } from "./errors";
import { defaultHashWorkers, HashPool } from "./hashPool";
import { allShared, KernelPool } from "./kernelPool";
import { SimdArena } from "./simdKernel";
import { UpdateMetrics, weightedMetricMeans } from "./metrics";
import { capWeightShares, dominantShares } from "./weightShares";
import type { CombineChunk, FloatRow, Json, RoundContext, StatisticsChunk, Strategy, TensorLayout } from "./strategy";

/** One silo update: its model and its validated metrics. */
export interface UpdateInput {
  id: string;
  model: ByteSource;
  metrics: UpdateMetrics;
  /**
   * The model's sha256 when already known from a trusted record (e.g. the digest the model store
   * computed when the update was uploaded): the engine then reports it instead of re-hashing the
   * bytes (hashing costs ~0.7 s of CPU per GB). Leave unset to hash what is actually read.
   */
  knownSha256?: string;
}

export interface StrategyStateInput {
  /** The small JSON state returned by the previous round. */
  json?: Json;
  /** Per-coordinate state tensor files by state name (e.g. "m", "v"); absent ones start at zeros. */
  tensors?: Record<string, ByteSource>;
}

export interface AggregationProgress {
  phase: "statistics" | "combine";
  /** Statistics pass name, or "combine". */
  pass: string;
  bytesRead: number;
  bytesTotal: number;
  /** Passes restarted so far because an update turned out invalid mid-stream. */
  restarts: number;
}

export interface AggregateOptions {
  updates: readonly UpdateInput[];
  /** Opens the output sink; called again if a pass must restart (the previous sink is aborted). */
  output: () => ByteSink | Promise<ByteSink>;
  strategy: Strategy;
  state?: StrategyStateInput;
  /** Opens the sink for a new state tensor file; required when the strategy keeps state tensors. */
  stateOutput?: (name: string) => ByteSink | Promise<ByteSink>;
  /** The round's global model (required when `strategy.needsGlobal`). */
  global?: ByteSource;
  /** Fewer valid updates than this fails the round with AggregationError TOO_FEW_UPDATES. */
  minUpdates: number;
  signal?: AbortSignal;
  onProgress?: (progress: AggregationProgress) => void;
  /** Elements per chunk and update (default 512 Ki: 2 MB per F32 row; lowered so that the read
   *  buffers stay within `bufferBudgetBytes`). */
  chunkElements?: number;
  /** Bound on the shared read buffers (slots x K rows x chunk, where slots = prefetch + 1, plus one
   *  while hash workers read the chunk just combined), default 96 MB. */
  bufferBudgetBytes?: number;
  /** Chunks read ahead while one is combined (default 2; more helps high-latency sources). */
  prefetchChunks?: number;
  /** Threads hashing the updates while streaming: default 2 when the updates total at least
   *  32 MB, else 0 (hash on the main thread: starting workers would cost more than it saves). */
  hashWorkers?: number;
  /** Worker threads running part of each chunk's kernels for a strategy with `parallelKernels`
   *  (0 or 1): default 1 when the float data to combine totals at least 32 MB, else 0. */
  kernelWorkers?: number;
  /** Largest normalized weight any one update may get (0 < x <= 1); unset: weights are the claimed num_examples. */
  maxWeightShare?: number;
}

export interface IncludedUpdate {
  id: string;
  /** As the update claimed it. */
  numExamples: number;
  /** The update's normalized weight in this round (after the cap, when one is set). */
  weightShare: number;
  /** sha256 of the update's model file, as read. */
  sha256: string;
}

export interface AggregationResult {
  included: IncludedUpdate[];
  excluded: { id: string; reason: string }[];
  output: WrittenObject;
  state: { json: Json; tensors: Record<string, WrittenObject>; report?: Json };
  /** num_examples-weighted mean of each numeric metric over the included updates. */
  metrics: Record<string, number>;
  totalExamples: number;
  /** How many times a pass restarted without an update found invalid mid-stream. */
  restarts: number;
  /** Kernel worker threads that ran part of each chunk (see AggregateOptions.kernelWorkers). */
  kernelWorkers: number;
  weighting: RoundWeighting;
}

/** How the round's weights came about: capped, equalized, or dominated by one update. */
export interface RoundWeighting {
  maxWeightShare?: number;
  /** Updates whose share was lowered to the cap. */
  capped: string[];
  /** The cap was below 1/m for the m updates: every update weighed 1/m. */
  equalized: boolean;
  /** Without a cap: updates whose share exceeded one half (one silo outweighing all others together). */
  dominant: string[];
}

export const DEFAULT_CHUNK_ELEMENTS = 1 << 19;
export const DEFAULT_BUFFER_BUDGET_BYTES = 96 << 20;
export const DEFAULT_PREFETCH_CHUNKS = 2;

interface Candidate {
  index: number;
  id: string;
  model: ByteSource;
  header: SafetensorsHeader;
  metrics: UpdateMetrics;
  /** Next file offset the running hash expects (the hash itself lives in the HashPool). */
  hashCursor: number;
  hashInOrder: boolean;
  knownSha256?: string;
}

/** An included update turned out bad mid-stream: exclude it and restart. */
class UpdateFault extends Error {
  constructor(
    readonly candidate: Candidate,
    readonly reason: string,
  ) {
    super(reason);
  }
}

interface WorkItem {
  tensorIndex: number;
  start: number;
  length: number;
}

interface LoadedItem {
  item: WorkItem;
  /** Views into the shared read slot (valid until the slot is reused). */
  rowBytes: Uint8Array[];
  global?: Buffer;
  state: Record<string, Buffer | undefined>;
}

interface StateSourceInfo {
  name: string;
  source: ByteSource;
  header: SafetensorsHeader;
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error("aborted");
}

/** True when every value is finite: one add per element (NaN/Inf propagate through the sum);
 *  only a sum that overflows is re-checked value by value. */
export function allFinite(values: Float64Array, length: number): boolean {
  let sum = 0;
  for (let i = 0; i < length; i++) sum += values[i];
  return sum - sum === 0 || firstNonFinite(values, length) < 0;
}

/** Index of the first NaN/Inf in row[0..length), or -1. (v - v is NaN exactly for NaN and +-Inf.) */
export function firstNonFinite(row: ArrayLike<number>, length: number): number {
  for (let i = 0; i < length; i++) {
    const v = row[i];
    if (v - v !== 0) return i;
  }
  return -1;
}

/** Compares an update's layout to the reference one; returns a reason or undefined. Pure. */
export function layoutMismatch(reference: SafetensorsHeader, referenceId: string, other: SafetensorsHeader): string | undefined {
  for (const t of reference.tensors) {
    const o = other.byName.get(t.name);
    if (!o) return `tensor "${t.name}" is missing (present in reference update "${referenceId}")`;
    if (o.dtype !== t.dtype) return `tensor "${t.name}" has dtype ${o.dtype}, reference update "${referenceId}" has ${t.dtype}`;
    if (o.shape.length !== t.shape.length || o.shape.some((d, i) => d !== t.shape[i])) {
      return `tensor "${t.name}" has shape [${o.shape.join(",")}], reference update "${referenceId}" has [${t.shape.join(",")}]`;
    }
  }
  for (const o of other.tensors) {
    if (!reference.byName.has(o.name)) return `unexpected tensor "${o.name}" (absent from reference update "${referenceId}")`;
  }
  return undefined;
}

/** Aggregates K updates with `strategy`, streaming. See the module comment for the rules. */
export async function aggregateUpdates(options: AggregateOptions): Promise<AggregationResult> {
  checkOptions(options);
  const { included, excluded } = await readCandidates(options);
  checkEnough(included, excluded, options.minUpdates);
  const reference = included[0];
  const { tensors, floatElements } = outputLayout(reference.header);
  const globalHeader = await checkGlobalModel(options, tensors);
  const stateSources = await openStateSources(options, tensors);
  const work = planWork(options, tensors, included);
  const resources = startResources(options, tensors, included, work);
  try {
    return await aggregateUntilValid({ options, included, excluded, tensors, floatElements, globalHeader, stateSources, work, resources });
  } finally {
    await resources.hashPool.close();
    await resources.kernelPool?.close();
  }
}

/** Options the engine cannot run with (caller bugs, not bad updates). */
function checkOptions(options: AggregateOptions): void {
  const requestedChunk = options.chunkElements ?? DEFAULT_CHUNK_ELEMENTS;
  if (!Number.isSafeInteger(requestedChunk) || requestedChunk < 1) {
    throw new AggregationError("BAD_OPTIONS", `chunkElements must be a positive integer, got ${requestedChunk}`);
  }
  if (!Number.isSafeInteger(options.minUpdates) || options.minUpdates < 1) {
    throw new AggregationError("BAD_OPTIONS", `minUpdates must be an integer >= 1, got ${options.minUpdates}`);
  }
  const prefetch = options.prefetchChunks ?? DEFAULT_PREFETCH_CHUNKS;
  if (!Number.isSafeInteger(prefetch) || prefetch < 1) throw new AggregationError("BAD_OPTIONS", `prefetchChunks must be an integer >= 1, got ${prefetch}`);
  const ids = new Set<string>();
  for (const u of options.updates) {
    if (ids.has(u.id)) throw new AggregationError("BAD_OPTIONS", `duplicate update id "${u.id}"`);
    ids.add(u.id);
    const n = u.metrics?.numExamples;
    if (!Number.isSafeInteger(n) || n <= 0) {
      throw new AggregationError("BAD_OPTIONS", `update "${u.id}": metrics.numExamples must be an integer > 0, got ${JSON.stringify(n)}`);
    }
  }
  const cap = options.maxWeightShare;
  if (cap !== undefined && !(cap > 0 && cap <= 1)) throw new AggregationError("BAD_OPTIONS", `maxWeightShare must be a number with 0 < x <= 1, got ${JSON.stringify(cap)}`);
}

/**
 * The weights of one attempt's updates. Uncapped rounds keep the claimed counts (results stay
 * bit-identical to plain FedAvg); capped rounds scale the capped shares back to the total count so
 * rules that read counts see the usual magnitude.
 */
function roundWeights(included: readonly Candidate[], maxWeightShare: number | undefined): { weights: number[]; shares: number[]; weighting: RoundWeighting } {
  const claimed = included.map((c) => c.metrics.numExamples);
  const { shares, capped, equalized } = capWeightShares(claimed, maxWeightShare);
  const total = claimed.reduce((a, b) => a + b, 0);
  const weights = maxWeightShare === undefined ? claimed : shares.map((s) => s * total);
  const ids = (indices: readonly number[]) => indices.map((i) => included[i].id);
  const dominant = maxWeightShare === undefined ? ids(dominantShares(shares)) : [];
  return { weights, shares, weighting: { ...(maxWeightShare !== undefined ? { maxWeightShare } : {}), capped: ids(capped), equalized, dominant } };
}

/**
 * Step 1: headers of all updates, concurrently (small reads); an update that is
 * unreadable, invalid or laid out unlike the first valid one is excluded with a reason.
 */
async function readCandidates(options: AggregateOptions): Promise<{ included: Candidate[]; excluded: { id: string; reason: string }[] }> {
  const { signal } = options;
  const excluded: { id: string; reason: string }[] = [];
  const prepared = await Promise.all(
    options.updates.map(async (u, index) => {
      let header: SafetensorsHeader;
      try {
        header = await readSafetensorsHeader(u.model, { signal });
      } catch (err) {
        if (signal?.aborted) throw err;
        return { id: u.id, reason: err instanceof SafetensorsError ? `invalid model: ${err.message}` : `unreadable model: ${reasonOf(err)}` };
      }
      if (u.knownSha256 !== undefined && !/^[0-9a-f]{64}$/.test(u.knownSha256)) {
        throw new AggregationError("BAD_OPTIONS", `update "${u.id}": knownSha256 must be 64 lower-case hex digits, got ${JSON.stringify(u.knownSha256)}`);
      }
      const c: Candidate = { index, id: u.id, model: u.model, header, metrics: u.metrics, hashCursor: header.dataStart, hashInOrder: true, knownSha256: u.knownSha256 };
      return c;
    }),
  );
  throwIfAborted(signal);
  const included: Candidate[] = [];
  let reference: Candidate | undefined;
  for (const p of prepared) {
    if (!("header" in p)) {
      excluded.push(p);
      continue;
    }
    if (!reference) {
      reference = p;
      included.push(p);
      continue;
    }
    const mismatch = layoutMismatch(reference.header, reference.id, p.header);
    if (mismatch) excluded.push({ id: p.id, reason: `layout mismatch: ${mismatch}` });
    else included.push(p);
  }
  return { included, excluded };
}

function checkEnough(included: readonly Candidate[], excluded: readonly { id: string; reason: string }[], minUpdates: number): void {
  if (included.length >= minUpdates) return;
  const details = excluded.map((e) => `${e.id}: ${e.reason}`).join("; ");
  throw new AggregationError("TOO_FEW_UPDATES", `${included.length} valid update(s), need at least ${minUpdates}${details ? ` (excluded ${details})` : ""}`, [...excluded]);
}

/** Step 2: the output's tensors (= the reference update's, in name order) and the flattened float length. */
function outputLayout(reference: SafetensorsHeader): { tensors: TensorLayout[]; floatElements: number } {
  let flat = 0;
  const tensors: TensorLayout[] = reference.tensors.map((t) => {
    const floatTensor = isFloatDType(t.dtype);
    const layout: TensorLayout = { name: t.name, dtype: t.dtype, shape: t.shape, numel: t.numel, flatOffset: floatTensor ? flat : -1 };
    if (floatTensor) flat += t.numel;
    return layout;
  });
  return { tensors, floatElements: flat };
}

/** Step 3a: the global model's header when the strategy needs it, checked against the layout. */
async function checkGlobalModel(options: AggregateOptions, tensors: readonly TensorLayout[]): Promise<SafetensorsHeader | undefined> {
  const { strategy } = options;
  if (strategy.needsGlobal && !options.global) {
    throw new AggregationError("GLOBAL_MISMATCH", `strategy ${strategy.name} needs the round's global model, none was given`);
  }
  if (!options.global || !strategy.needsGlobal) return undefined;
  const globalHeader = await readSafetensorsHeader(options.global, { signal: options.signal });
  for (const t of tensors) {
    if (t.flatOffset < 0) continue;
    const g = globalHeader.byName.get(t.name);
    if (!g || !isFloatDType(g.dtype) || g.numel !== t.numel || g.shape.some((d, i) => d !== t.shape[i])) {
      throw new AggregationError(
        "GLOBAL_MISMATCH",
        `global model ${options.global.name}: tensor "${t.name}" ${g ? `is ${g.dtype} [${g.shape.join(", ")}]` : "is missing"}, updates have ${t.dtype} [${t.shape.join(", ")}]`,
      );
    }
  }
  return globalHeader;
}

/** Step 3b: the input state tensor files that exist, checked against the layout. */
async function openStateSources(options: AggregateOptions, tensors: readonly TensorLayout[]): Promise<StateSourceInfo[]> {
  const { strategy } = options;
  const stateSources: StateSourceInfo[] = [];
  for (const spec of strategy.stateTensors) {
    const source = options.state?.tensors?.[spec.name];
    if (!source) continue;
    const header = await readSafetensorsHeader(source, { signal: options.signal });
    for (const t of tensors) {
      if (t.flatOffset < 0) continue;
      const s = header.byName.get(t.name);
      if (!s || !isFloatDType(s.dtype) || s.numel !== t.numel || s.shape.some((d, i) => d !== t.shape[i])) {
        throw new AggregationError(
          "STATE_MISMATCH",
          `state tensor file "${spec.name}" (${source.name}): tensor "${t.name}" ${s ? `is ${s.dtype} [${s.shape.join(",")}]` : "is missing"}, model has [${t.shape.join(",")}]`,
        );
      }
    }
    stateSources.push({ name: spec.name, source, header });
  }
  if (strategy.stateTensors.length > 0 && !options.stateOutput) {
    throw new AggregationError("STATE_OUTPUT_MISSING", `strategy ${strategy.name} keeps state tensors (${strategy.stateTensors.map((s) => s.name).join(", ")}) but no stateOutput was given`);
  }
  return stateSources;
}

interface WorkPlan {
  items: WorkItem[];
  chunkElements: number;
  /** Read slots: one being combined, `prefetch` being read, and one whose bytes the hash workers
   *  still read (only when they hash: the bytes of updates with known digests are not hashed). */
  slots: number;
  prefetch: number;
  maxElementBytes: number;
  hashWorkers: number;
}

/** Hash worker threads for these updates (0: every digest is known, or too few bytes to hash). */
function hashWorkerCount(options: AggregateOptions, included: readonly Candidate[]): number {
  const bytesToHash = included.reduce((s, c) => s + (c.knownSha256 ? 0 : c.header.fileSize), 0);
  if (bytesToHash === 0) return 0;
  return Math.min(options.hashWorkers ?? defaultHashWorkers(bytesToHash), included.length);
}

/** Step 4: every tensor in name order, cut into chunks small enough for the buffer budget. */
function planWork(options: AggregateOptions, tensors: readonly TensorLayout[], included: readonly Candidate[]): WorkPlan {
  const updates = included.length;
  const maxElementBytes = Math.max(1, ...tensors.map((t) => dtypeSize(t.dtype)));
  const budget = options.bufferBudgetBytes ?? DEFAULT_BUFFER_BUDGET_BYTES;
  const prefetch = options.prefetchChunks ?? DEFAULT_PREFETCH_CHUNKS;
  const hashWorkers = hashWorkerCount(options, included);
  const slots = prefetch + (hashWorkers > 0 ? 2 : 1);
  const requestedChunk = options.chunkElements ?? DEFAULT_CHUNK_ELEMENTS;
  const chunkElements = Math.max(1, Math.min(requestedChunk, Math.floor(budget / (slots * updates * maxElementBytes)) & ~15 || 16));
  const items: WorkItem[] = [];
  tensors.forEach((t, tensorIndex) => {
    if (t.numel === 0) return;
    for (let start = 0; start < t.numel; start += chunkElements) {
      items.push({ tensorIndex, start, length: Math.min(chunkElements, t.numel - start) });
    }
  });
  return { items, chunkElements, slots, prefetch, maxElementBytes, hashWorkers };
}

interface RoundResources {
  buffers: SharedBuffers;
  hashPool: HashPool;
  kernelPool?: KernelPool;
}

/** Step 5: the shared arena (read slots, output, encode buffers), hash workers and the kernel worker. */
function startResources(options: AggregateOptions, tensors: readonly TensorLayout[], included: readonly Candidate[], work: WorkPlan): RoundResources {
  const { strategy } = options;
  const floatElements = tensors.reduce((sum, t) => sum + (t.flatOffset >= 0 ? t.numel : 0), 0);
  const rowBytes = Math.min(work.chunkElements, Math.max(1, ...tensors.map((t) => t.numel))) * work.maxElementBytes;
  const outElements = Math.min(work.chunkElements, Math.max(1, floatElements));
  // The output chunks are encoded in the tensors' own dtype: F32 models need half the bytes of F64.
  const encodedBytes = outElements * Math.max(1, ...tensors.filter((t) => t.flatOffset >= 0).map((t) => dtypeSize(t.dtype)));
  const arena = new SimdArena(work.slots * included.length * rowBytes + outElements * 8 + encodedBytes * 2 + 64 * (work.slots * included.length + 3));
  const floatBytes = included.length * tensors.reduce((sum, t) => sum + (t.flatOffset >= 0 ? t.numel * dtypeSize(t.dtype) : 0), 0);
  const kernelWorkers = options.kernelWorkers ?? (floatBytes >= 32 << 20 ? 1 : 0);
  if (!Number.isInteger(kernelWorkers) || kernelWorkers < 0 || kernelWorkers > 1) throw new AggregationError("BAD_OPTIONS", `kernelWorkers must be 0 or 1, got ${kernelWorkers}`);
  const hashPool = new HashPool(arena.buffer, work.hashWorkers);
  // Workers get the chunk's rows only: not the global model or state tensors.
  const splittable = strategy.parallelKernels && !strategy.needsGlobal && strategy.stateTensors.length === 0;
  const kernelPool = kernelWorkers > 0 && splittable ? KernelPool.start() : undefined;
  const buffers: SharedBuffers = {
    arena,
    slots: Array.from({ length: work.slots }, () => included.map(() => arena.allocate(rowBytes))),
    prefetch: work.prefetch,
    out: new Float64Array(arena.buffer, arena.allocate(outElements * 8).byteOffset, outElements),
    encode: [arena.allocate(encodedBytes), arena.allocate(encodedBytes)],
  };
  return { buffers, hashPool, ...(kernelPool ? { kernelPool } : {}) };
}

/**
 * Step 6: runs the passes; an update found invalid mid-stream (non-finite value, unreadable
 * bytes) is excluded and the passes restart without it.
 */
async function aggregateUntilValid(args: {
  options: AggregateOptions;
  included: Candidate[];
  excluded: { id: string; reason: string }[];
  tensors: TensorLayout[];
  floatElements: number;
  globalHeader: SafetensorsHeader | undefined;
  stateSources: StateSourceInfo[];
  work: WorkPlan;
  resources: RoundResources;
}): Promise<AggregationResult> {
  const { options, excluded, tensors, floatElements, globalHeader, stateSources, work, resources } = args;
  const { strategy, signal } = options;
  const { hashPool, kernelPool } = resources;
  let included = args.included;
  let restarts = 0;
  for (;;) {
    checkEnough(included, excluded, options.minUpdates);
    const { weights, shares, weighting } = roundWeights(included, options.maxWeightShare);
    const ctx: RoundContext = {
      updates: included.map((c, i) => ({ id: c.id, numExamples: weights[i] })),
      ...(options.maxWeightShare !== undefined ? { maxWeightShare: options.maxWeightShare } : {}),
      tensors,
      floatElements,
      state: options.state?.json,
      stateTensorsPresent: stateSources.map((s) => s.name),
    };
    strategy.checkRound?.(ctx, globalHeader !== undefined);
    for (const c of included) {
      c.hashCursor = c.header.dataStart;
      c.hashInOrder = true;
    }
    hashPool.reset(included.filter((c) => !c.knownSha256).map((c) => [c.index, c.header.prefix]));
    try {
      const pass = new RoundPass({ options, ctx, included, tensors, items: work.items, buffers: resources.buffers, hashPool, kernelPool, globalHeader, stateSources, restarts });
      const { output, stateFiles, outcome } = await pass.run();
      const digests = await hashPool.digests();
      const includedResults: IncludedUpdate[] = [];
      for (const [i, c] of included.entries()) {
        includedResults.push({ id: c.id, numExamples: c.metrics.numExamples, weightShare: shares[i], sha256: await finishHash(c, digests.get(c.index), signal) });
      }
      return {
        included: includedResults,
        excluded,
        output,
        state: { json: outcome.state, tensors: stateFiles, ...(outcome.report !== undefined ? { report: outcome.report } : {}) },
        metrics: weightedMetricMeans(included.map((c, i) => ({ numExamples: weights[i], metrics: c.metrics.metrics }))),
        totalExamples: included.reduce((s, c) => s + c.metrics.numExamples, 0),
        restarts,
        kernelWorkers: kernelPool ? 1 : 0,
        weighting,
      };
    } catch (err) {
      if (!(err instanceof UpdateFault) || signal?.aborted) throw err;
      excluded.push({ id: err.candidate.id, reason: err.reason });
      included = included.filter((c) => c !== err.candidate);
      restarts++;
    }
  }
}

/** Chunks shorter than this are never split across threads (a message costs ~0.1 ms). */
const MIN_SPLIT_ELEMENTS = 1 << 14;

/** The coordinates [0, split) of a chunk. */
function lowerPart(chunk: StatisticsChunk, split: number): Pick<StatisticsChunk, "start" | "length" | "rows"> {
  return { start: chunk.start, length: split, rows: chunk.rows.map((r) => r.subarray(0, split)) };
}

/** The coordinates [split, length) of a chunk, as their own chunk. */
function upperPart(chunk: StatisticsChunk, split: number): Pick<StatisticsChunk, "start" | "length" | "rows" | "weights"> {
  return { start: chunk.start + split, length: chunk.length - split, rows: chunk.rows.map((r) => r.subarray(split, chunk.length)), weights: chunk.weights };
}

/**
 * Runs this thread's half while the worker runs the other, and returns only once the worker is done
 * too, even when this half throws: the worker reads the chunk's slot and writes the shared output,
 * which the next chunk (or a restarted pass) reuses.
 */
async function bothHalves(far: Promise<unknown>, near: () => void): Promise<void> {
  try {
    near();
  } catch (err) {
    await far.catch(() => undefined);
    throw err;
  }
  await far;
}

interface SharedBuffers {
  arena: SimdArena;
  /** slots[s][k]: the read buffer of slot s for the k-th update of the FIRST pass (rows beyond the
   *  current included count are unused after exclusions). */
  slots: Uint8Array[][];
  /** The combine output chunk (in the arena, so the SIMD kernel can write it). */
  out: Float64Array;
  /** Two alternating output encode buffers (chunk x the largest float dtype's size each). */
  encode: Uint8Array[];
  /** Chunks read ahead (slots.length = prefetch + 1, + 1 while hash workers read). */
  prefetch: number;
}

/** Completes an update's sha256: in-stream when its bytes were read in file order, else re-read. */
async function finishHash(c: Candidate, streamed: string | undefined, signal?: AbortSignal): Promise<string> {
  if (c.knownSha256) return c.knownSha256;
  if (streamed && c.hashInOrder && c.hashCursor === c.header.fileSize) return streamed;
  const hash = createHash("sha256");
  const step = 8 << 20;
  for (let offset = 0; offset < c.header.fileSize; offset += step) {
    hash.update(await c.model.read(offset, Math.min(step, c.header.fileSize - offset), { signal }));
  }
  return hash.digest("hex");
}

/** What one attempt at a round's passes works on. */
interface RoundPassInput {
  options: AggregateOptions;
  ctx: RoundContext;
  /** The updates of this attempt, in row order. */
  included: Candidate[];
  tensors: TensorLayout[];
  items: WorkItem[];
  buffers: SharedBuffers;
  hashPool: HashPool;
  kernelPool: KernelPool | undefined;
  globalHeader: SafetensorsHeader | undefined;
  stateSources: StateSourceInfo[];
  /** Restarts so far (for progress reports). */
  restarts: number;
}

/** One attempt at the statistics passes + combine pass over a fixed set of included updates. */
class RoundPass {
  private bytesRead = 0;
  private readonly bytesTotal: number;
  private readonly zeros: Float64Array;
  private readonly decodeScratch: Float32Array[];
  private readonly weights: Float64Array;
  private readonly encodeBuffers: Uint8Array[];
  private encodeTurn = 0;
  /** Per slot: resolves when the hash workers no longer read that slot. */
  private readonly slotFree: Promise<void>[];

  private readonly options: AggregateOptions;
  private readonly strategy: Strategy;
  private readonly ctx: RoundContext;
  private readonly included: Candidate[];
  private readonly tensors: TensorLayout[];
  private readonly items: WorkItem[];
  private readonly buffers: SharedBuffers;
  private readonly hashPool: HashPool;
  private readonly kernelPool: KernelPool | undefined;
  private readonly globalHeader: SafetensorsHeader | undefined;
  private readonly stateSources: StateSourceInfo[];
  private readonly restarts: number;

  constructor(input: RoundPassInput) {
    this.options = input.options;
    this.strategy = input.options.strategy;
    this.ctx = input.ctx;
    this.included = input.included;
    this.tensors = input.tensors;
    this.items = input.items;
    this.buffers = input.buffers;
    this.hashPool = input.hashPool;
    this.kernelPool = input.kernelPool;
    this.globalHeader = input.globalHeader;
    this.stateSources = input.stateSources;
    this.restarts = input.restarts;
    const { included, buffers } = input;
    const dataBytes = included.reduce((s, c) => s + c.header.fileSize - c.header.dataStart, 0);
    this.bytesTotal = dataBytes * (1 + (this.strategy.statistics?.length ?? 0));
    this.zeros = new Float64Array(buffers.out.length);
    this.decodeScratch = included.map(() => new Float32Array(0));
    this.weights = Float64Array.from(this.ctx.updates, (u) => u.numExamples);
    this.slotFree = buffers.slots.map(() => Promise.resolve());
    this.encodeBuffers = buffers.encode;
  }

  private get signal(): AbortSignal | undefined {
    return this.options.signal;
  }

  async run(): Promise<{ output: WrittenObject; stateFiles: Record<string, WrittenObject>; outcome: { state: Json; report?: Json } }> {
    const statistics: Float64Array[] = [];
    const passes = this.strategy.statistics ?? [];
    const floatItems = this.items.filter((it) => this.tensors[it.tensorIndex].flatOffset >= 0);
    const pool = this.kernelPool;
    pool?.beginRound(this.strategy, this.ctx);
    for (let p = 0; p < passes.length; p++) {
      const acc = new Float64Array(passes[p].size(this.ctx));
      const splitStatistics = pool && this.strategy.parallelKernels?.statistics ? pool : undefined;
      await this.stream(floatItems, false, "statistics", passes[p].name, async (loaded) => {
        const chunk = this.decode(loaded);
        // The first data pass is where bad rows are found when statistics exist.
        if (p === 0) this.scanRows(loaded, chunk.rows);
        const split = splitStatistics ? this.splitPoint(chunk) : 0;
        if (!split) return passes[p].accumulate(chunk, acc, this.ctx);
        const far = splitStatistics!.accumulate(p, acc.length, loaded.item.tensorIndex, upperPart(chunk, split));
        await bothHalves(far, () => passes[p].accumulate({ ...chunk, ...lowerPart(chunk, split) }, acc, this.ctx));
        const farAcc = await far;
        for (let i = 0; i < acc.length; i++) acc[i] += farAcc[i];
      });
      statistics.push(acc);
    }
    const plan = this.strategy.plan(this.ctx, statistics);
    const splitCombine = pool && this.strategy.parallelKernels?.combine(plan) ? pool : undefined;
    splitCombine?.setPlan(plan);

    const writer = new SafetensorsWriter(await this.options.output(), this.tensors, this.included[0].header.metadata);
    const stateWriters: { name: string; dtype: FloatDType; writer: SafetensorsWriter }[] = [];
    try {
      for (const spec of this.strategy.stateTensors) {
        const floatSpecs = this.tensors.filter((t) => t.flatOffset >= 0).map((t) => ({ name: t.name, dtype: spec.dtype, shape: t.shape }));
        stateWriters.push({ name: spec.name, dtype: spec.dtype, writer: new SafetensorsWriter(await this.options.stateOutput!(spec.name), floatSpecs) });
      }
      const stateOut: Record<string, Float64Array> = {};
      for (const s of stateWriters) stateOut[s.name] = new Float64Array(this.buffers.out.length);
      let writing: Promise<unknown> = Promise.resolve();
      const integerSource = this.strategy.integerTensorSource?.(plan) ?? 0;
      if (!Number.isInteger(integerSource) || integerSource < 0 || integerSource >= this.included.length) {
        throw new AggregationError("BAD_OPTIONS", `strategy ${this.strategy.name}: integerTensorSource must be an update index in 0..${this.included.length - 1}, got ${integerSource}`);
      }
      const checkRowsHere = passes.length === 0 && !this.strategy.propagatesNonFinite;
      const checkOutput = passes.length === 0 && this.strategy.propagatesNonFinite;
      await this.stream(this.items, true, "combine", "combine", async (loaded) => {
        const t = this.tensors[loaded.item.tensorIndex];
        if (t.flatOffset < 0) {
          // Integer/bool tensor: copied from the update the strategy names (a selected one), never
          // averaged. Copied out of the shared read slot, which is reused while the sink may
          // still hold the chunk.
          const bytes = Buffer.from(loaded.rowBytes[integerSource]);
          await writing;
          writing = writer.write(t.name, bytes, { signal: this.signal });
          writing.catch(() => undefined);
          return;
        }
        const chunk = this.decode(loaded) as CombineChunk;
        if (checkRowsHere) this.scanRows(loaded, chunk.rows);
        const out = this.buffers.out.subarray(0, loaded.item.length);
        chunk.out = out;
        chunk.stateOut = {};
        for (const s of stateWriters) chunk.stateOut[s.name] = stateOut[s.name].subarray(0, loaded.item.length);
        const split = splitCombine ? this.splitPoint(chunk) : 0;
        if (!split) this.strategy.combine(chunk, plan, this.ctx);
        else {
          const far = splitCombine!.combine(loaded.item.tensorIndex, { ...upperPart(chunk, split), out: out.subarray(split) });
          await bothHalves(far, () => this.strategy.combine({ ...chunk, ...lowerPart(chunk, split), out: out.subarray(0, split) }, plan, this.ctx));
        }
        // Two encode buffers (in the arena) alternate: chunk j-2's write has resolved (sinks copy or
        // flush a chunk before write() resolves), so its buffer is free again.
        const encodeBuffer = this.encodeBuffers[this.encodeTurn++ % 2];
        const target = encodeBuffer.subarray(0, out.length * dtypeSize(t.dtype));
        let encoded: Uint8Array;
        let finite = true;
        if (t.dtype === "F32") {
          finite = this.buffers.arena.encodeF32(out, target); // SIMD round + finite check in one pass
          encoded = target;
        } else {
          encoded = encodeFloats(out, t.dtype as FloatDType, target);
          if (checkOutput) finite = allFinite(out, out.length);
        }
        if (checkOutput && !finite) {
          this.scanRows(loaded, chunk.rows);
          throw new AggregationError("NON_FINITE_RESULT", `tensor "${t.name}": the combined value overflowed to a non-finite number although every input was finite`);
        }
        const encodedState = stateWriters.map((s) => encodeFloats(chunk.stateOut[s.name], s.dtype));
        await writing;
        writing = (async () => {
          await writer.write(t.name, encoded, { signal: this.signal });
          for (let i = 0; i < stateWriters.length; i++) await stateWriters[i].writer.write(t.name, encodedState[i], { signal: this.signal });
        })();
        writing.catch(() => undefined);
      });
      await writing;
      const output = await writer.commit({ signal: this.signal });
      const stateFiles: Record<string, WrittenObject> = {};
      for (const s of stateWriters) stateFiles[s.name] = await s.writer.commit({ signal: this.signal });
      return { output, stateFiles, outcome: this.strategy.finish(this.ctx, plan) };
    } catch (err) {
      await writer.abort().catch(() => undefined);
      for (const s of stateWriters) await s.writer.abort().catch(() => undefined);
      throw err;
    } finally {
      // No hash worker may still read a slot the next attempt will overwrite.
      await Promise.all(this.slotFree.map((p) => p.catch(() => undefined)));
    }
  }

  /** Reads items (one chunk of prefetch) into rotating shared slots and hands each to `process`. */
  private async stream(items: WorkItem[], hashing: boolean, phase: AggregationProgress["phase"], passName: string, process: (loaded: LoadedItem) => void | Promise<void>): Promise<void> {
    if (items.length === 0) return;
    const slots = this.buffers.slots.length;
    const start = (j: number) => {
      const slot = j % slots;
      const p = this.slotFree[slot].then(() => this.load(items[j], slot));
      p.catch(() => undefined);
      return p;
    };
    const pending: Promise<LoadedItem>[] = [];
    let started = 0;
    const topUp = () => {
      while (started < items.length && pending.length < this.buffers.prefetch) pending.push(start(started++));
    };
    topUp();
    try {
      for (let j = 0; j < items.length; j++) {
        throwIfAborted(this.signal);
        const loaded = await pending.shift()!;
        if (hashing) {
          const hashed = this.hashRows(loaded);
          hashed.catch(() => undefined);
          this.slotFree[j % slots] = hashed;
        }
        topUp();
        await process(loaded);
        for (const b of loaded.rowBytes) this.bytesRead += b.byteLength;
        this.options.onProgress?.({ phase, pass: passName, bytesRead: this.bytesRead, bytesTotal: this.bytesTotal, restarts: this.restarts });
      }
    } finally {
      // Reads still in flight would write into slots the next attempt reuses.
      await Promise.all(pending.map((p) => p.catch(() => undefined)));
    }
    await Promise.all(this.slotFree);
  }

  private rowOffset(header: SafetensorsHeader, item: WorkItem): { offset: number; length: number } {
    const t = this.tensors[item.tensorIndex];
    const entry = header.byName.get(t.name)!;
    const size = dtypeSize(entry.dtype);
    return { offset: header.dataStart + entry.begin + item.start * size, length: item.length * size };
  }

  private async load(item: WorkItem, slot: number): Promise<LoadedItem> {
    const signal = this.signal;
    const t = this.tensors[item.tensorIndex];
    const rowBytes = await Promise.all(
      this.included.map(async (c, k) => {
        const { offset, length } = this.rowOffset(c.header, item);
        const target = this.buffers.slots[slot][k].subarray(0, length);
        try {
          if (c.model.readInto) await c.model.readInto(target, offset, { signal });
          else target.set(await c.model.read(offset, length, { signal }));
          return target;
        } catch (err) {
          if (signal?.aborted) throw err;
          throw new UpdateFault(c, `unreadable model: tensor "${t.name}" bytes [${offset}, ${offset + length}): ${reasonOf(err)}`);
        }
      }),
    );
    const floatTensor = t.flatOffset >= 0;
    let global: Buffer | undefined;
    if (floatTensor && this.globalHeader && this.options.global) {
      const { offset, length } = this.rowOffset(this.globalHeader, item);
      global = await this.options.global.read(offset, length, { signal });
    }
    const state: Record<string, Buffer | undefined> = {};
    if (floatTensor) {
      for (const s of this.stateSources) {
        const { offset, length } = this.rowOffset(s.header, item);
        state[s.name] = await s.source.read(offset, length, { signal });
      }
    }
    return { item, rowBytes, global, state };
  }

  /** Sends this chunk's bytes to the hash workers when they continue each file in order. */
  private hashRows(loaded: LoadedItem): Promise<void> {
    const segments: [number, number, number][] = [];
    this.included.forEach((c, i) => {
      const { offset } = this.rowOffset(c.header, loaded.item);
      const bytes = loaded.rowBytes[i];
      if (c.knownSha256) return;
      if (c.hashInOrder && offset === c.hashCursor) {
        segments.push([c.index, bytes.byteOffset, bytes.byteLength]);
        c.hashCursor += bytes.byteLength;
      } else {
        c.hashInOrder = false;
      }
    });
    return this.hashPool.update(segments);
  }

  /**
   * Where a chunk is cut between this thread (below) and the kernel worker (above), or 0 to keep it
   * whole: too small to be worth a message, or a row copied out of shared memory (an unaligned F64
   * tensor). The output is always in the shared arena.
   */
  private splitPoint(chunk: StatisticsChunk): number {
    if (chunk.length < MIN_SPLIT_ELEMENTS || !allShared(chunk.rows)) return 0;
    return chunk.length >> 1;
  }

  private decode(loaded: LoadedItem): StatisticsChunk {
    const t = this.tensors[loaded.item.tensorIndex];
    const dtype = t.dtype as FloatDType;
    const length = loaded.item.length;
    const rows: FloatRow[] = loaded.rowBytes.map((bytes, i) => {
      // Shared, so that a kernel worker can read the decoded rows without a copy.
      if ((dtype === "F16" || dtype === "BF16") && this.decodeScratch[i].length < length) this.decodeScratch[i] = new Float32Array(new SharedArrayBuffer(this.buffers.out.length * 4));
      return decodeFloats(bytes, dtype, this.decodeScratch[i]);
    });
    const state: Record<string, Float64Array> = {};
    for (const spec of this.strategy.stateTensors) {
      const bytes = loaded.state[spec.name];
      if (!bytes) {
        state[spec.name] = this.zeros.subarray(0, length);
        continue;
      }
      const source = this.stateSources.find((s) => s.name === spec.name)!;
      const decoded = decodeFloats(bytes, source.header.byName.get(t.name)!.dtype as FloatDType);
      state[spec.name] = decoded instanceof Float64Array ? decoded : Float64Array.from(decoded);
    }
    let global: FloatRow | undefined;
    if (loaded.global) global = decodeFloats(loaded.global, this.globalHeader!.byName.get(t.name)!.dtype as FloatDType);
    return {
      tensor: t,
      start: loaded.item.start,
      length,
      rows,
      weights: this.weights,
      ...(global ? { global } : {}),
      state,
    };
  }

  /** Throws UpdateFault for the first included update with a NaN/Inf in this chunk. */
  private scanRows(loaded: LoadedItem, rows: readonly FloatRow[]): void {
    const t = this.tensors[loaded.item.tensorIndex];
    for (let i = 0; i < rows.length; i++) {
      const at = firstNonFinite(rows[i], loaded.item.length);
      if (at >= 0) {
        throw new UpdateFault(this.included[i], `non-finite value (${rows[i][at]}) in tensor "${t.name}" at element ${loaded.item.start + at}`);
      }
    }
  }
}
