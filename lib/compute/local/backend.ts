/** The `local` compute backend: silo jobs as child processes on the machine running flo. */
import { tmpdir } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import type { ComputeBackend } from "../siloCompute";
import { LocalSiloCompute } from "./compute";
import { parseLocalJobEvent } from "./events";

/** App settings of the local backend (all optional). */
export const LocalComputeSettings = {
  /** Folder holding one sub-folder per job (default `<tmp>/flo-jobs`). */
  jobsDir: "FLO_LOCAL_JOBS_DIR",
  /** Folder relative data/code paths in specs resolve against (default the process cwd). */
  baseDir: "FLO_LOCAL_BASE_DIR",
} as const;

const specSchema = z.strictObject({ type: z.literal("local") }).meta({ description: "A child process on the machine running flo (embedded runtime)." });

export const localBackend: ComputeBackend<typeof specSchema> = {
  specSchema,
  // One LocalSiloCompute (one jobs folder and monitor) serves every local silo.
  instanceKey: () => "local",
  create: (_config, context) =>
    new LocalSiloCompute({
      root: context.env[LocalComputeSettings.jobsDir] || join(tmpdir(), "flo-jobs"),
      baseDir: context.env[LocalComputeSettings.baseDir] || process.cwd(),
      transfer: context.transfer,
      events: { publish: (event, options) => context.publishJobEvent(event, options) },
    }),
  parseEvent: parseLocalJobEvent,
};
