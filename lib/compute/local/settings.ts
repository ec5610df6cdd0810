/**
 * Setting names of the local backend, in a module of their own (no dependencies) so that the
 * federation's settings can use the same names without loading the backend.
 */
export const LocalComputeSettings = {
  /**
   * Must be `enabled` for this host to run local silos: a local job runs the spec's command as this
   * host's user, so an API caller's spec would run code on the orchestrator. `flo run`, the sample
   * local settings and the test harnesses set it; the deployed app never does.
   */
  enabled: "FLO_LOCAL_COMPUTE",
  /** Folder holding one sub-folder per job (default `.flo/jobs` under the process cwd, `flo host`'s default data folder). */
  jobsDir: "FLO_LOCAL_JOBS_DIR",
  /** Folder relative data/code paths in specs resolve against (default the process cwd). */
  baseDir: "FLO_LOCAL_BASE_DIR",
  /** Secret binding job folders to this host (default: generated once, kept in the jobs folder). */
  jobsSecret: "FLO_LOCAL_JOBS_SECRET",
  /** Absolute folders (comma-separated) outside the base folder that specs may name as code or input paths. */
  allowedPaths: "FLO_LOCAL_ALLOWED_PATHS",
  /** Comma-separated names of further host variables jobs get (e.g. PYTHONPATH); never flo's settings or secrets. */
  jobEnv: "FLO_LOCAL_JOB_ENV",
} as const;
