/**
 * Server optimizers as per-coordinate updates with explicit state (no hidden instance fields, so
 * the state can be checkpointed and a resumed federation continues exactly).
 *  - FedAvgM: PyTorch SGD momentum convention, g = x - avg; momentum = g in the first step, then
 *    mu*momentum + g; x = x - lr*momentum.
 *  - FedAdam / FedYogi / FedAdagrad: Reddi et al. 2021, Algorithm 2, WITHOUT bias correction;
 *    delta = avg - x; m = b1*m + (1-b1)*delta; v per variant; x = x + lr*m/(sqrt(v)+tau).
 * The step counter is the optimizer's own time (steps taken), independent of round numbering.
 */
import { z } from "zod";
import { defineStrategy, type StrategyCapabilities } from "../definition";
import { meanRule } from "./mean";
import type { AggregationRule } from "./rule";

export type ServerOptimizerName = "fedavgm" | "fedadam" | "fedyogi" | "fedadagrad";

export interface ServerOptimizerOptions {
  /** server learning rate (eta) */
  serverLr: number;
  /** FedAvgM momentum (mu) */
  momentum: number;
  beta1: number;
  beta2: number;
  tau: number;
}

/** Which per-coordinate state tensors a variant keeps. */
export function optimizerStateTensors(name: ServerOptimizerName): ("momentum" | "m" | "v")[] {
  if (name === "fedavgm") return ["momentum"];
  if (name === "fedadagrad") return ["v"]; // b1 = 0 makes m = delta: nothing to keep
  return ["m", "v"];
}

/** The mean of the updates, then the variant's step from the global model. */
export function serverOptimizerRule(name: ServerOptimizerName, options: Pick<ServerOptimizerOptions, "serverLr"> & Partial<ServerOptimizerOptions>): AggregationRule {
  // Options a variant does not have (fedavgm's beta1, fedadagrad's momentum...) are never read by its step.
  const o: ServerOptimizerOptions = { momentum: 0, beta1: 0, beta2: 0, tau: 0, ...options };
  return {
    ...meanRule(),
    optimizer: {
      stateTensors: optimizerStateTensors(name),
      step({ global, mean, state, firstStep, out, length }) {
        if (name === "fedavgm") fedAvgMChunk({ global, average: mean, momentum: state.momentum, firstStep, out, length }, o);
        else fedAdaptiveChunk(name, { global, average: mean, m: state.m ?? new Float64Array(0), v: state.v, out, length }, o);
      },
    },
  };
}

// Defaults: Flower's Message-API values, with one tau for all (1e-3) so that the same name never
// means different numbers.
const serverLr = (defaultValue: number) => z.number().gt(0).default(defaultValue).meta({ description: "Server learning rate (eta)." });
const unit = (defaultValue: number, description: string) => z.number().min(0).lt(1).default(defaultValue).meta({ description });
const tau = () => z.number().gt(0).default(1e-3).meta({ description: "Adaptivity: added to sqrt(v) in the step's denominator." });
const beta1 = () => unit(0.9, "First-moment decay.");
const beta2 = () => unit(0.99, "Second-moment decay.");
const OPTIMIZER: StrategyCapabilities = { needsGlobalModel: true, hasState: true, robust: false, worksOnWeightedSum: true, clipping: true };

export const fedavgm = defineStrategy({
  name: "fedavgm",
  summary: "FedAvg with server momentum.",
  options: z.strictObject({ serverLr: serverLr(1), momentum: unit(0, "Server momentum (mu).") }),
  capabilities: OPTIMIZER,
  rule: (options) => serverOptimizerRule("fedavgm", options),
  bench: [{ label: "fedavgm (mu 0.9)", options: { momentum: 0.9 } }],
});

export const fedadam = defineStrategy({
  name: "fedadam",
  summary: "Reddi et al. 2021, no bias correction.",
  options: z.strictObject({ serverLr: serverLr(0.1), beta1: beta1(), beta2: beta2(), tau: tau() }),
  capabilities: OPTIMIZER,
  rule: (options) => serverOptimizerRule("fedadam", options),
  bench: [{ label: "fedadam", options: {} }],
});

export const fedyogi = defineStrategy({
  name: "fedyogi",
  summary: "Reddi et al. 2021.",
  options: z.strictObject({ serverLr: serverLr(0.01), beta1: beta1(), beta2: beta2(), tau: tau() }),
  capabilities: OPTIMIZER,
  rule: (options) => serverOptimizerRule("fedyogi", options),
  bench: [{ label: "fedyogi", options: {} }],
});

export const fedadagrad = defineStrategy({
  name: "fedadagrad",
  summary: "Reddi et al. 2021 (beta1 = 0).",
  options: z.strictObject({ serverLr: serverLr(0.1), tau: tau() }),
  capabilities: OPTIMIZER,
  rule: (options) => serverOptimizerRule("fedadagrad", options),
  bench: [{ label: "fedadagrad", options: {} }],
});

/**
 * FedAvgM on one chunk. `momentum` is updated in place; `out` receives the new global values.
 * `firstStep` = no momentum yet (it is then initialised to g, not mu*0 + g — identical values, but
 * stated to mirror PyTorch's buffer initialisation).
 */
export function fedAvgMChunk(
  chunk: { global: Float32Array | Float64Array; average: Float64Array; momentum: Float64Array; firstStep: boolean; out: Float64Array; length?: number },
  options: Pick<ServerOptimizerOptions, "serverLr" | "momentum">,
): void {
  const { global, average, momentum, firstStep, out, length = out.length } = chunk;
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
  chunk: { global: Float32Array | Float64Array; average: Float64Array; m: Float64Array; v: Float64Array; out: Float64Array; length?: number },
  options: ServerOptimizerOptions,
): void {
  const { global, average, m, v, out, length = out.length } = chunk;
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
