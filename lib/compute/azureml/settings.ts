/**
 * Building the azureml compute for one silo from its spec entry plus app settings. The settings only
 * redirect endpoints (a sovereign cloud, or a loopback fake in tests); identities come from
 * lib/azure/credentials.ts and nothing secret is read here.
 */
import { readFileSync } from "node:fs";
import type { TokenCredential } from "@azure/core-auth";
import type { AnonymousCredential, StorageSharedKeyCredential } from "@azure/storage-blob";
import { AzureMlConfigError } from "./errors";
import { AzureMlSiloCompute, type AzureMlSiloComputeOptions } from "./compute";

export const AzureMlSettings = {
  /** ARM endpoint, default https://management.azure.com. */
  armEndpoint: "FLO_ARM_ENDPOINT",
  /** PEM file of an extra CA trusted for ARM and datastore blob calls (a private CA or a test fake). */
  caFile: "FLO_ARM_CA_FILE",
  /** Blob service URL used for every datastore account instead of https://<account>.blob.<suffix> (tests: Azurite). */
  blobEndpoint: "FLO_AZUREML_BLOB_ENDPOINT",
  /** Code asset for every silo job (`azureml:<name>:<version>` resolves in each silo's workspace). */
  codeId: "FLO_AZUREML_CODE_ID",
  /** ARM api-version override. */
  apiVersion: "FLO_AZUREML_API_VERSION",
} as const;

/** The spec's `compute` block of an azureml silo. */
export interface AzureMlComputeSpec {
  subscriptionId: string;
  resourceGroup: string;
  workspace: string;
  computeName: string;
  exchangeDatastore: string;
  /** The container the orchestrator was granted (checked by `flo check`, not needed to run jobs). */
  exchangeContainer?: string;
}

export interface AzureMlFromSettingsOptions {
  credential: TokenCredential;
  /** Credential for reading silo outputs; default `credential`. */
  blobCredential?: TokenCredential | StorageSharedKeyCredential | AnonymousCredential;
  env?: Record<string, string | undefined>;
  /** Anything else to set or override (retry, identity, instance type, ...). */
  overrides?: Partial<AzureMlSiloComputeOptions>;
}

function httpsUrl(env: Record<string, string | undefined>, setting: string, allowLoopbackHttp: boolean): string | undefined {
  const value = env[setting]?.trim();
  if (!value) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new AzureMlConfigError(setting, "an absolute URL", JSON.stringify(value));
  }
  const loopback = ["127.0.0.1", "localhost", "[::1]"].includes(url.hostname);
  if (url.protocol !== "https:" && !(allowLoopbackHttp && loopback && url.protocol === "http:")) {
    throw new AzureMlConfigError(setting, allowLoopbackHttp ? "an https:// URL (http:// only on loopback)" : "an https:// URL", JSON.stringify(value));
  }
  return value.replace(/\/+$/, "");
}

/** The ARM endpoint, its extra CA and api-version from the settings (every Azure ML client of flo uses them). */
export function azureMlEndpointSettings(env: Record<string, string | undefined>): { endpoint?: string; tlsOptions?: { ca: string }; apiVersion?: string } {
  const endpoint = httpsUrl(env, AzureMlSettings.armEndpoint, false);
  const caPath = env[AzureMlSettings.caFile]?.trim();
  let ca: string | undefined;
  if (caPath) {
    try {
      ca = readFileSync(caPath, "utf8");
    } catch (error) {
      throw new AzureMlConfigError(AzureMlSettings.caFile, "a readable PEM file", `${JSON.stringify(caPath)} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
    }
    if (!ca.includes("-----BEGIN CERTIFICATE-----")) {
      throw new AzureMlConfigError(AzureMlSettings.caFile, "a PEM certificate", `${JSON.stringify(caPath)} without a BEGIN CERTIFICATE block`);
    }
  }
  const apiVersion = env[AzureMlSettings.apiVersion]?.trim() || undefined;
  return { ...(endpoint ? { endpoint } : {}), ...(ca ? { tlsOptions: { ca } } : {}), ...(apiVersion ? { apiVersion } : {}) };
}

export function azureMlSiloComputeFromSettings(compute: AzureMlComputeSpec, options: AzureMlFromSettingsOptions): AzureMlSiloCompute {
  const env = options.env ?? process.env;
  const { endpoint, tlsOptions, apiVersion } = azureMlEndpointSettings(env);
  const blobEndpoint = httpsUrl(env, AzureMlSettings.blobEndpoint, true);
  const codeId = env[AzureMlSettings.codeId]?.trim() || undefined;
  const { exchangeContainer: _checkedByPreflight, ...placement } = compute;
  return new AzureMlSiloCompute({
    ...placement,
    credential: options.credential,
    ...(endpoint ? { endpoint } : {}),
    ...(tlsOptions ? { tlsOptions } : {}),
    ...(codeId ? { codeId } : {}),
    ...(apiVersion ? { apiVersion } : {}),
    blob: {
      credential: options.blobCredential ?? options.credential,
      ...(blobEndpoint ? { serviceUrlFor: () => blobEndpoint } : {}),
      ...(tlsOptions ? { tlsOptions } : {}),
    },
    ...options.overrides,
  });
}
