/**
 * The federation's app settings (see local.settings.sample.json). On Azure, and under `flo host`, app
 * settings are environment variables: `appSettings()` is the one place the federation reads the process
 * environment; every other module takes the settings as a parameter.
 */
import type { AppSettings } from "../messaging/connection";
import { MessagingSettingNames } from "../messaging/settings";
import { LocalComputeSettings } from "../compute/local/settings";

export type { AppSettings };

/** App-setting names flo reads (all optional). */
export const Settings = {
  modelContainer: "FLO_MODEL_CONTAINER",
  localJobsDir: LocalComputeSettings.jobsDir,
  localBaseDir: LocalComputeSettings.baseDir,
  localAllowedPaths: LocalComputeSettings.allowedPaths,
  ...MessagingSettingNames,
} as const;

export const DEFAULT_MODEL_CONTAINER = "flo";

/** The process's app settings, read live: a local host started later in the same process changes them. */
export function appSettings(): AppSettings {
  return process.env;
}

/** The blob container federations are stored in. */
export function modelContainerFromSettings(settings: AppSettings): string {
  return settings[Settings.modelContainer] || DEFAULT_MODEL_CONTAINER;
}
