/**
 * `flo check <spec> [--offline]`: the preflight a user runs before submitting a federation. Validates
 * the spec; then (unless --offline) checks each azureml silo's workspace, compute, environment, code
 * and data assets, exchange datastore and the orchestrator's read access to it, with the identity
 * flo's settings select (FLO_AZURE_CREDENTIAL). Prints one row per silo and check, with the fix of
 * each failure; exits 1 on any failure.
 */
import { resolve } from "node:path";
import type { Command } from "commander";
import type { TokenCredential } from "@azure/core-auth";
import type { CommandIO } from "./aggregate";
import { createAzureCredential, credentialSettingsFromEnv } from "../azure/credentials";
import { azureMlSiloComputeFromSettings } from "../compute/azureml/settings";
import { hashCodeFolder, isCodeReference, type CodeFolder } from "../compute/azureml/code";
import { AzureMlConfigError } from "../compute/azureml/errors";
import { formatPreflightTable } from "../compute/azureml/preflight";
import { preflightSpec } from "../federation/preflight";
import { loadSpecFile, SpecError } from "../spec";

export interface CheckOptions {
  spec: string;
  offline?: boolean;
  /** Folder a relative `training.code` resolves against (as `flo submit` does); default the current directory. */
  baseDir?: string;
}

export interface CheckDependencies {
  env?: Record<string, string | undefined>;
  /** The orchestrator's identity; default from the settings (created only when a silo is checked online). */
  credential?: () => TokenCredential;
}

/** Returns the exit code: 0 when every check passed (or was skipped), 1 otherwise. */
export async function runCheck(options: CheckOptions, io: CommandIO, dependencies: CheckDependencies = {}): Promise<number> {
  const env = dependencies.env ?? process.env;
  let spec;
  try {
    spec = await loadSpecFile(options.spec);
  } catch (error) {
    if (error instanceof SpecError) {
      io.err(error.message);
      return 1;
    }
    throw error;
  }
  // A local code folder is what `flo submit` would upload: hashed here (no network), so a missing,
  // empty or oversized folder fails now.
  let codeFolder: CodeFolder | undefined;
  const code = spec.training.code;
  if (code !== undefined && spec.training.uploadedCode === undefined && !isCodeReference(code) && spec.silos.some((silo) => silo.compute.type === "azureml")) {
    try {
      codeFolder = hashCodeFolder(resolve(options.baseDir ?? process.cwd(), code));
    } catch (error) {
      if (!(error instanceof AzureMlConfigError)) throw error;
      io.err(error.message);
      return 1;
    }
  }
  let credential: TokenCredential | undefined;
  const identity = () => (credential ??= dependencies.credential ? dependencies.credential() : createAzureCredential(credentialSettingsFromEnv(env)));
  const result = await preflightSpec(spec, {
    offline: options.offline,
    codeFolder,
    computeFor: (silo) => {
      if (silo.compute.type !== "azureml") throw new Error(`flo check: silo ${silo.name} has no remote compute to check`);
      return azureMlSiloComputeFromSettings(silo.compute, { credential: identity(), env, overrides: { retryOptions: { maxRetries: 1 } } });
    },
  });
  io.out(formatPreflightTable(result.rows));
  const failed = result.rows.filter((row) => row.result === "fail").length;
  io.out(failed === 0 ? "flo check: all checks passed" : `flo check: ${failed} check(s) failed`);
  return failed === 0 ? 0 : 1;
}

export function register(check: Command): void {
  check
    .argument("<spec>", "federation spec file (YAML or JSON)")
    .option("--offline", "validate the spec only; contact no Azure service")
    .action(async (specPath: string, opts: { offline?: boolean }) => {
      process.exitCode = await runCheck({ spec: specPath, offline: opts.offline }, { out: (l) => console.log(l), err: (l) => console.error(l) });
    });
}
