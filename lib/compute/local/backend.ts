/** The `local` compute backend: silo jobs as child processes on the machine running flo. */
import { resolve } from "node:path";
import { z } from "zod";
import type { ComputeBackend } from "../siloCompute";
import { LocalSiloCompute } from "./compute";
import { parseLocalJobEvent } from "./events";
import { parseExtraJobEnvNames } from "./jobEnv";
import { LocalComputeSettings } from "./settings";

export { LocalComputeSettings };
import { parseAllowedRoots } from "../../storage/localPaths";

/** The value of FLO_LOCAL_COMPUTE that enables local silos. */
export const LOCAL_COMPUTE_ENABLED = "enabled";

/** A compute type this host does not run unless a setting opts in. */
export class ComputeDisabledError extends Error {
  override readonly name = "ComputeDisabledError";
  constructor(
    readonly computeType: string,
    readonly setting: string,
    readonly enablingValue: string,
  ) {
    super(
      `expected a compute type this host runs, got ${JSON.stringify(computeType)}: local compute runs the spec's command as this host's user and is disabled here (set ${setting}=${enablingValue} only on a machine whose API callers may run code on it)`,
    );
  }
}

export function localComputeEnabled(env: Readonly<Record<string, string | undefined>>): boolean {
  return env[LocalComputeSettings.enabled]?.trim().toLowerCase() === LOCAL_COMPUTE_ENABLED;
}

const specSchema = z
  .strictObject({
    type: z.literal("local"),
    keyFile: z
      .string()
      .min(1)
      .optional()
      .meta({ description: "The silo's secret key file for secure aggregation (`flo silo keygen --out`), a local path. Local mode is for testing: the host's user can read every silo's key." }),
  })
  .meta({ description: "A child process on the machine running flo (embedded runtime)." });

export const localBackend: ComputeBackend<typeof specSchema> = {
  specSchema,
  // One LocalSiloCompute (one jobs folder and monitor) serves every local silo.
  instanceKey: () => "local",
  create: (config, context) => {
    if (!localComputeEnabled(context.env)) throw new ComputeDisabledError(config.type, LocalComputeSettings.enabled, LOCAL_COMPUTE_ENABLED);
    return new LocalSiloCompute({
      root: context.env[LocalComputeSettings.jobsDir] || resolve(".flo", "jobs"),
      baseDir: context.env[LocalComputeSettings.baseDir] || process.cwd(),
      allowedRoots: parseAllowedRoots(context.env[LocalComputeSettings.allowedPaths], LocalComputeSettings.allowedPaths),
      env: context.env,
      extraJobEnv: parseExtraJobEnvNames(LocalComputeSettings.jobEnv, context.env[LocalComputeSettings.jobEnv]),
      jobsSecret: context.env[LocalComputeSettings.jobsSecret] || undefined,
      transfer: context.transfer,
      events: { publish: (event, options) => context.publishJobEvent(event, options) },
    });
  },
  parseEvent: parseLocalJobEvent,
};
