/**
 * The preflight of one azureml silo (run by `flo check` and `POST /api/federations?dryRun=true`):
 * what the orchestrator's identity will need at submission, checked before anything is submitted.
 * Every failure carries the fix, as "grant X on Y" or the resource to create.
 */
import { AzureMlAssetNotFoundError, type AssetKind } from "./assets";
import { CODE_ASSET_NAME, isCodeReference, uploadedCodeDigest, type CodeFolder } from "./code";
import type { AzureMlSiloCompute } from "./compute";
import { AzureMlAuthorizationError, DATA_SCIENTIST_ROLE, STORAGE_BLOB_DATA_READER_ROLE } from "./errors";
import { parseDatastoreUri } from "./outputs";

export type PreflightResult = "pass" | "fail" | "skipped";

export interface PreflightRow {
  silo: string;
  check: string;
  result: PreflightResult;
  /** What was found (pass), what is wrong (fail) or why it was not checked (skipped). */
  detail: string;
  /** How to fix a failure. */
  fix?: string;
}

export interface AzureMlPreflightInput {
  silo: string;
  /** Index of the silo in the spec, for field paths in fixes. */
  index: number;
  compute: AzureMlSiloCompute;
  /** The container the orchestrator was granted (spec's exchangeContainer), when given. */
  exchangeContainer?: string;
  environment?: string;
  code?: string;
  /** The local `code` folder, hashed by the client that will upload it (`flo check`); unknown to the deployed app. */
  codeFolder?: CodeFolder;
  /** Typed data inputs by name (their `path`s). */
  dataInputs: Record<string, { path: string }>;
  /** Secure aggregation: the silo's secret key location (its jobs run python -m flo_secagg). */
  secureAggregation?: { secretKey?: string };
  signal?: AbortSignal;
}

const statusOf = (error: unknown) => (error as { statusCode?: number }).statusCode;
const messageOf = (error: unknown) => (error instanceof Error ? error.message : String(error));

/** Runs every check of one silo; never throws for a failed check (it becomes a row). */
export async function preflightAzureMlSilo(input: AzureMlPreflightInput): Promise<PreflightRow[]> {
  const { silo, index, compute, signal } = input;
  const { subscriptionId, resourceGroup, workspace } = compute.workspaceCoordinates;
  const at = `silos[${index}].compute`;
  const grantDataScientist = `grant "${DATA_SCIENTIST_ROLE}" on ${compute.workspaceId} to the orchestrator's identity`;
  const rows: PreflightRow[] = [];
  const row = (check: string, result: PreflightResult, detail: string, fix?: string) => rows.push({ silo, check, result, detail, ...(fix ? { fix } : {}) });
  const failure = (check: string, error: unknown, notFoundFix: string) => {
    const status = statusOf(error);
    if (error instanceof AzureMlAuthorizationError || status === 401 || status === 403) row(check, "fail", messageOf(error), grantDataScientist);
    else if (status === 404 || error instanceof AzureMlAssetNotFoundError) row(check, "fail", messageOf(error), notFoundFix);
    else row(check, "fail", messageOf(error), "retry later; if it persists, check the endpoint settings (FLO_ARM_ENDPOINT)");
  };

  try {
    await compute.client.workspaces.get(resourceGroup, workspace, { abortSignal: signal });
    row("workspace", "pass", `${workspace} (resource group ${resourceGroup}, subscription ${subscriptionId})`);
  } catch (error) {
    failure("workspace", error, `create workspace ${workspace} in resource group ${resourceGroup}, or fix ${at}.workspace/resourceGroup/subscriptionId`);
    // Nothing else can be read without the workspace.
    return rows;
  }

  const computeName = compute.computeId.split("/").pop()!;
  try {
    const resource = await compute.client.computeOperations.get(resourceGroup, workspace, computeName, { abortSignal: signal });
    const properties = resource.properties as { computeType?: string; provisioningState?: string; properties?: { state?: string; scaleSettings?: { maxNodeCount?: number } } } | undefined;
    const type = properties?.computeType ?? "unknown";
    const state = properties?.provisioningState ?? "unknown";
    const maxNodes = properties?.properties?.scaleSettings?.maxNodeCount;
    const instanceState = properties?.properties?.state;
    if (state !== "Succeeded") {
      row("compute", "fail", `${computeName} is ${type} in provisioning state ${state}`, `wait for ${computeName} to finish provisioning, or recreate it`);
    } else if (type === "AmlCompute" && (maxNodes ?? 0) < 1) {
      row("compute", "fail", `${computeName} cannot scale: max nodes ${maxNodes ?? "unset"}`, `set ${computeName}'s maximum node count to at least 1 (az ml compute update --max-instances)`);
    } else if (type === "ComputeInstance" && instanceState !== "Running") {
      row("compute", "fail", `${computeName} is a compute instance in state ${instanceState ?? "unknown"}`, `start ${computeName} (az ml compute start)`);
    } else {
      row("compute", "pass", `${computeName}: ${type}${maxNodes === undefined ? "" : `, up to ${maxNodes} nodes`}`);
    }
  } catch (error) {
    failure("compute", error, `create compute cluster ${computeName} in workspace ${workspace} (az ml compute create --type amlcompute), or fix ${at}.computeName`);
  }

  const asset = async (check: string, kind: AssetKind, reference: string, field: string, what: string): Promise<string | undefined> => {
    try {
      const id = await compute.resolveAsset(kind, reference, { field, silo, signal });
      row(check, "pass", `${reference} -> ${id}`);
      return id;
    } catch (error) {
      failure(check, error, `register ${what} in workspace ${workspace} (az ml ${kind === "codes" ? "code" : kind === "data" ? "data" : "environment"} create), or fix ${field}`);
    }
  };
  let environmentId: string | undefined;
  if (input.environment) {
    environmentId = await asset("environment", "environments", input.environment, "training.environment", `the environment ${input.environment}`);
  } else row("environment", "fail", "no training.environment", "set training.environment to an Azure ML environment (azureml:<name>:<version> or azureml:<name>@latest)");
  if (input.code !== undefined && uploadedCodeDigest(input.code)) {
    // Registering is a write: the preflight only reports what submission will register.
    row("code", "pass", `${input.code}: registered at submission as ${CODE_ASSET_NAME}:${uploadedCodeDigest(input.code)!.slice(0, 16)}`);
  } else if (input.code !== undefined && !isCodeReference(input.code) && input.codeFolder) {
    row(
      "code",
      "pass",
      `${input.code}: ${input.codeFolder.files.length} file(s), sha256 ${input.codeFolder.digest}; flo submit uploads it, submission registers ${CODE_ASSET_NAME}:${input.codeFolder.digest.slice(0, 16)}`,
    );
  } else if (input.code !== undefined && !isCodeReference(input.code)) {
    row(
      "code",
      "fail",
      `${input.code} is a local folder, which the orchestrator cannot read`,
      "submit with `flo submit <spec> --api <url>` (it uploads the folder and sets training.uploadedCode), or register it (az ml code create) and set training.code to azureml:<name>:<version>",
    );
  } else if (input.code !== undefined) {
    await asset("code", "codes", input.code, "training.code", `the code asset ${input.code}`);
  }
  if (input.secureAggregation) await secureAggregationRows({ ...input, environmentId, row });
  for (const [name, data] of Object.entries(input.dataInputs)) {
    if (data.path.startsWith("azureml:") && !data.path.startsWith("azureml://")) {
      await asset(`input ${name}`, "data", data.path, `silos[${index}].inputs.${name}.path`, `the data asset ${data.path}`);
    } else if (data.path.startsWith("azureml://")) {
      try {
        parseDatastoreUri(data.path);
        row(`input ${name}`, "pass", `${data.path} (read by the job's identity, not checked here)`);
      } catch (error) {
        row(`input ${name}`, "fail", messageOf(error), `fix silos[${index}].inputs.${name}.path`);
      }
    } else {
      row(`input ${name}`, "skipped", `${data.path}: read by the job's identity, not by the orchestrator`);
    }
  }

  const datastore = compute.exchangeDatastore;
  let readable = false;
  try {
    const location = await compute.probeExchangeRead({ signal });
    readable = true;
    if (input.exchangeContainer && location.containerName !== input.exchangeContainer) {
      row(
        "exchange datastore",
        "fail",
        `datastore ${datastore} points at container ${location.containerName} of account ${location.accountName}, not at ${input.exchangeContainer}`,
        `point datastore ${datastore} at container ${input.exchangeContainer} (the one the orchestrator was granted), or fix ${at}.exchangeContainer`,
      );
    } else {
      row("exchange datastore", "pass", `${datastore} -> ${location.accountName}/${location.containerName}`);
    }
    row("exchange read", "pass", `the orchestrator can list ${location.folderUrl}`);
  } catch (error) {
    if (error instanceof AzureMlAuthorizationError && error.requiredRole === STORAGE_BLOB_DATA_READER_ROLE) {
      row("exchange datastore", "pass", `${datastore} resolved`);
      row("exchange read", "fail", error.message, `grant "${STORAGE_BLOB_DATA_READER_ROLE}" on ${error.scope ?? "the exchange container"} to the orchestrator's identity`);
    } else {
      failure("exchange datastore", error, `register datastore ${datastore} in workspace ${workspace} for the exchange container (az ml datastore create), or fix ${at}.exchangeDatastore`);
    }
  }
  if (!readable && !rows.some((r) => r.check === "exchange read")) row("exchange read", "skipped", "the exchange datastore could not be resolved");

  row(
    "event subscription",
    "skipped",
    "the orchestrator holds no read role on the silo's Event Grid system topic (only the silo admin and the orchestrator deployer do); " +
      `check it with: az eventgrid system-topic event-subscription list -g ${resourceGroup} --system-topic-name <topic>`,
  );
  return rows;
}

/** The Python packages `python -m flo_secagg` imports in the silo's jobs. */
export const SECURE_AGGREGATION_PYTHON_PACKAGES = ["numpy", "cryptography"] as const;

/**
 * Secure aggregation's needs in the silo: the environment's Python must import numpy and
 * cryptography (read from the environment version's conda file when it has one; an image-only
 * environment cannot be inspected), and the secret key's datastore must exist in the workspace
 * (the key file itself is the silo's: the orchestrator never reads it).
 */
async function secureAggregationRows(input: AzureMlPreflightInput & { environmentId?: string; row: (check: string, result: PreflightResult, detail: string, fix?: string) => void }): Promise<void> {
  const { compute, signal, row, environmentId } = input;
  const { resourceGroup, workspace } = compute.workspaceCoordinates;
  const needs = SECURE_AGGREGATION_PYTHON_PACKAGES.join(" and ");
  const check = "secure aggregation environment";
  const fix = `add ${needs} to the environment's conda file (pip: numpy, cryptography) and register a new version`;
  const version = environmentId ? /\/environments\/([^/]+)\/versions\/([^/]+)$/.exec(environmentId) : null;
  if (!version) {
    row(check, "skipped", `the environment could not be resolved; it must provide python with ${needs} (python -m flo_secagg masks in the job)`);
  } else {
    try {
      const environment = await compute.client.environmentVersions.get(resourceGroup, workspace, version[1], version[2], { abortSignal: signal });
      const properties = environment.properties as { condaFile?: string; image?: string };
      if (typeof properties.condaFile !== "string") {
        row(check, "skipped", `${version[1]}:${version[2]} is built from image ${properties.image ?? "(unknown)"} without a conda file: it must provide python with ${needs} (not inspected)`);
      } else {
        const missing = SECURE_AGGREGATION_PYTHON_PACKAGES.filter((name) => !new RegExp(`(^|[\\s'"-])${name}([\\s'"=<>~!]|$)`, "m").test(properties.condaFile!));
        if (missing.length === 0) row(check, "pass", `${version[1]}:${version[2]}'s conda file lists ${needs}`);
        else row(check, "fail", `${version[1]}:${version[2]}'s conda file lacks ${missing.join(" and ")}, which python -m flo_secagg needs`, fix);
      }
    } catch (error) {
      row(check, "skipped", `${version[1]}:${version[2]} could not be read (${messageOf(error)}); it must provide python with ${needs}`);
    }
  }
  const keyDatastore = input.secureAggregation?.secretKey ? /^azureml:\/\/datastores\/([^/]+)\//.exec(input.secureAggregation.secretKey)?.[1] : undefined;
  if (!keyDatastore) return;
  try {
    await compute.client.datastores.get(resourceGroup, workspace, keyDatastore, { abortSignal: signal });
    row("secret key datastore", "pass", `${keyDatastore} exists (the key file and the reveal records are the silo's: not read here)`);
  } catch (error) {
    if (statusOf(error) === 404) {
      row(
        "secret key datastore",
        "fail",
        `no datastore ${keyDatastore} in workspace ${workspace}`,
        `register a datastore private to the silo as ${keyDatastore} (az ml datastore create), or fix silos[${input.index}].compute.secretKey`,
      );
    } else row("secret key datastore", "skipped", `${keyDatastore} could not be read: ${messageOf(error)}`);
  }
}

/** The rows as a fixed-width text table, one line per silo and check, fixes indented below failures. */
export function formatPreflightTable(rows: readonly PreflightRow[]): string {
  const header = { silo: "SILO", check: "CHECK", result: "RESULT", detail: "DETAIL" };
  const siloWidth = Math.max(header.silo.length, ...rows.map((r) => r.silo.length));
  const checkWidth = Math.max(header.check.length, ...rows.map((r) => r.check.length));
  const line = (silo: string, check: string, result: string, detail: string) => `${silo.padEnd(siloWidth)}  ${check.padEnd(checkWidth)}  ${result.padEnd(7)}  ${detail}`;
  const lines = [line(header.silo, header.check, header.result, header.detail)];
  for (const r of rows) {
    lines.push(line(r.silo, r.check, r.result.toUpperCase(), r.detail));
    if (r.fix) lines.push(`${" ".repeat(siloWidth + checkWidth + 13)}fix: ${r.fix}`);
  }
  return lines.join("\n");
}
