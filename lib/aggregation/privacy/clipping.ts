/**
 * Norm clipping of each update's delta over the whole flattened model, fixed or adaptive
 * (Andrew et al. 2021, "Differentially Private Learning with Adaptive Clipping", with the PAPER's
 * sign: the server counts UNCLIPPED updates and C <- C * exp(-eta_C * (b_noisy - gamma)), so C grows
 * when most updates are clipped. Flower's Message API counts clipped ones and shrinks C instead).
 */
import { PrivacyConfigError } from "./errors";

/** Scale factor min(1, C/||delta||) for one update (1 for a zero delta). */
export function clipScale(deltaNorm: number, clipNorm: number): number {
  if (!(clipNorm > 0) || !Number.isFinite(clipNorm)) throw new PrivacyConfigError("clipping.clipNorm", "a finite number > 0", clipNorm);
  if (!(deltaNorm >= 0)) throw new PrivacyConfigError("deltaNorm", "a number >= 0", deltaNorm);
  return deltaNorm <= clipNorm ? 1 : clipNorm / deltaNorm;
}

/** out = global + scale * (row - global): the update with its delta clipped. */
export function clipRowChunk(row: Float64Array, global: Float64Array, scale: number, out: Float64Array, length = out.length): void {
  for (let c = 0; c < length; c++) out[c] = global[c] + scale * (row[c] - global[c]);
}

export interface AdaptiveClippingOptions {
  /** C_0; Flower default 0.1 */
  initialNorm: number;
  /** gamma, target fraction of updates left unclipped; default 0.5 */
  targetQuantile: number;
  /** eta_C, geometric learning rate of the clip norm; default 0.2 */
  learningRate: number;
  /** sigma_b, stddev of the noise on the unclipped count; default m/20 (Flower `clipped_count_stddev`) */
  clippedCountStddev?: number;
}

/** sigma_b for m updates: the configured value, else m/20. */
export function countNoiseStddev(options: Pick<AdaptiveClippingOptions, "clippedCountStddev">, numUpdates: number): number {
  return options.clippedCountStddev ?? numUpdates / 20;
}

/**
 * Geometric clip-norm update. `unclippedCount` = number of updates with ||delta|| <= C;
 * `countNoise` = a sample of N(0, sigma_b^2) (0 without DP). Returns C_{t+1} and the noisy fraction.
 */
export function nextAdaptiveClipNorm(args: { clipNorm: number; unclippedCount: number; numUpdates: number; countNoise: number; targetQuantile: number; learningRate: number }): {
  clipNorm: number;
  noisyUnclippedFraction: number;
} {
  const { clipNorm, unclippedCount, numUpdates, countNoise, targetQuantile: gamma, learningRate: eta } = args;
  if (!(numUpdates > 0)) throw new PrivacyConfigError("numUpdates", "> 0", numUpdates);
  const noisyUnclippedFraction = (unclippedCount + countNoise) / numUpdates;
  return { clipNorm: clipNorm * Math.exp(-eta * (noisyUnclippedFraction - gamma)), noisyUnclippedFraction };
}

/**
 * Noise multiplier left for the update when sigma_b is spent on the clipped count, so that the
 * pair costs as much privacy as one Gaussian mechanism with multiplier z:
 * z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2). Requires z < 2 sigma_b.
 */
export function adaptiveUpdateNoiseMultiplier(noiseMultiplier: number, countStddev: number): number {
  if (!(noiseMultiplier > 0)) throw new PrivacyConfigError("dp.noiseMultiplier", "a number > 0", noiseMultiplier);
  if (noiseMultiplier >= 2 * countStddev) {
    throw new PrivacyConfigError("clipping.clippedCountStddev", `more than noiseMultiplier/2 = ${noiseMultiplier / 2} (z must be < 2*sigma_b; sigma_b defaults to updates/20)`, countStddev);
  }
  return (noiseMultiplier ** -2 - (2 * countStddev) ** -2) ** -0.5;
}

/** Central DP: sigma = z * C / m, the stddev added to each coordinate of the equal-weight mean of m clipped updates. */
export function centralDpNoiseStddev(noiseMultiplier: number, clipNorm: number, numUpdates: number): number {
  if (!(noiseMultiplier >= 0)) throw new PrivacyConfigError("dp.noiseMultiplier", "a number >= 0", noiseMultiplier);
  if (!(clipNorm > 0)) throw new PrivacyConfigError("clipping.clipNorm", "a number > 0", clipNorm);
  if (!(numUpdates >= 1)) throw new PrivacyConfigError("numUpdates", "at least 1", numUpdates);
  return (noiseMultiplier * clipNorm) / numUpdates;
}
