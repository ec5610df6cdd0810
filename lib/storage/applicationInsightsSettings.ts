/**
 * The one applicationinsights setting flo sets: Azurite's telemetry module requires
 * applicationinsights, which on load patches the process's `require` (diagnostic-channel) unless
 * `APPLICATION_INSIGHTS_NO_DIAGNOSTIC_CHANNEL` is set, a variable it reads once, when it loads.
 */
const NO_PATCHING = "APPLICATION_INSIGHTS_NO_DIAGNOSTIC_CHANNEL";

/** Runs `load` (which requires applicationinsights) with its require patching off; the variable is restored after. */
export function withoutApplicationInsightsPatching<T>(load: () => T): T {
  const previous = process.env[NO_PATCHING];
  process.env[NO_PATCHING] = "1";
  try {
    return load();
  } finally {
    if (previous === undefined) delete process.env[NO_PATCHING];
    else process.env[NO_PATCHING] = previous;
  }
}
