/**
 * The fraud model: a small MLP (features -> 16 ReLU -> 1 logit) in TensorFlow.js on its
 * WebAssembly backend, trained with a class-weighted cross-entropy (fraud is rare) by Adam over
 * mini-batches shuffled from a seeded PRNG, so the same inputs give the same bytes. Weights travel
 * as safetensors (F32, stable names) through flo's own reader and writer.
 */
// The whole @tensorflow/tfjs bundle, not just tfjs-core: its CommonJS build is where the gradient
// functions get registered (tfjs-core ships them only as ES modules).
import * as tf from "@tensorflow/tfjs";
import { setThreadsCount, setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import { dirname, join } from "node:path";
import { decodeFloats, encodeFloats, isFloatDType } from "../../lib/models/dtypes";
import { fileSink, fileSource } from "../../lib/models/fileBytes";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../../lib/models/safetensors";
import { createRng, NUM_FEATURES, shuffleInPlace, type FeatureMatrix } from "./dataset";

export const HIDDEN_UNITS = 16;

/** Tensor names and shapes of the model file, in a stable order. */
export const PARAMETERS = [
  { name: "dense_1.kernel", shape: [NUM_FEATURES, HIDDEN_UNITS] },
  { name: "dense_1.bias", shape: [HIDDEN_UNITS] },
  { name: "dense_2.kernel", shape: [HIDDEN_UNITS, 1] },
  { name: "dense_2.bias", shape: [1] },
] as const;
export type ParameterName = (typeof PARAMETERS)[number]["name"];
export type Weights = Record<ParameterName, Float32Array>;

/** A model file that does not fit this model (missing/extra tensors, wrong shape, non-float dtype, NaN). */
export class FraudModelError extends Error {
  override readonly name = "FraudModelError";
}

const numel = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

let backendReady: Promise<void> | undefined;

/** Selects the WebAssembly backend once per process (wasm files from the installed package, no network). */
export function initBackend(): Promise<void> {
  backendReady ??= (async () => {
    setWasmPaths(dirname(require.resolve("@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm")) + "/");
    // One thread: silo jobs run side by side on small machines, and single-threaded kernels keep results reproducible.
    setThreadsCount(1);
    if (!(await tf.setBackend("wasm"))) throw new Error("TensorFlow.js: the wasm backend failed to initialize");
    await tf.ready();
  })();
  return backendReady;
}

/** Glorot-uniform kernels and zero biases, drawn from a seeded PRNG (not tf's, so the seed fully decides them). */
export function initialWeights(seed: number): Weights {
  const rng = createRng(seed ^ 0x5eed);
  const out = {} as Weights;
  for (const p of PARAMETERS) {
    const values = new Float32Array(numel(p.shape));
    if (p.shape.length === 2) {
      const limit = Math.sqrt(6 / (p.shape[0] + p.shape[1]));
      for (let i = 0; i < values.length; i++) values[i] = (2 * rng() - 1) * limit;
    }
    out[p.name] = values;
  }
  return out;
}

function forward(x: tf.Tensor2D, vars: readonly tf.Tensor[]): tf.Tensor2D {
  const [k1, b1, k2, b2] = vars;
  const hidden = tf.relu(tf.add(tf.matMul(x, k1 as tf.Tensor2D), b1));
  return tf.add<tf.Tensor2D>(tf.matMul(hidden, k2), b2);
}

/** Fraud probabilities for every row of `data`. */
export async function predict(weights: Weights, data: FeatureMatrix): Promise<Float32Array> {
  await initBackend();
  return tf.tidy(() => {
    const vars = PARAMETERS.map((p) => tf.tensor(weights[p.name], [...p.shape]));
    const x = tf.tensor2d(data.x, [data.rows, NUM_FEATURES]);
    return tf.sigmoid(forward(x, vars)).dataSync() as Float32Array;
  });
}

export interface TrainOptions {
  epochs: number;
  learningRate: number;
  /** Seeds the mini-batch shuffling (combine with the round so rounds differ but reruns match). */
  seed: number;
  batchSize?: number;
  /** Loss weight of a fraud example relative to a legitimate one (class weighting for the imbalance). */
  positiveWeight?: number;
  signal?: AbortSignal;
}

export const DEFAULT_BATCH_SIZE = 128;
export const DEFAULT_POSITIVE_WEIGHT = 10;

/** Trains a copy of `weights` on `data`; a fresh Adam optimizer per call (local training of one round). */
export async function train(weights: Weights, data: FeatureMatrix, options: TrainOptions): Promise<Weights> {
  await initBackend();
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const positiveWeight = options.positiveWeight ?? DEFAULT_POSITIVE_WEIGHT;
  if (!Number.isInteger(options.epochs) || options.epochs < 0) throw new RangeError(`epochs must be a non-negative integer, got ${options.epochs}`);
  if (!(options.learningRate > 0)) throw new RangeError(`learning rate must be > 0, got ${options.learningRate}`);
  const rng = createRng(options.seed);
  const vars = PARAMETERS.map((p) => tf.variable(tf.tensor(weights[p.name], [...p.shape]), true));
  const optimizer = tf.train.adam(options.learningRate);
  const order = new Int32Array(data.rows).map((_, i) => i);
  const xBatch = new Float32Array(batchSize * NUM_FEATURES);
  const yBatch = new Float32Array(batchSize);
  const wBatch = new Float32Array(batchSize);
  try {
    for (let epoch = 0; epoch < options.epochs; epoch++) {
      shuffleInPlace(order, rng);
      for (let start = 0; start < data.rows; start += batchSize) {
        if (options.signal?.aborted) throw options.signal.reason instanceof Error ? options.signal.reason : new Error("training aborted");
        const size = Math.min(batchSize, data.rows - start);
        for (let b = 0; b < size; b++) {
          const row = order[start + b];
          xBatch.set(data.x.subarray(row * NUM_FEATURES, (row + 1) * NUM_FEATURES), b * NUM_FEATURES);
          yBatch[b] = data.y[row];
          wBatch[b] = data.y[row] === 1 ? positiveWeight : 1;
        }
        tf.tidy(() => {
          const x = tf.tensor2d(xBatch.subarray(0, size * NUM_FEATURES), [size, NUM_FEATURES]);
          const y = tf.tensor2d(yBatch.subarray(0, size), [size, 1]);
          const w = tf.tensor2d(wBatch.subarray(0, size), [size, 1]);
          optimizer.minimize(() => tf.losses.sigmoidCrossEntropy<tf.Tensor2D, tf.Scalar>(y, forward(x, vars), w), false, vars);
        });
      }
    }
    const out = {} as Weights;
    PARAMETERS.forEach((p, i) => (out[p.name] = Float32Array.from(vars[i].dataSync() as Float32Array)));
    return out;
  } finally {
    optimizer.dispose();
    vars.forEach((v) => v.dispose());
  }
}

/**
 * A malicious silo's update (robustness experiments): global + scale x (trained - global), or
 * scale x trained without a global model. Computed in double precision, stored as F32.
 */
export function scaleUpdate(trained: Weights, global: Weights | undefined, scale: number): Weights {
  const out = {} as Weights;
  for (const p of PARAMETERS) {
    const t = trained[p.name];
    const g = global?.[p.name];
    out[p.name] = Float32Array.from(t, (v, i) => (g ? g[i] + scale * (v - g[i]) : scale * v));
  }
  return out;
}

export async function readModelFile(file: string, options: { signal?: AbortSignal } = {}): Promise<Weights> {
  const source = fileSource(file);
  try {
    const header = await readSafetensorsHeader(source, options);
    const expected = new Set<string>(PARAMETERS.map((p) => p.name));
    const extra = header.tensors.map((t) => t.name).filter((n) => !expected.has(n));
    if (extra.length) throw new FraudModelError(`${file}: unexpected tensor(s) ${extra.map((n) => `"${n}"`).join(", ")}; the fraud model has ${PARAMETERS.map((p) => p.name).join(", ")}`);
    const out = {} as Weights;
    for (const p of PARAMETERS) {
      const entry = header.byName.get(p.name);
      if (!entry) throw new FraudModelError(`${file}: missing tensor "${p.name}" (expected shape [${p.shape.join(",")}])`);
      if (entry.shape.length !== p.shape.length || entry.shape.some((d, i) => d !== p.shape[i])) {
        throw new FraudModelError(`${file}: tensor "${p.name}" has shape [${entry.shape.join(",")}], expected [${p.shape.join(",")}]`);
      }
      if (!isFloatDType(entry.dtype)) throw new FraudModelError(`${file}: tensor "${p.name}" has dtype ${entry.dtype}, expected a float dtype (F32)`);
      const values = Float32Array.from(decodeFloats(await readTensorBytes(source, header, p.name, options), entry.dtype));
      const bad = values.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new FraudModelError(`${file}: tensor "${p.name}" holds a non-finite value (${values[bad]}) at index ${bad}`);
      out[p.name] = values;
    }
    return out;
  } finally {
    await source.close?.();
  }
}

/** Writes `weights` as F32 safetensors (deterministic bytes: flo's writer sorts names and pads the header). */
export async function writeModelFile(file: string, weights: Weights, options: { signal?: AbortSignal } = {}): Promise<void> {
  for (const p of PARAMETERS) {
    const bad = weights[p.name].findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) throw new FraudModelError(`refusing to write ${file}: tensor "${p.name}" has a non-finite value at index ${bad} (training diverged; lower --lr)`);
  }
  await writeSafetensors(
    fileSink(file),
    PARAMETERS.map((p) => ({ name: p.name, dtype: "F32" as const, shape: p.shape, data: encodeFloats(weights[p.name], "F32") })),
    { signal: options.signal },
  );
}

/** The conventional file name inside a model folder (the silo job contract). */
export const modelPath = (dir: string) => join(dir, "model.safetensors");
