/**
 * The two wrappers any compatible strategy definition accepts, as the ONE schema of their options
 * (the spec and `createStrategy` both parse with it, so they cannot disagree):
 * - `clipping`: each update's delta w - x is clipped to L2 norm C over the whole model before the
 *   rule runs (fixed C, or adaptive C as in Andrew et al. 2021, "Differentially Private Learning
 *   with Adaptive Clipping");
 * - `dp`: central differential privacy, Gaussian noise of stddev z * C / m on the equal-weight mean
 *   of m clipped updates, with an RDP accountant. Needs clipping (the noise is calibrated to C) and
 *   a definition that is not `robust` (the sensitivity C/m holds for a mean only).
 * flo samples a fixed number of silos per round, not each silo independently with probability q,
 * so the accountant composes full-participation steps (no subsampling amplification is claimed).
 */
import { z } from "zod";

const positive = () => z.number().gt(0);

const fixedClipping = z.strictObject({
  mode: z.literal("fixed"),
  norm: positive().meta({ description: "Clip each update's L2 norm (all tensors concatenated) to this value." }),
});

const adaptiveClipping = z.strictObject({
  mode: z.literal("adaptive"),
  initialNorm: positive().default(0.1).meta({ description: "Clip norm of the first round (C_0)." }),
  targetQuantile: z.number().gt(0).lt(1).default(0.5).meta({ description: "Fraction of updates the clip norm aims to leave unclipped." }),
  learningRate: positive().default(0.2).meta({ description: "Geometric learning rate of the clip norm." }),
  clippedCountStddev: positive().optional().meta({ description: "Noise stddev on the unclipped count when dp is on; default: sampled silos / 20." }),
});

export const clippingSchema = z.discriminatedUnion("mode", [fixedClipping, adaptiveClipping]).meta({ description: "Update norm clipping around any strategy (Andrew et al. 2021 for adaptive)." });

export const dpSchema = z
  .strictObject({
    noiseMultiplier: positive().meta({ description: "z: noise stddev = z x clip norm / silos aggregated." }),
    delta: z.number().gt(0).lt(1).default(1e-5).meta({ description: "Target delta of the reported (epsilon, delta)." }),
  })
  .meta({ description: "Central differential privacy (Gaussian noise, sigma = noiseMultiplier * clip / silos). Requires clipping." });

export type ClippingConfig = z.output<typeof clippingSchema>;
export type AdaptiveClippingConfig = Extract<ClippingConfig, { mode: "adaptive" }>;
export type DpConfig = z.output<typeof dpSchema>;
