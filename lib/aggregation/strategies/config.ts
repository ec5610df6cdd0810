/**
 * Strategy options: names, defaults, validation. Plain data in (from the spec or CLI flags),
 * a fully resolved config out; every error names the option path and expected vs got.
 */
import { ADAPTIVE_CLIPPING_DEFAULTS, type AdaptiveClippingOptions, validateAdaptiveClipping } from "../privacy/clipping";
import { PrivacyConfigError } from "../privacy/errors";
import { StrategyConfigError } from "./errors";
import {
  isServerOptimizer,
  resolveServerOptimizerOptions,
  type ServerOptimizerName,
  type ServerOptimizerOptions,
} from "./serverOptimizers";

export const STRATEGY_NAMES = [
  "fedavg",
  "fedavgm",
  "fedadam",
  "fedyogi",
  "fedadagrad",
  "median",
  "trimmed-mean",
  "krum",
  "multi-krum",
  "bulyan",
] as const;
export type StrategyName = (typeof STRATEGY_NAMES)[number];

export type ClippingConfig =
  | { mode: "fixed"; norm: number }
  | ({ mode: "adaptive" } & AdaptiveClippingOptions);

export interface DpConfig {
  /** z: noise stddev = z * C / m on the mean of m clipped updates */
  noiseMultiplier: number;
  /** target delta of the reported (epsilon, delta); default 1e-5 */
  delta: number;
  /** probability each silo takes part in a round (Poisson, secret); 1 = every silo every round */
  sampleRate?: number;
}

/** The `aggregation` section of a federation spec (and the CLI flags), before defaults. */
export interface StrategyOptions {
  strategy: string;
  beta?: number;
  byzantine?: number;
  keep?: number;
  serverLr?: number;
  momentum?: number;
  beta1?: number;
  beta2?: number;
  tau?: number;
  clipping?: Partial<ClippingConfig> & { mode?: string };
  dp?: Partial<DpConfig>;
}

export interface ResolvedStrategyConfig {
  strategy: StrategyName;
  /** trimmed-mean: fraction cut from each end (default 0.2, Flower's) */
  beta: number;
  /** krum / multi-krum / bulyan: assumed number of Byzantine updates f (default 0) */
  byzantine: number;
  /** multi-krum: number of best-scored updates averaged (required) */
  keep?: number;
  /** server optimizers only */
  optimizer?: { name: ServerOptimizerName; options: ServerOptimizerOptions };
  clipping?: ClippingConfig;
  dp?: Required<DpConfig>;
}

export const TRIMMED_MEAN_DEFAULT_BETA = 0.2;
export const DEFAULT_DP_DELTA = 1e-5;
const MEAN_BASED: readonly StrategyName[] = ["fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad"];
const KRUM_FAMILY: readonly StrategyName[] = ["krum", "multi-krum", "bulyan"];

/** Options each strategy accepts (others are rejected so typos surface). */
const ACCEPTED: Record<StrategyName, readonly string[]> = {
  fedavg: [],
  fedavgm: ["serverLr", "momentum"],
  fedadam: ["serverLr", "beta1", "beta2", "tau"],
  fedyogi: ["serverLr", "beta1", "beta2", "tau"],
  fedadagrad: ["serverLr", "tau"],
  median: [],
  "trimmed-mean": ["beta"],
  krum: ["byzantine"],
  "multi-krum": ["byzantine", "keep"],
  bulyan: ["byzantine"],
};
const ALWAYS_ACCEPTED = ["strategy", "clipping", "dp"];

export function isStrategyName(name: string): name is StrategyName {
  return (STRATEGY_NAMES as readonly string[]).includes(name);
}

export function isMeanBased(name: StrategyName): boolean {
  return MEAN_BASED.includes(name);
}

export function usesPairwiseDistances(name: StrategyName): boolean {
  return KRUM_FAMILY.includes(name);
}

function checkNumber(field: string, value: unknown, expected: string, ok: (v: number) => boolean): number {
  if (typeof value !== "number" || !Number.isFinite(value) || !ok(value)) throw new StrategyConfigError(field, expected, value);
  return value;
}

export function resolveStrategyConfig(raw: StrategyOptions, prefix = "aggregation"): ResolvedStrategyConfig {
  if (!isStrategyName(raw.strategy)) {
    throw new StrategyConfigError(`${prefix}.strategy`, `one of ${STRATEGY_NAMES.join(", ")}`, raw.strategy);
  }
  const strategy = raw.strategy;
  for (const [key, value] of Object.entries(raw)) {
    if (value === undefined || ALWAYS_ACCEPTED.includes(key)) continue;
    if (!ACCEPTED[strategy].includes(key)) {
      const accepted = ACCEPTED[strategy];
      throw new StrategyConfigError(
        `${prefix}.${key}`,
        accepted.length ? `no such option for ${strategy} (it accepts ${accepted.join(", ")})` : `no such option for ${strategy} (it takes none)`,
        value,
      );
    }
  }
  const config: ResolvedStrategyConfig = {
    strategy,
    beta: raw.beta === undefined ? TRIMMED_MEAN_DEFAULT_BETA : checkNumber(`${prefix}.beta`, raw.beta, "a number in [0, 1)", (v) => v >= 0 && v < 1),
    byzantine: raw.byzantine === undefined ? 0 : checkNumber(`${prefix}.byzantine`, raw.byzantine, "an integer >= 0", (v) => Number.isInteger(v) && v >= 0),
  };
  if (strategy === "multi-krum") {
    if (raw.keep === undefined) throw new StrategyConfigError(`${prefix}.keep`, "an integer >= 1 (how many best-scored updates multi-krum averages)", undefined);
    config.keep = checkNumber(`${prefix}.keep`, raw.keep, "an integer >= 1", (v) => Number.isInteger(v) && v >= 1);
  }
  if (isServerOptimizer(strategy)) {
    for (const k of ["serverLr", "momentum", "beta1", "beta2", "tau"] as const) {
      if (raw[k] !== undefined) checkNumber(`${prefix}.${k}`, raw[k], "a finite number", () => true);
    }
    config.optimizer = { name: strategy, options: resolveServerOptimizerOptions(strategy, raw, prefix) };
  }
  if (raw.clipping !== undefined) config.clipping = resolveClipping(raw.clipping, `${prefix}.clipping`);
  if (raw.dp !== undefined) {
    if (!isMeanBased(strategy)) {
      throw new StrategyConfigError(
        `${prefix}.dp`,
        `absent for ${strategy}: the Gaussian mechanism's sensitivity C/m holds for an equal-weight mean only (use fedavg or a server optimizer)`,
        raw.dp,
      );
    }
    if (!config.clipping) throw new StrategyConfigError(`${prefix}.clipping`, "a clipping section when dp is set (DP noise is calibrated to the clip norm)", undefined);
    const dp = raw.dp;
    config.dp = {
      noiseMultiplier: checkNumber(`${prefix}.dp.noiseMultiplier`, dp.noiseMultiplier, "a number > 0", (v) => v > 0),
      delta: dp.delta === undefined ? DEFAULT_DP_DELTA : checkNumber(`${prefix}.dp.delta`, dp.delta, "a number in (0, 1)", (v) => v > 0 && v < 1),
      sampleRate: dp.sampleRate === undefined ? 1 : checkNumber(`${prefix}.dp.sampleRate`, dp.sampleRate, "a number in (0, 1]", (v) => v > 0 && v <= 1),
    };
  }
  return config;
}

function resolveClipping(raw: Partial<ClippingConfig> & { mode?: string }, prefix: string): ClippingConfig {
  const mode = raw.mode;
  if (mode === "fixed") {
    const norm = (raw as { norm?: unknown }).norm;
    return { mode, norm: checkNumber(`${prefix}.norm`, norm, "a finite number > 0 (the clip norm C)", (v) => v > 0) };
  }
  if (mode === "adaptive") {
    const r = raw as Partial<AdaptiveClippingOptions>;
    const resolved: ClippingConfig = {
      mode,
      initialNorm: r.initialNorm ?? ADAPTIVE_CLIPPING_DEFAULTS.initialNorm,
      targetQuantile: r.targetQuantile ?? ADAPTIVE_CLIPPING_DEFAULTS.targetQuantile,
      learningRate: r.learningRate ?? ADAPTIVE_CLIPPING_DEFAULTS.learningRate,
      ...(r.clippedCountStddev !== undefined ? { clippedCountStddev: r.clippedCountStddev } : {}),
    };
    try {
      validateAdaptiveClipping(resolved, prefix);
    } catch (e) {
      if (e instanceof PrivacyConfigError) throw new StrategyConfigError(e.field, e.expected, e.got);
      throw e;
    }
    return resolved;
  }
  throw new StrategyConfigError(`${prefix}.mode`, `"fixed" (with norm) or "adaptive"`, raw.mode);
}
