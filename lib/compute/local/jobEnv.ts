/**
 * The environment of local job runners and trainers: an allow-list of the host's variables a
 * program needs to run (search path, home, locale, temp folder, time zone), plus the job's own
 * variables, never the host's settings and secrets (function and master keys, storage and Service
 * Bus connection strings, the managed identity endpoint and header).
 */

/** Host variables every job gets, when the host has them. */
const ALLOWED_NAMES = new Set(["PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TMPDIR", "TEMP", "TMP", "TZ", "SYSTEMROOT", "WINDIR", "COMSPEC", "PATHEXT"]);
const ALLOWED_PREFIX = /^LC_/;
/** Never passed on, even when listed as extra: flo's and the Functions host's settings, identity endpoints, secrets. */
const NEVER_PASSED = /^(FLO_|AzureWebJobs|AZURE_|IDENTITY_|MSI_|ServiceBusConnection|APPSETTING_|WEBSITE_|FUNCTIONS_|APPLICATIONINSIGHTS_)|CONNECTION|SECRET|PASSWORD|TOKEN|KEY/i;

/** A host variable listed as extra job environment is one that must never reach a job. */
export class JobEnvError extends Error {
  override readonly name = "JobEnvError";
}

export interface JobEnvOptions {
  /** The host's environment (app settings included) to pick from. */
  host: Readonly<Record<string, string | undefined>>;
  /** Further host variables to pass on (e.g. PYTHONPATH, CUDA_VISIBLE_DEVICES), by name. */
  extraNames?: readonly string[];
  /** The job's own variables (they win over the host's). */
  job?: Readonly<Record<string, string>>;
}

/** Parses the comma-separated list of extra variable names, refusing any that must never reach a job. */
export function parseExtraJobEnvNames(setting: string, value: string | undefined): string[] {
  const names = (value ?? "")
    .split(",")
    .map((name) => name.trim())
    .filter(Boolean);
  for (const name of names) {
    if (NEVER_PASSED.test(name))
      throw new JobEnvError(`${setting}: expected names of host variables jobs may read, got ${JSON.stringify(name)}, which is a host setting or secret and never reaches a job`);
  }
  return names;
}

/** The allow-listed environment of a job. */
export function jobEnvironment(options: JobEnvOptions): Record<string, string> {
  const extra = new Set(options.extraNames ?? []);
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.host)) {
    if (value === undefined) continue;
    if (ALLOWED_NAMES.has(name) || ALLOWED_PREFIX.test(name) || (extra.has(name) && !NEVER_PASSED.test(name))) env[name] = value;
  }
  return { ...env, ...options.job };
}
