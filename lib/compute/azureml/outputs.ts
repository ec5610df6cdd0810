/**
 * Reading a silo job's `model_update` folder: an `azureml://` datastore URI is resolved through the
 * silo workspace's datastore to a blob container, then read with the orchestrator's credential
 * (which needs only read access to the silo's exchange container; silos never write to orchestrator
 * storage and the orchestrator never sees silo training data).
 */
import type { AzureMachineLearningWorkspaces } from "@azure/arm-machinelearning";
import type { TokenCredential } from "@azure/core-auth";
import type { TlsSettings } from "@azure/core-rest-pipeline";
import { AnonymousCredential, BlobServiceClient, StorageSharedKeyCredential, type StoragePipelineOptions } from "@azure/storage-blob";
import type { ByteSource } from "../../models/bytes";
import { ModelStore } from "../../models/store";
import { jobKindContract, MAX_METRICS_BYTES, METRICS_FILE, MODEL_FILE, parseSiloMetrics, SiloOutputError, type JobKind, type SiloOutput } from "../siloCompute";
import { AzureMlAuthorizationError, AzureMlConfigError, DATA_SCIENTIST_ROLE, STORAGE_BLOB_DATA_READER_ROLE, toAzureMlError, type WorkspaceCoordinates } from "./errors";

/** The parts of an `azureml://` datastore URI (short or long form). */
export interface DatastoreUri {
  datastore: string;
  /** Path inside the datastore, without a leading slash. */
  path: string;
  /** Present in the long form only. */
  subscriptionId?: string;
  resourceGroup?: string;
  workspace?: string;
}

const SHORT_FORM = /^azureml:\/\/datastores\/([^/]+)\/paths\/(.*)$/i;
const LONG_FORM = /^azureml:\/\/subscriptions\/([^/]+)\/resource[gG]roups\/([^/]+)\/(?:providers\/Microsoft\.MachineLearningServices\/)?workspaces\/([^/]+)\/datastores\/([^/]+)\/paths\/(.*)$/i;

/** Parses `azureml://datastores/<ds>/paths/<p>` and `azureml://subscriptions/<s>/resourcegroups/<rg>/workspaces/<ws>/datastores/<ds>/paths/<p>`. */
export function parseDatastoreUri(uri: string): DatastoreUri {
  const short = SHORT_FORM.exec(uri);
  if (short) return { datastore: decodeURIComponent(short[1]), path: short[2].replace(/^\/+/, "") };
  const long = LONG_FORM.exec(uri);
  if (long) {
    return {
      subscriptionId: long[1],
      resourceGroup: long[2],
      workspace: long[3],
      datastore: decodeURIComponent(long[4]),
      path: long[5].replace(/^\/+/, ""),
    };
  }
  throw new AzureMlConfigError(
    "outputUri",
    "azureml://datastores/<datastore>/paths/<path> or azureml://subscriptions/<sub>/resourcegroups/<rg>/workspaces/<ws>/datastores/<datastore>/paths/<path>",
    JSON.stringify(uri),
  );
}

/** Blob coordinates of a datastore folder. */
export interface BlobFolderLocation {
  accountName: string;
  containerName: string;
  /** Blob service URL, e.g. https://acct.blob.core.windows.net. */
  serviceUrl: string;
  /** Folder prefix inside the container, ending with "/" (empty for the container root). */
  prefix: string;
  /** `<serviceUrl>/<container>/<prefix>`. */
  folderUrl: string;
}

export interface DatastoreEndpoint {
  accountName: string;
  /** Storage endpoint suffix, e.g. core.windows.net. */
  endpoint: string;
  protocol: string;
}

export interface BlobAccessOptions {
  /** Credential for the silo's exchange container; default the orchestrator's TokenCredential. */
  credential?: TokenCredential | StorageSharedKeyCredential | AnonymousCredential;
  /** Blob service URL of a datastore's account; default `<protocol>://<account>.blob.<endpoint>` (tests point it at Azurite). */
  serviceUrlFor?: (datastore: DatastoreEndpoint) => string;
  /** TLS settings for blob requests, e.g. `{ca}` to trust a test certificate. */
  tlsOptions?: TlsSettings;
  /** Blob pipeline retry options. */
  retryOptions?: StoragePipelineOptions["retryOptions"];
}

function defaultServiceUrl({ accountName, endpoint, protocol }: DatastoreEndpoint): string {
  return `${protocol}://${accountName}.blob.${endpoint}`;
}

/** Resolves an azureml:// folder URI to its blob container and prefix through `datastores.get`. */
export async function resolveDatastoreFolder(
  client: AzureMachineLearningWorkspaces,
  coordinates: WorkspaceCoordinates,
  uri: string,
  options: { serviceUrlFor?: (datastore: DatastoreEndpoint) => string; signal?: AbortSignal } = {},
): Promise<BlobFolderLocation> {
  const parsed = parseDatastoreUri(uri);
  if (parsed.subscriptionId && parsed.subscriptionId.toLowerCase() !== coordinates.subscriptionId.toLowerCase()) {
    throw new AzureMlConfigError("outputUri", `a datastore in subscription ${coordinates.subscriptionId} (the silo workspace's)`, `subscription ${parsed.subscriptionId} in ${uri}`);
  }
  const where: WorkspaceCoordinates = {
    subscriptionId: coordinates.subscriptionId,
    resourceGroup: parsed.resourceGroup ?? coordinates.resourceGroup,
    workspace: parsed.workspace ?? coordinates.workspace,
  };
  let datastore;
  try {
    datastore = await client.datastores.get(where.resourceGroup, where.workspace, parsed.datastore, { abortSignal: options.signal });
  } catch (error) {
    throw toAzureMlError(error, { coordinates: where, operation: `read datastore ${parsed.datastore}`, requiredRole: DATA_SCIENTIST_ROLE });
  }
  const properties = datastore.properties as {
    datastoreType?: string;
    accountName?: string;
    containerName?: string;
    filesystem?: string;
    endpoint?: string;
    protocol?: string;
  };
  const type = properties.datastoreType;
  const containerName = type === "AzureBlob" ? properties.containerName : type === "AzureDataLakeGen2" ? properties.filesystem : undefined;
  if ((type !== "AzureBlob" && type !== "AzureDataLakeGen2") || !properties.accountName || !containerName) {
    throw new AzureMlConfigError(
      `datastore ${parsed.datastore} in workspace ${where.workspace}`,
      "an AzureBlob (or AzureDataLakeGen2) datastore with an account and a container",
      `type ${type ?? "none"}, account ${properties.accountName ?? "none"}, container ${containerName ?? "none"}`,
    );
  }
  const endpoint: DatastoreEndpoint = {
    accountName: properties.accountName,
    endpoint: properties.endpoint || "core.windows.net",
    protocol: properties.protocol || "https",
  };
  const serviceUrl = (options.serviceUrlFor ?? defaultServiceUrl)(endpoint).replace(/\/+$/, "");
  const prefix = parsed.path === "" ? "" : parsed.path.endsWith("/") ? parsed.path : `${parsed.path}/`;
  return {
    accountName: endpoint.accountName,
    containerName,
    serviceUrl,
    prefix,
    folderUrl: `${serviceUrl}/${containerName}/${prefix}`,
  };
}

/**
 * Storage refusing the orchestrator (401/403) becomes an authorization error naming the role and the
 * container; other store errors (not found, short read, blob changed, ...) are already specific.
 */
function mapStorageError(error: unknown, location: BlobFolderLocation, operation: string): unknown {
  const candidate = error as { statusCode?: number; cause?: { statusCode?: number; code?: string } };
  const status = candidate?.statusCode ?? candidate?.cause?.statusCode;
  if (status !== 401 && status !== 403) return error;
  const code = candidate?.cause?.code ?? (error as { code?: string }).code;
  const scope = `${location.serviceUrl}/${location.containerName}`;
  return new AzureMlAuthorizationError(
    `Storage denied ${operation} on ${location.folderUrl}: HTTP ${status}${code ? ` ${code}` : ""}. Fix: the orchestrator's identity needs ` +
      `the "${STORAGE_BLOB_DATA_READER_ROLE}" role on the silo's exchange container (scope ${scope}).`,
    { statusCode: status, code, operation, workspace: location.accountName, requiredRole: STORAGE_BLOB_DATA_READER_ROLE, scope },
  );
}

/** The store's pinned, resumable ByteSource, with storage authorization failures named. */
class ExchangeByteSource implements ByteSource {
  readonly name: string;
  constructor(
    private readonly inner: ByteSource,
    private readonly location: BlobFolderLocation,
  ) {
    this.name = inner.name;
  }
  async size(options: { signal?: AbortSignal } = {}): Promise<number> {
    try {
      return await this.inner.size(options);
    } catch (error) {
      throw mapStorageError(error, this.location, `read properties of ${this.name}`);
    }
  }
  async read(offset: number, length: number, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    try {
      return await this.inner.read(offset, length, options);
    } catch (error) {
      throw mapStorageError(error, this.location, `read ${this.name}`);
    }
  }
}

/** A completed silo job's output folder: a training update ready for aggregation, or an evaluation. */
export type SiloOutputFolder = SiloOutput & {
  /** The azureml:// URI it was opened from. */
  uri: string;
  location: BlobFolderLocation;
  /** Every blob under the folder (relative names) with its size. */
  files: { name: string; size: number }[];
};

export interface OpenSiloOutputOptions extends BlobAccessOptions {
  signal?: AbortSignal;
  /** The kind of job that wrote the folder (default `train`). */
  kind?: JobKind;
}

/** The blob container of a resolved datastore folder, with the orchestrator's credential. */
function exchangeContainer(location: BlobFolderLocation, options: BlobAccessOptions) {
  const pipelineOptions = {
    ...(options.retryOptions ? { retryOptions: options.retryOptions } : {}),
    // StoragePipelineOptions does not declare tlsOptions, but they reach the core pipeline unchanged.
    ...(options.tlsOptions ? { tlsOptions: options.tlsOptions } : {}),
  } as StoragePipelineOptions;
  return new BlobServiceClient(location.serviceUrl, options.credential ?? new AnonymousCredential(), pipelineOptions).getContainerClient(location.containerName);
}

/** Opens a job's output folder: resolves the datastore, lists the folder, reads and validates metrics.json. */
export async function openSiloOutputFolder(client: AzureMachineLearningWorkspaces, coordinates: WorkspaceCoordinates, uri: string, options: OpenSiloOutputOptions): Promise<SiloOutputFolder> {
  const location = await resolveDatastoreFolder(client, coordinates, uri, options);
  const store = new ModelStore(exchangeContainer(location, options));

  let files: { name: string; size: number }[];
  try {
    files = (await store.list(location.prefix, { signal: options.signal })).map((blob) => ({
      name: blob.path.slice(location.prefix.length),
      size: blob.size,
    }));
  } catch (error) {
    throw mapStorageError(error, location, "list");
  }
  // Checked in the contract's order, so a folder missing everything names its first file.
  for (const required of jobKindContract(options.kind).outputFiles) {
    if (files.some((file) => file.name === required)) continue;
    const got = files.length ? `no such file (the folder holds ${files.map((f) => f.name).join(", ")})` : "an empty folder";
    throw new SiloOutputError(location.folderUrl, required, "a file written by the job", got);
  }
  const metricsFile = files.find((file) => file.name === METRICS_FILE)!;
  if (metricsFile.size > MAX_METRICS_BYTES) {
    throw new SiloOutputError(location.folderUrl, METRICS_FILE, `at most ${MAX_METRICS_BYTES} bytes`, `${metricsFile.size} bytes`);
  }
  let metricsText: string;
  try {
    metricsText = (await store.getBytes(location.prefix + METRICS_FILE, { signal: options.signal })).toString("utf8");
  } catch (error) {
    throw mapStorageError(error, location, `read ${location.folderUrl}${METRICS_FILE}`);
  }
  const metrics = parseSiloMetrics(metricsText, `${location.folderUrl}${METRICS_FILE}`);
  if (options.kind === "evaluate") return { kind: "evaluate", uri, location, files, metrics };
  return { kind: "train", uri, location, files, model: new ExchangeByteSource(store.source(location.prefix + MODEL_FILE), location), metrics };
}

/** One file of a job's output folder (an azureml:// URI), read with the orchestrator's credential. */
export async function openSiloOutputFile(
  client: AzureMachineLearningWorkspaces,
  coordinates: WorkspaceCoordinates,
  uri: string,
  file: string,
  options: Omit<OpenSiloOutputOptions, "kind">,
): Promise<ByteSource> {
  const location = await resolveDatastoreFolder(client, coordinates, uri, options);
  return new ExchangeByteSource(new ModelStore(exchangeContainer(location, options)).source(location.prefix + file), location);
}

/**
 * Checks that the orchestrator may read a silo's exchange container: resolves the datastore and lists
 * (at most one blob of) flo's folder in it. Throws AzureMlAuthorizationError naming the container
 * and the role when storage refuses.
 */
export async function probeExchangeRead(
  client: AzureMachineLearningWorkspaces,
  coordinates: WorkspaceCoordinates,
  exchangeDatastore: string,
  options: OpenSiloOutputOptions,
): Promise<BlobFolderLocation> {
  const location = await resolveDatastoreFolder(client, coordinates, `azureml://datastores/${exchangeDatastore}/paths/flo/`, options);
  const container = exchangeContainer(location, options);
  try {
    await container.listBlobsFlat({ prefix: location.prefix }).byPage({ maxPageSize: 1 }).next();
  } catch (error) {
    throw mapStorageError(error, location, "list");
  }
  return location;
}
