/**
 * Server optimizers as per-coordinate updates with explicit state (no hidden instance fields, so
 * the state can be checkpointed and a resumed federation continues exactly).
 *  - FedAvgM: PyTorch SGD momentum convention, g = x - avg; momentum = g in the first step, then
 *    mu*momentum + g; x = x - lr*momentum.
 *  - FedAdam / FedYogi / FedAdagrad: Reddi et al. 2021, Algorithm 2, WITHOUT bias correction;
 *    delta = avg - x; m = b1*m + (1-b1)*delta; v per variant; x = x + lr*m/(sqrt(v)+tau).
 * The step counter is the optimizer's own time (steps taken), independent of round numbering.
 */
import { StrategyConfigError } from "./errors";

export type ServerOptimizerName = "fedavgm" | "fedadam" | "fedyogi" | "fedadagrad";
export const SERVER_OPTIMIZERS: readonly ServerOptimizerName[] = ["fedavgm", "fedadam", "fedyogi", "fedadagrad"];

export interface ServerOptimizerOptions {
  /** server learning rate (eta) */
  serverLr: number;
  /** FedAvgM momentum (mu) */
  momentum: number;
  beta1: number;
  beta2: number;
  tau: number;
}

/**
 * Defaults: Flower's Message-API values (fl-algorithms.md §3) with one tau for all (1e-3), so the
 * same name never means different numbers.
 */
export const SERVER_OPTIMIZER_DEFAULTS: Record<ServerOptimizerName, ServerOptimizerOptions> = {
  fedavgm: { serverLr: 1.0, momentum: 0.0, beta1: 0, beta2: 0, tau: 0 },
  fedadam: { serverLr: 0.1, momentum: 0, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
  fedyogi: { serverLr: 0.01, momentum: 0, beta1: 0.9, beta2: 0.99, tau: 1e-3 },
  fedadagrad: { serverLr: 0.1, momentum: 0, beta1: 0, beta2: 0, tau: 1e-3 },
};

export function isServerOptimizer(name: string): name is ServerOptimizerName {
  return (SERVER_OPTIMIZERS as readonly string[]).includes(name);
}

/** Which per-coordinate state tensors a variant keeps. */
export function optimizerStateTensors(name: ServerOptimizerName): ("momentum" | "m" | "v")[] {
  if (name === "fedavgm") return ["momentum"];
  if (name === "fedadagrad") return ["v"]; // b1 = 0 makes m = delta: nothing to keep
  return ["m", "v"];
}

/** Merges user options over the variant's defaults and validates ranges. */
export function resolveServerOptimizerOptions(
  name: ServerOptimizerName,
  given: Partial<ServerOptimizerOptions> = {},
  fieldPrefix = "aggregation",
): ServerOptimizerOptions {
  const d = SERVER_OPTIMIZER_DEFAULTS[name];
  const o: ServerOptimizerOptions = {
    serverLr: given.serverLr ?? d.serverLr,
    momentum: given.momentum ?? d.momentum,
    beta1: name === "fedadagrad" ? 0 : given.beta1 ?? d.beta1,
    beta2: given.beta2 ?? d.beta2,
    tau: given.tau ?? d.tau,
  };
  const positive = (field: keyof ServerOptimizerOptions) => {
    if (!Number.isFinite(o[field]) || o[field] <= 0) throw new StrategyConfigError(`${fieldPrefix}.${field}`, "a finite number > 0", o[field]);
  };
  const unit = (field: keyof ServerOptimizerOptions) => {
    if (!Number.isFinite(o[field]) || o[field] < 0 || o[field] >= 1) throw new StrategyConfigError(`${fieldPrefix}.${field}`, "a number in [0, 1)", o[field]);
  };
  positive("serverLr");
  if (name === "fedavgm") unit("momentum");
  else {
    positive("tau");
    if (name !== "fedadagrad") {
      unit("beta1");
      unit("beta2");
    }
    if (name === "fedadagrad" && given.beta1 !== undefined && given.beta1 !== 0) {
      throw new StrategyConfigError(`${fieldPrefix}.beta1`, "0 or absent (fedadagrad has no first moment)", given.beta1);
    }
  }
  return o;
}

/**
 * FedAvgM on one chunk. `momentum` is updated in place; `out` receives the new global values.
 * `firstStep` = no momentum yet (it is then initialised to g, not mu*0 + g — identical values, but
 * stated to mirror PyTorch's buffer initialisation).
 */
export function fedAvgMChunk(
  global: Float32Array | Float64Array,
  average: Float64Array,
  momentum: Float64Array,
  firstStep: boolean,
  options: Pick<ServerOptimizerOptions, "serverLr" | "momentum">,
  out: Float64Array,
  length = out.length,
): void {
  const { serverLr, momentum: mu } = options;
  for (let c = 0; c < length; c++) {
    const g = global[c] - average[c];
    const buf = firstStep ? g : mu * momentum[c] + g;
    momentum[c] = buf;
    out[c] = global[c] - serverLr * buf;
  }
}

/**
 * FedAdam / FedYogi / FedAdagrad on one chunk. `m` (unused by fedadagrad: pass an empty array) and
 * `v` are updated in place; `out` receives the new global values.
 */
export function fedAdaptiveChunk(
  variant: Exclude<ServerOptimizerName, "fedavgm">,
  global: Float32Array | Float64Array,
  average: Float64Array,
  m: Float64Array,
  v: Float64Array,
  options: ServerOptimizerOptions,
  out: Float64Array,
  length = out.length,
): void {
  const { serverLr, beta1, beta2, tau } = options;
  for (let c = 0; c < length; c++) {
    const delta = average[c] - global[c];
    const d2 = delta * delta;
    let mc: number;
    let vc = v[c];
    if (variant === "fedadagrad") {
      mc = delta;
      vc = vc + d2;
    } else {
      mc = beta1 * m[c] + (1 - beta1) * delta;
      m[c] = mc;
      if (variant === "fedadam") vc = beta2 * vc + (1 - beta2) * d2;
      else vc = vc - (1 - beta2) * d2 * Math.sign(vc - d2);
    }
    v[c] = vc;
    out[c] = global[c] + (serverLr * mc) / (Math.sqrt(vc) + tau);
  }
}
