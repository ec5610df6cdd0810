/**
 * Azure ML asset references (environments, code, data) as users write them, resolved to the version
 * ARM ids the REST job body needs. Azure ML's CLI and SDK resolve `name@latest` client-side: the REST
 * API (2022-10-01) takes only a version's ARM id in `environmentId`/`codeId`. Labels other than
 * `latest` have no lookup in that API version (the versions list takes only `$orderBy`, `$top`,
 * `$skip` and `listViewType`), so they are refused with that reason.
 */
import type { AzureMachineLearningWorkspaces } from "@azure/arm-machinelearning";
import { AzureMlConfigError, AzureMlError, DATA_SCIENTIST_ROLE, toAzureMlError, type WorkspaceCoordinates } from "./errors";

export type AssetKind = "codes" | "environments" | "data";

const ASSET_NAME = "[A-Za-z0-9][A-Za-z0-9_.-]{0,254}";
const VERSIONED = new RegExp(`^azureml:(${ASSET_NAME}):(${ASSET_NAME})$`);
const LABELLED = new RegExp(`^azureml:(${ASSET_NAME})@(${ASSET_NAME})$`);
/** A version's ARM id: `/subscriptions/<s>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>/<kind>/<name>/versions/<v>`. */
const VERSION_ARM_ID =
  /^\/subscriptions\/([^/]+)\/resourceGroups\/([^/]+)\/providers\/Microsoft\.MachineLearningServices\/workspaces\/([^/]+)\/(codes|environments|data)\/([^/@]+)\/versions\/([^/@]+)$/i;

/** What a reference says before anything is looked up. */
export type ParsedAssetReference =
  /** A version of this workspace's asset: exists only if the workspace has it (checked by resolution). */
  | { form: "version"; name: string; version: string; id: string }
  /** `name@latest`: the container's latestVersion. */
  | { form: "latest"; name: string }
  /** Another workspace's asset or a registry URI: passed as is (the job's identity must reach it). */
  | { form: "external"; id: string };

const REFERENCE_FORMS = "azureml:<name>:<version>, azureml:<name>@latest, azureml:/subscriptions/.../versions/<version>, a version's ARM id, or an azureml://registries/... URI";

/** Parses an asset reference against the silo's workspace; throws AzureMlConfigError naming `field`. */
export function parseAssetReference(kind: AssetKind, reference: string, workspaceId: string, field: string): ParsedAssetReference {
  if (typeof reference !== "string" || reference.trim() === "") throw new AzureMlConfigError(field, REFERENCE_FORMS, JSON.stringify(reference));
  if (reference.startsWith("azureml://registries/")) return { form: "external", id: reference };
  // `azureml:/subscriptions/...` is Azure ML YAML's long form of an ARM id.
  const armId = reference.startsWith("azureml:/subscriptions/") ? reference.slice("azureml:".length) : reference;
  if (armId.startsWith("/subscriptions/")) {
    const match = VERSION_ARM_ID.exec(armId);
    if (!match || match[4].toLowerCase() !== kind.toLowerCase()) {
      throw new AzureMlConfigError(field, `the ARM id of a ${kind} version (…/workspaces/<ws>/${kind}/<name>/versions/<version>)`, JSON.stringify(reference));
    }
    if (armId.toLowerCase().startsWith(`${workspaceId.toLowerCase()}/`)) return { form: "version", name: match[5], version: match[6], id: armId };
    return { form: "external", id: armId };
  }
  const versioned = VERSIONED.exec(reference);
  if (versioned) return { form: "version", name: versioned[1], version: versioned[2], id: `${workspaceId}/${kind}/${versioned[1]}/versions/${versioned[2]}` };
  const labelled = LABELLED.exec(reference);
  if (labelled) {
    if (labelled[2] === "latest") return { form: "latest", name: labelled[1] };
    throw new AzureMlConfigError(
      field,
      `azureml:<name>@latest or a pinned version (the Azure ML REST API 2022-10-01 has no lookup for label ${JSON.stringify(labelled[2])})`,
      JSON.stringify(reference),
    );
  }
  throw new AzureMlConfigError(field, REFERENCE_FORMS, JSON.stringify(reference));
}

const KIND_WORD: Record<AssetKind, string> = { codes: "code asset", environments: "environment", data: "data asset" };

/** The referenced asset (or version) does not exist in the silo's workspace. */
export class AzureMlAssetNotFoundError extends AzureMlError {
  override name = "AzureMlAssetNotFoundError";
  constructor(
    readonly silo: string,
    readonly coordinates: WorkspaceCoordinates,
    readonly kind: AssetKind,
    readonly reference: string,
    readonly detail: string,
  ) {
    super(
      `Silo ${silo}: ${KIND_WORD[kind]} ${reference} does not exist in Azure ML workspace ${coordinates.workspace} ` +
        `(resource group ${coordinates.resourceGroup}, subscription ${coordinates.subscriptionId}): ${detail}`,
    );
  }
}

export interface ResolveAssetOptions {
  kind: AssetKind;
  reference: string;
  /** Spec field named in errors, e.g. `training.environment`. */
  field: string;
  silo: string;
  signal?: AbortSignal;
}

function isNotFound(error: unknown): boolean {
  return (error as { statusCode?: number }).statusCode === 404;
}

/**
 * Resolves a reference to the ARM id of an existing version in the silo's workspace (or passes an
 * external id through). Throws AzureMlAssetNotFoundError when the container or version is missing.
 */
export async function resolveAssetId(client: AzureMachineLearningWorkspaces, coordinates: WorkspaceCoordinates, options: ResolveAssetOptions): Promise<string> {
  const { kind, reference, field, silo, signal } = options;
  const { subscriptionId, resourceGroup, workspace } = coordinates;
  const workspaceId = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${workspace}`;
  const parsed = parseAssetReference(kind, reference, workspaceId, field);
  if (parsed.form === "external") return parsed.id;
  const operations = {
    codes: { containers: client.codeContainers, versions: client.codeVersions },
    environments: { containers: client.environmentContainers, versions: client.environmentVersions },
    data: { containers: client.dataContainers, versions: client.dataVersions },
  }[kind];
  const failure = (error: unknown, operation: string) => {
    if (isNotFound(error)) return undefined;
    return toAzureMlError(error, { coordinates, operation, requiredRole: DATA_SCIENTIST_ROLE });
  };
  let version: string;
  if (parsed.form === "latest") {
    let latest: string | undefined;
    try {
      const container = await operations.containers.get(resourceGroup, workspace, parsed.name, { abortSignal: signal });
      latest = container.properties.latestVersion;
    } catch (error) {
      const other = failure(error, `resolve ${field}`);
      if (other) throw other;
      throw new AzureMlAssetNotFoundError(silo, coordinates, kind, reference, `no ${KIND_WORD[kind]} named ${parsed.name}`);
    }
    if (!latest) throw new AzureMlAssetNotFoundError(silo, coordinates, kind, reference, `${parsed.name} has no versions`);
    version = latest;
  } else {
    version = parsed.version;
  }
  try {
    await operations.versions.get(resourceGroup, workspace, parsed.name, version, { abortSignal: signal });
  } catch (error) {
    const other = failure(error, `resolve ${field}`);
    if (other) throw other;
    throw new AzureMlAssetNotFoundError(silo, coordinates, kind, reference, `no version ${version} of ${parsed.name}`);
  }
  return `${workspaceId}/${kind}/${parsed.name}/versions/${version}`;
}
