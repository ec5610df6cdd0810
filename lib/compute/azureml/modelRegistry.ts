/**
 * Registering a model as a `custom_model` version in an Azure ML workspace (REST model containers
 * and versions, api-version 2022-10-01) through @azure/arm-machinelearning. A version is registered
 * once per owner key (a tag): registering again finds the version by that tag instead of adding one,
 * so an activity retried or a federation resumed never registers twice.
 */
import { AzureMachineLearningWorkspaces, type ModelVersion } from "@azure/arm-machinelearning";
import type { TokenCredential } from "@azure/core-auth";
import type { TlsSettings } from "@azure/core-rest-pipeline";
import { DATA_SCIENTIST_ROLE, toAzureMlError, type WorkspaceCoordinates } from "./errors";
import { DEFAULT_AZURE_ML_API_VERSION, throttlingWithoutRetryAfterPolicy } from "./compute";
import { azureMlEndpointSettings } from "./settings";

export interface ModelRegistryOptions extends WorkspaceCoordinates {
  credential: TokenCredential;
  endpoint?: string;
  tlsOptions?: TlsSettings;
  apiVersion?: string;
}

export interface ModelVersionRequest {
  name: string;
  /** Folder (or file) URI of the model, e.g. the blob folder holding model.safetensors. */
  modelUri: string;
  description: string;
  /** Must include `ownerTag`: the version of this owner is looked up by it. */
  tags: Record<string, string>;
  properties: Record<string, string>;
  /** The tag whose value identifies who registers (one version per value). */
  ownerTag: string;
}

export interface RegisteredModelVersion {
  /** ARM id of the version. */
  id: string;
  name: string;
  version: string;
  created: boolean;
}

export class AzureMlModelRegistry {
  private readonly client: AzureMachineLearningWorkspaces;
  private readonly coordinates: WorkspaceCoordinates;

  constructor(options: ModelRegistryOptions) {
    this.coordinates = { subscriptionId: options.subscriptionId, resourceGroup: options.resourceGroup, workspace: options.workspace };
    this.client = new AzureMachineLearningWorkspaces(options.credential, options.subscriptionId, {
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      apiVersion: options.apiVersion ?? DEFAULT_AZURE_ML_API_VERSION,
      ...(options.tlsOptions ? { tlsOptions: options.tlsOptions } : {}),
      userAgentOptions: { userAgentPrefix: "flo" },
    });
    this.client.pipeline.addPolicy(throttlingWithoutRetryAfterPolicy({}), { phase: "Retry" });
  }

  /** The version registered for `request.tags[ownerTag]`, registering it first when there is none. */
  async registerOnce(request: ModelVersionRequest): Promise<RegisteredModelVersion> {
    const owner = request.tags[request.ownerTag];
    if (!owner) throw new RangeError(`registerOnce: tags.${request.ownerTag} must name the owner of the version`);
    const { resourceGroup, workspace } = this.coordinates;
    const fail = (operation: string) => (error: unknown) => {
      throw toAzureMlError(error, { coordinates: this.coordinates, operation, requiredRole: DATA_SCIENTIST_ROLE });
    };
    const existing = await this.findByTag(request.name, request.ownerTag, owner).catch(fail(`list versions of model ${request.name}`));
    if (existing) return { ...existing, created: false };
    const container = await this.client.modelContainers
      .createOrUpdate(resourceGroup, workspace, request.name, { properties: { description: `Registered by flo` } })
      .catch(fail(`create model ${request.name}`));
    const version = container.properties.nextVersion ?? String(Number(container.properties.latestVersion ?? "0") + 1);
    const body: ModelVersion = {
      properties: {
        modelType: "custom_model",
        modelUri: request.modelUri,
        description: request.description,
        tags: request.tags,
        properties: request.properties,
        isAnonymous: false,
        isArchived: false,
      },
    };
    const created = await this.client.modelVersions.createOrUpdate(resourceGroup, workspace, request.name, version, body).catch(fail(`register model ${request.name} version ${version}`));
    return { id: created.id ?? "", name: request.name, version: created.name ?? version, created: true };
  }

  private async findByTag(name: string, tag: string, value: string): Promise<Omit<RegisteredModelVersion, "created"> | undefined> {
    const { resourceGroup, workspace } = this.coordinates;
    try {
      for await (const version of this.client.modelVersions.list(resourceGroup, workspace, name, { tags: `${tag}=${value}` })) {
        // The service filters by tag; the check here keeps a lax filter from adopting another's version.
        if (version.properties.tags?.[tag] === value) return { id: version.id ?? "", name, version: version.name ?? "" };
      }
    } catch (error) {
      // No container yet: no version either.
      if ((error as { statusCode?: number }).statusCode === 404) return undefined;
      throw error;
    }
    return undefined;
  }
}

/** A registry for a workspace, with the endpoint and CA settings the azureml compute uses. */
export function modelRegistryFromSettings(workspace: WorkspaceCoordinates, options: { credential: TokenCredential; env: Record<string, string | undefined> }): AzureMlModelRegistry {
  return new AzureMlModelRegistry({ ...workspace, credential: options.credential, ...azureMlEndpointSettings(options.env) });
}
