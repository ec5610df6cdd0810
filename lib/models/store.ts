/**
 * The model store: federation artifacts in one blob container (Azure Storage or Azurite).
 *
 * - Reads are ranged: `source(path)` is a ByteSource (random access, pinned to the blob's ETag so
 *   bytes never mix two versions); `readStream(path)` reads sequentially with several ranged GETs
 *   in flight.
 * - Writes are staged blocks committed at the end: until `commit()` nothing is visible (Azure keeps
 *   uncommitted blocks invisible and garbage-collects them), so a crash never leaves half a model.
 *   The sha256 of every written byte is returned and stored as blob metadata `sha256`.
 * - Paths come from `storeLayout.ts`; URIs are `<containerUrl>/<path>`.
 */
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as nodePath from "node:path";
import { Readable } from "node:stream";
import type { TokenCredential } from "@azure/identity";
import {
  type AnonymousCredential,
  BlobServiceClient,
  type StorageSharedKeyCredential,
  type BlobDownloadResponseParsed,
  type BlockBlobClient,
  type ContainerClient,
  type StoragePipelineOptions,
} from "@azure/storage-blob";
import type { ByteSink, ByteSource, WrittenObject } from "./bytes";
import { openNoFollow } from "./fileBytes";
import {
  BlobChangedError,
  BlobExistsError,
  BlobIntegrityError,
  BlobJsonError,
  BlobNotFoundError,
  ModelStoreError,
  ShortReadError,
  SinkStateError,
  StorageRequestError,
  StorePathError,
} from "./storeErrors";
import { blobUri, folderPrefix, parseBlobUri } from "./storeLayout";
import type { StorageSettings } from "../storage/settings";

export * from "./storeErrors";
export * from "./storeLayout";

const MiB = 1024 * 1024;

/** Credential accepted for an account URL: a TokenCredential (managed identity) or a shared key. */
export type BlobCredential = TokenCredential | StorageSharedKeyCredential | AnonymousCredential;

export interface ModelStoreOptions {
  /** Block size for staged uploads and chunk size for streamed reads. Default 8 MiB. */
  blockSize?: number;
  /** Blocks staged concurrently by one sink. Default 4. */
  uploadConcurrency?: number;
  /** Ranged GETs in flight for one readStream. Default 4. */
  readConcurrency?: number;
  /** Files moved concurrently by uploadFolder/downloadFolder. Default 4. */
  fileConcurrency?: number;
  /** Re-requests of the rest of a range when a response body breaks off (the SDK resumes at the same ETag). Default 5. */
  maxBodyRetries?: number;
}

/** Retry policy used when flo builds the client itself (connection string, account URL). */
export const DEFAULT_PIPELINE_OPTIONS: StoragePipelineOptions = {
  retryOptions: { maxTries: 4, retryDelayInMs: 200, maxRetryDelayInMs: 5000 },
  keepAliveOptions: { enable: true },
};

export interface StoredBlob {
  path: string;
  uri: string;
  size: number;
  /** sha256 recorded at write time (metadata), if the blob was written by flo. */
  sha256?: string;
  etag: string;
  lastModified: Date;
}

/** A file moved between a local folder and the store. `uri` is where the bytes were written. */
export interface StoredFile extends WrittenObject {
  /** Blob path in the container. */
  path: string;
  localPath: string;
}

export interface WriteOptions {
  signal?: AbortSignal;
  /** false = fail with BlobExistsError if the blob exists. Default true (retries are idempotent). */
  overwrite?: boolean;
  contentType?: string;
}

export interface ReadRangeOptions {
  signal?: AbortSignal;
  /** Default 0. */
  offset?: number;
  /** Default: to the end of the blob. */
  count?: number;
  /** The blob's size and ETag when already known (from a listing): saves the HEAD request, and reads stay pinned to that version. */
  known?: Pick<StoredBlob, "size" | "etag">;
}

type Sdk = { statusCode?: number; code?: string; name?: string };

function isAbort(err: unknown): err is Error {
  return (err as Sdk)?.name === "AbortError";
}

function checkPositiveInt(value: number, field: string): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new ModelStoreError(`${field}: expected a positive integer, got ${value}`);
  return value;
}

function checkRange(offset: number, length: number, name: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw new ModelStoreError(`read ${name}: offset expected an integer >= 0, got ${offset}`);
  if (!Number.isSafeInteger(length) || length < 0) throw new ModelStoreError(`read ${name}: length expected an integer >= 0, got ${length}`);
}

function checkBlobPath(path: string): string {
  if (typeof path !== "string" || path === "" || path.startsWith("/") || path.endsWith("/") || path.split("/").some((p) => p === "" || p === "." || p === "..")) {
    throw new StorePathError(`blob path: expected a relative path without empty, "." or ".." segments, got ${JSON.stringify(path)}`);
  }
  return path;
}

/** Runs `work` over `items` with at most `limit` in flight; results in input order. Stops at the first error. */
async function mapLimit<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async () => {
    while (!failed && next < items.length) {
      const i = next++;
      try {
        results[i] = await work(items[i]);
      } catch (err) {
        failed = true;
        throw err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

function combineSignals(...signals: Array<AbortSignal | undefined>): AbortSignal | undefined {
  const present = signals.filter((s): s is AbortSignal => s !== undefined);
  if (present.length <= 1) return present[0];
  return AbortSignal.any(present);
}

/**
 * Copies a response body into `out` at `progress.filled`, advancing it as bytes arrive (so after a
 * break the caller resumes from there). Rejects if the body breaks off or ends early.
 */
async function readBodyInto(response: BlobDownloadResponseParsed, out: Buffer, progress: { filled: number }, expected: number): Promise<void> {
  const body = response.readableStreamBody;
  if (!body) throw new ModelStoreError("download returned no body (browser runtime?)");
  const start = progress.filled;
  const end = start + expected;
  for await (const piece of body as AsyncIterable<Buffer>) {
    if (progress.filled + piece.length > end) throw new ModelStoreError(`download returned more than the ${expected} bytes asked for`);
    piece.copy(out, progress.filled);
    progress.filled += piece.length;
  }
  if (progress.filled < end) throw new ModelStoreError(`response body ended after ${progress.filled - start} of ${expected} bytes`);
}

function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      "abort",
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });
}

export class ModelStore {
  readonly blockSize: number;
  readonly uploadConcurrency: number;
  readonly readConcurrency: number;
  readonly fileConcurrency: number;
  readonly maxBodyRetries: number;

  constructor(
    readonly container: ContainerClient,
    options: ModelStoreOptions = {},
  ) {
    this.blockSize = checkPositiveInt(options.blockSize ?? 8 * MiB, "blockSize");
    if (this.blockSize > 4000 * MiB) throw new ModelStoreError(`blockSize: expected at most 4000 MiB (Azure's block limit), got ${this.blockSize}`);
    this.uploadConcurrency = checkPositiveInt(options.uploadConcurrency ?? 4, "uploadConcurrency");
    this.readConcurrency = checkPositiveInt(options.readConcurrency ?? 4, "readConcurrency");
    this.fileConcurrency = checkPositiveInt(options.fileConcurrency ?? 4, "fileConcurrency");
    this.maxBodyRetries = options.maxBodyRetries ?? 5;
    if (!Number.isSafeInteger(this.maxBodyRetries) || this.maxBodyRetries < 0) {
      throw new ModelStoreError(`maxBodyRetries: expected an integer >= 0, got ${this.maxBodyRetries}`);
    }
  }

  /** Shared-key / SAS connection string (Azurite's dev account included). */
  static fromConnectionString(connectionString: string, containerName: string, options: ModelStoreOptions & { pipeline?: StoragePipelineOptions } = {}): ModelStore {
    const service = BlobServiceClient.fromConnectionString(connectionString, options.pipeline ?? DEFAULT_PIPELINE_OPTIONS);
    return new ModelStore(service.getContainerClient(containerName), options);
  }

  /**
   * Account URL + credential; without a credential uses DefaultAzureCredential (managed identity
   * in Azure, developer login elsewhere), loaded only when needed.
   */
  static fromAccountUrl(
    accountUrl: string,
    containerName: string,
    credential?: BlobCredential,
    options: ModelStoreOptions & { pipeline?: StoragePipelineOptions; managedIdentityClientId?: string } = {},
  ): ModelStore {
    const cred = credential ?? defaultCredential(options.managedIdentityClientId);
    const service = new BlobServiceClient(accountUrl.replace(/\/+$/, ""), cred, options.pipeline ?? DEFAULT_PIPELINE_OPTIONS);
    return new ModelStore(service.getContainerClient(containerName), options);
  }

  /** From `storageSettingsFromEnv(...)`; an "embedded" setting must first be turned into Azurite's connection string. */
  static fromSettings(settings: StorageSettings, containerName: string, options: ModelStoreOptions = {}): ModelStore {
    switch (settings.kind) {
      case "connectionString":
        return ModelStore.fromConnectionString(settings.connectionString, containerName, options);
      case "identity":
        if (!settings.blobServiceUri) {
          throw new ModelStoreError(`${settings.settingName}: identity connection has no blob endpoint (set __accountName or __blobServiceUri)`);
        }
        return ModelStore.fromAccountUrl(settings.blobServiceUri, containerName, undefined, { ...options, managedIdentityClientId: settings.clientId });
      case "embedded":
        throw new ModelStoreError("no storage connection is configured: start embedded Azurite and pass its connection string");
    }
  }

  get containerUrl(): string {
    return this.container.url.replace(/\?.*$/, "");
  }

  /** Creates the container if missing. */
  async ensureContainer(options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.container.createIfNotExists({ abortSignal: options.signal });
    } catch (err) {
      throw this.wrap(err, "create container", this.containerUrl);
    }
  }

  uri(path: string): string {
    return blobUri(this.containerUrl, checkBlobPath(path));
  }

  /** The path inside this store's container of a URI it produced; StorePathError for a foreign URI. */
  pathFromUri(uri: string): string {
    const location = parseBlobUri(uri);
    const own = parseBlobUri(`${this.containerUrl}/x`);
    if (location.containerUrl !== own.containerUrl) {
      throw new StorePathError(`blob URI ${uri}: expected a blob in ${this.containerUrl}`);
    }
    return location.path;
  }

  private blob(path: string): BlockBlobClient {
    return this.container.getBlockBlobClient(checkBlobPath(path));
  }

  /** Maps SDK errors to the store's error family, naming the blob. */
  private wrap(err: unknown, operation: string, uri: string, path = ""): unknown {
    if (err instanceof ModelStoreError || isAbort(err)) return err;
    const sdk = err as Sdk;
    if (sdk?.statusCode === 404) return new BlobNotFoundError(path, uri, { cause: err });
    return new StorageRequestError(operation, uri, sdk?.statusCode, { cause: err });
  }

  /** Size, ETag and recorded sha256 of a blob. */
  async stat(path: string, options: { signal?: AbortSignal } = {}): Promise<StoredBlob> {
    const uri = this.uri(path);
    try {
      const p = await this.blob(path).getProperties({ abortSignal: options.signal });
      return { path, uri, size: p.contentLength ?? 0, sha256: p.metadata?.sha256, etag: p.etag ?? "", lastModified: p.lastModified ?? new Date(0) };
    } catch (err) {
      throw this.wrap(err, "stat", uri, path);
    }
  }

  async exists(path: string, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    try {
      return await this.blob(path).exists({ abortSignal: options.signal });
    } catch (err) {
      throw this.wrap(err, "exists", this.uri(path), path);
    }
  }

  /**
   * Reads exactly `length` bytes at `offset`. With `etag`, fails with BlobChangedError if the blob
   * was replaced. Request-level failures (5xx, timeouts, refused connections) are retried by the
   * SDK pipeline; a response body that breaks off mid-way is resumed here from the last byte
   * received, at the same ETag, at most `maxBodyRetries` times. (The SDK's own resume treats a
   * dropped socket as a user abort, so it is not relied on.)
   */
  async readRange(
    path: string,
    offset: number,
    length: number,
    options: { signal?: AbortSignal; etag?: string; /** Read into this buffer (at least `length` bytes) instead of a new one. */ target?: Uint8Array } = {},
  ): Promise<{ bytes: Buffer; etag: string }> {
    const uri = this.uri(path);
    checkRange(offset, length, uri);
    let etag = options.etag;
    if (length === 0) return { bytes: Buffer.alloc(0), etag: etag ?? "" }; // the SDK treats count 0 as "to the end"
    const target = options.target;
    if (target && target.byteLength < length) throw new ModelStoreError(`read ${uri}: target holds ${target.byteLength} bytes, ${length} requested`);
    const out = target ? Buffer.from(target.buffer, target.byteOffset, length) : Buffer.allocUnsafe(length);
    const progress = { filled: 0 };
    for (let resumes = 0; ; resumes++) {
      const want = length - progress.filled;
      let response: BlobDownloadResponseParsed;
      try {
        response = await this.blob(path).download(offset + progress.filled, want, {
          abortSignal: options.signal,
          conditions: etag ? { ifMatch: etag } : undefined,
          maxRetryRequests: 0,
        });
      } catch (err) {
        const status = (err as Sdk)?.statusCode;
        if (status === 412 && etag) throw new BlobChangedError(path, uri, { cause: err });
        if (status === 416) {
          const size = await this.stat(path, options).then(
            (s) => s.size,
            () => 0,
          );
          throw new ShortReadError(uri, offset, length, size - offset);
        }
        throw this.wrap(err, "read", uri, path);
      }
      etag ??= response.etag;
      const served = response.contentLength ?? want;
      try {
        await readBodyInto(response, out, progress, Math.min(served, want));
      } catch (err) {
        if (options.signal?.aborted) throw options.signal.reason ?? err;
        if (resumes < this.maxBodyRetries) {
          await delay(Math.min(1000, 50 * 2 ** resumes), options.signal);
          continue;
        }
        // Not the caller's abort: the SDK reports a dropped socket as AbortError.
        const cause = isAbort(err) ? new ModelStoreError("connection dropped while receiving the body", { cause: err }) : err;
        throw new StorageRequestError(`read (after ${resumes} resumes)`, uri, (err as Sdk)?.statusCode, { cause });
      }
      if (served < want) throw new ShortReadError(uri, offset, length, progress.filled);
      return { bytes: out, etag: etag ?? "" };
    }
  }

  /**
   * The first `maxBytes` bytes of a blob (all of it when smaller) with its size and ETag, in one
   * request, where a HEAD followed by reads would take two or more.
   */
  async readHead(path: string, maxBytes: number, options: { signal?: AbortSignal } = {}): Promise<{ bytes: Buffer; size: number; etag: string }> {
    const uri = this.uri(path);
    let response: BlobDownloadResponseParsed;
    try {
      response = await this.blob(path).download(0, maxBytes, { abortSignal: options.signal, maxRetryRequests: 0 });
    } catch (err) {
      // An empty blob has no byte range to serve.
      if ((err as Sdk)?.statusCode === 416) {
        const info = await this.stat(path, options);
        if (info.size === 0) return { bytes: Buffer.alloc(0), size: 0, etag: info.etag };
      }
      throw this.wrap(err, "read", uri, path);
    }
    const length = response.contentLength ?? 0;
    // "bytes 0-<last>/<size>"; without a range the whole blob was served.
    const total = /\/(\d+)$/.exec(response.contentRange ?? "");
    const bytes = Buffer.allocUnsafe(length);
    try {
      await readBodyInto(response, bytes, { filled: 0 }, length);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      throw new StorageRequestError("read", uri, (err as Sdk)?.statusCode, { cause: err });
    }
    return { bytes, size: total ? Number(total[1]) : length, etag: response.etag ?? "" };
  }

  /** Random access to one blob, pinned to the version first seen. */
  source(path: string): ByteSource {
    return new BlobByteSource(this, path);
  }

  /**
   * Sequential read of `[offset, offset+count)` as a stream of chunks (blockSize each), keeping
   * `readConcurrency` ranged GETs in flight; memory stays around (readConcurrency + 1) x blockSize.
   */
  readStream(path: string, options: ReadRangeOptions = {}): Readable {
    return Readable.from(this.readChunks(path, options), { objectMode: false, highWaterMark: 1 });
  }

  /** The generator behind readStream, for `for await` use without a stream. */
  async *readChunks(path: string, options: ReadRangeOptions = {}): AsyncGenerator<Buffer> {
    const uri = this.uri(path);
    const info = options.known ?? (await this.stat(path, options));
    const offset = options.offset ?? 0;
    const count = options.count ?? Math.max(0, info.size - offset);
    checkRange(offset, count, uri);
    if (offset + count > info.size) throw new ShortReadError(uri, offset, count, info.size - offset);
    const stop = new AbortController(); // cancels prefetches when the consumer stops early
    const signal = combineSignals(stop.signal, options.signal);
    const inFlight: Array<Promise<Buffer>> = [];
    let nextOffset = offset;
    const end = offset + count;
    const launch = () => {
      const length = Math.min(this.blockSize, end - nextOffset);
      const read = this.readRange(path, nextOffset, length, { signal, etag: info.etag }).then((r) => r.bytes);
      read.catch(() => undefined); // awaited in order below; avoid unhandled rejections meanwhile
      inFlight.push(read);
      nextOffset += length;
    };
    try {
      while (inFlight.length < this.readConcurrency && nextOffset < end) launch();
      while (inFlight.length > 0) {
        const chunk = await inFlight.shift()!;
        if (nextOffset < end) launch();
        yield chunk;
      }
    } finally {
      stop.abort();
    }
  }

  /** A block-staging writer; nothing is visible until commit(). */
  sink(path: string, options: Omit<WriteOptions, "signal"> = {}): BlobSink {
    return new BlobSink(this, path, this.blob(path), options);
  }

  /** Whole (small) blob into memory: one GET; a body that breaks off is resumed by ranged reads. */
  async getBytes(path: string, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const uri = this.uri(path);
    let response: BlobDownloadResponseParsed;
    try {
      response = await this.blob(path).download(0, undefined, { abortSignal: options.signal, maxRetryRequests: 0 });
    } catch (err) {
      throw this.wrap(err, "read", uri, path);
    }
    const size = response.contentLength ?? 0;
    const out = Buffer.allocUnsafe(size);
    const progress = { filled: 0 };
    try {
      await readBodyInto(response, out, progress, size);
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      const rest = await this.readRange(path, progress.filled, size - progress.filled, { signal: options.signal, etag: response.etag });
      rest.bytes.copy(out, progress.filled);
    }
    return out;
  }

  /** Single-request write (atomic Put Blob), for small objects. */
  async putBytes(path: string, data: Uint8Array, options: WriteOptions = {}): Promise<WrittenObject> {
    const uri = this.uri(path);
    const sha256 = createHash("sha256").update(data).digest("hex");
    try {
      await this.blob(path).upload(data, data.byteLength, {
        abortSignal: options.signal,
        metadata: { sha256 },
        blobHTTPHeaders: { blobContentType: options.contentType ?? "application/octet-stream" },
        conditions: options.overwrite === false ? { ifNoneMatch: "*" } : undefined,
      });
    } catch (err) {
      if (options.overwrite === false && (err as Sdk)?.statusCode === 409) throw new BlobExistsError(path, uri, { cause: err });
      throw this.wrap(err, "write", uri, path);
    }
    return { uri, size: data.byteLength, sha256 };
  }

  async putJson(path: string, value: unknown, options: WriteOptions = {}): Promise<WrittenObject> {
    const text = JSON.stringify(value, null, 2);
    if (text === undefined) throw new ModelStoreError(`putJson ${this.uri(path)}: value is not JSON-serializable (got ${typeof value})`);
    return this.putBytes(path, Buffer.from(text + "\n", "utf8"), { contentType: "application/json", ...options });
  }

  async getJson<T = unknown>(path: string, options: { signal?: AbortSignal } = {}): Promise<T> {
    const bytes = await this.getBytes(path, options);
    try {
      return JSON.parse(bytes.toString("utf8")) as T;
    } catch (err) {
      throw new BlobJsonError(this.uri(path), (err as Error).message, { cause: err });
    }
  }

  /** Streams a local file into a blob through a sink (staged blocks, one commit). */
  async uploadFile(localPath: string, path: string, options: WriteOptions = {}): Promise<WrittenObject> {
    const handle = await openNoFollow(localPath);
    const sink = this.sink(path, options);
    try {
      const file = handle.createReadStream({ highWaterMark: this.blockSize, signal: options.signal });
      for await (const chunk of file as AsyncIterable<Buffer>) await sink.write(chunk, options);
      return await sink.commit(options);
    } catch (err) {
      await sink.abort();
      throw err;
    }
  }

  /**
   * Downloads a blob to a file (via a temp file renamed into place, so no partial file appears).
   * If the blob carries a recorded sha256, the bytes are checked against it (BlobIntegrityError).
   * Returns the local path and the sha256 of the bytes written.
   */
  async downloadToFile(
    path: string,
    localPath: string,
    options: { signal?: AbortSignal; /** Size, ETag and recorded sha256 from a listing: saves the HEAD request. */ listed?: Pick<StoredBlob, "size" | "sha256" | "etag"> } = {},
  ): Promise<WrittenObject> {
    const uri = this.uri(path);
    const info = options.listed ?? (await this.stat(path, options));
    await fs.promises.mkdir(nodePath.dirname(localPath), { recursive: true });
    const temp = `${localPath}.partial-${randomBytes(4).toString("hex")}`;
    const hash = createHash("sha256");
    let size = 0;
    const file = await fs.promises.open(temp, "w");
    try {
      try {
        for await (const chunk of this.readChunks(path, { signal: options.signal, count: info.size, known: info })) {
          hash.update(chunk);
          size += chunk.length;
          await file.write(chunk);
        }
      } finally {
        await file.close();
      }
      const sha256 = hash.digest("hex");
      if (info.sha256 && info.sha256 !== sha256) throw new BlobIntegrityError(uri, info.sha256, sha256);
      await fs.promises.rename(temp, localPath);
      return { uri: localPath, size, sha256 };
    } catch (err) {
      await fs.promises.rm(temp, { force: true });
      throw err;
    }
  }

  /** Blobs whose path starts with `prefix` (a raw prefix; pass a folder ending in "/" for folders). */
  async list(prefix: string, options: { signal?: AbortSignal } = {}): Promise<StoredBlob[]> {
    const out: StoredBlob[] = [];
    try {
      for await (const item of this.container.listBlobsFlat({ prefix, includeMetadata: true, abortSignal: options.signal })) {
        out.push({
          path: item.name,
          uri: this.uri(item.name),
          size: item.properties.contentLength ?? 0,
          sha256: item.metadata?.sha256,
          etag: item.properties.etag,
          lastModified: item.properties.lastModified,
        });
      }
    } catch (err) {
      throw this.wrap(err, "list", `${this.containerUrl}/${prefix}`);
    }
    return out;
  }

  /** Uploads every regular file under `localDir` to `<prefix>/<relative path>`. Sorted by path. */
  async uploadFolder(localDir: string, prefix: string, options: WriteOptions = {}): Promise<StoredFile[]> {
    const base = folderPrefix(prefix);
    const isDir = await fs.promises.stat(localDir).then(
      (st) => st.isDirectory(),
      () => false,
    );
    if (!isDir) throw new ModelStoreError(`uploadFolder: ${localDir} is not a folder`);
    const files = await walkFiles(localDir);
    const results = await mapLimit(files, this.fileConcurrency, async (relative) => {
      const localPath = nodePath.join(localDir, relative);
      const path = base + relative.split(nodePath.sep).join("/");
      const stat = await fs.promises.stat(localPath);
      const written = stat.size <= this.blockSize ? await this.putBytes(path, await readFileNoFollow(localPath), options) : await this.uploadFile(localPath, path, options);
      return { ...written, path, localPath };
    });
    return results.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  }

  /**
   * Downloads every blob under the folder `prefix` into `localDir`, keeping relative paths.
   * Returns [] when nothing is there (the caller decides whether that is an error).
   */
  async downloadFolder(prefix: string, localDir: string, options: { signal?: AbortSignal } = {}): Promise<StoredFile[]> {
    const base = folderPrefix(prefix);
    const blobs = await this.list(base, options);
    const root = nodePath.resolve(localDir);
    const results = await mapLimit(blobs, this.fileConcurrency, async (blob) => {
      const relative = blob.path.slice(base.length);
      const localPath = nodePath.resolve(root, ...relative.split("/"));
      if (relative === "" || relative.split("/").some((p) => p === "" || p === "." || p === "..") || !localPath.startsWith(root + nodePath.sep)) {
        throw new StorePathError(`blob ${blob.uri}: its path below ${base} would leave ${root}`);
      }
      const written = await this.downloadToFile(blob.path, localPath, { signal: options.signal, listed: blob });
      return { ...written, uri: blob.uri, path: blob.path, localPath };
    });
    return results;
  }

  /** Deletes every blob under the folder `prefix`; returns how many. Refuses the empty prefix. */
  async deleteFolder(prefix: string, options: { signal?: AbortSignal } = {}): Promise<number> {
    const base = folderPrefix(prefix);
    if (base === "") throw new StorePathError('deleteFolder: expected a folder prefix, got "" (would delete the whole container)');
    const blobs = await this.list(base, options);
    const deleted = await mapLimit(blobs, 8, async (blob) => {
      try {
        const r = await this.blob(blob.path).deleteIfExists({ abortSignal: options.signal, deleteSnapshots: "include" });
        return r.succeeded ? 1 : 0;
      } catch (err) {
        throw this.wrap(err, "delete", blob.uri, blob.path);
      }
    });
    return deleted.reduce<number>((a, b) => a + b, 0);
  }

  async delete(path: string, options: { signal?: AbortSignal } = {}): Promise<boolean> {
    try {
      return (await this.blob(path).deleteIfExists({ abortSignal: options.signal, deleteSnapshots: "include" })).succeeded;
    } catch (err) {
      throw this.wrap(err, "delete", this.uri(path), path);
    }
  }
}

function defaultCredential(managedIdentityClientId?: string): BlobCredential {
  // Loaded lazily: @azure/identity is only needed for identity-based connections.
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- lazy, see above
  const { DefaultAzureCredential } = require("@azure/identity") as typeof import("@azure/identity");
  return new DefaultAzureCredential(managedIdentityClientId ? { managedIdentityClientId } : {});
}

async function readFileNoFollow(localPath: string): Promise<Buffer> {
  const handle = await openNoFollow(localPath);
  try {
    return await handle.readFile();
  } finally {
    await handle.close();
  }
}

async function walkFiles(dir: string, relative = ""): Promise<string[]> {
  const entries = await fs.promises.readdir(nodePath.join(dir, relative), { withFileTypes: true });
  const out: string[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const rel = relative ? nodePath.join(relative, entry.name) : entry.name;
    if (entry.isDirectory()) out.push(...(await walkFiles(dir, rel)));
    else if (entry.isFile()) out.push(rel);
  }
  return out;
}

/**
 * Bytes a blob source fetches from the start of its blob on first use, together with its size and
 * ETag: a safetensors header or a metrics.json then costs one request instead of a HEAD and two or
 * three reads. Small, because an aggregation keeps one source per update open.
 */
const HEAD_BYTES = 8192;

/** Random access to one blob. The first response pins the ETag; later reads fail if it changes. */
export class BlobByteSource implements ByteSource {
  readonly name: string;
  private etag: string | undefined;
  private knownSize: number | undefined;
  private head: Promise<Buffer> | undefined;

  constructor(
    private readonly store: ModelStore,
    readonly path: string,
  ) {
    this.name = store.uri(path);
  }

  async size(options: { signal?: AbortSignal } = {}): Promise<number> {
    if (this.knownSize === undefined) await this.loadHead(options);
    return this.knownSize!;
  }

  async read(offset: number, length: number, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    const cached = await this.fromHead(offset, length, options);
    if (cached) return Buffer.from(cached);
    const { bytes, etag } = await this.store.readRange(this.path, offset, length, { signal: options.signal, etag: this.etag });
    if (etag) this.pin(etag);
    return bytes;
  }

  /** Fills `target` from `offset` without allocating (the engine reuses its chunk buffers). */
  async readInto(target: Uint8Array, offset: number, options: { signal?: AbortSignal } = {}): Promise<void> {
    const cached = await this.fromHead(offset, target.byteLength, options);
    if (cached) {
      target.set(cached);
      return;
    }
    const { etag } = await this.store.readRange(this.path, offset, target.byteLength, { signal: options.signal, etag: this.etag, target });
    if (etag) this.pin(etag);
  }

  /** The range from the blob's first bytes when they hold it (fetched by size() or a first small read from offset 0). */
  private async fromHead(offset: number, length: number, options: { signal?: AbortSignal }): Promise<Buffer | undefined> {
    if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length <= 0 || offset + length > HEAD_BYTES) return undefined;
    if (!this.head && offset > 0) return undefined;
    const head = await this.loadHead(options);
    return offset + length <= head.length ? head.subarray(offset, offset + length) : undefined;
  }

  private loadHead(options: { signal?: AbortSignal }): Promise<Buffer> {
    if (!this.head) {
      const pending = this.store.readHead(this.path, HEAD_BYTES, options).then((head) => {
        this.pin(head.etag);
        this.knownSize = head.size;
        return head.bytes;
      });
      // A failed or aborted fetch is not kept: the next call tries again.
      pending.catch(() => {
        if (this.head === pending) this.head = undefined;
      });
      this.head = pending;
    }
    return this.head;
  }

  private pin(etag: string): void {
    if (this.etag === undefined) this.etag = etag;
    else if (etag && etag !== this.etag) throw new BlobChangedError(this.path, this.name);
  }
}

/**
 * Stages fixed-size blocks as bytes arrive (up to uploadConcurrency in flight) and commits the
 * block list in commit(). Block ids are base64 of `<sink nonce>-<index>` (fixed width), so two
 * writers racing on one path never commit each other's blocks.
 */
export class BlobSink implements ByteSink {
  readonly name: string;
  private readonly hash = createHash("sha256");
  private readonly nonce = randomBytes(6).toString("hex");
  private readonly blockIds: string[] = [];
  private readonly inFlight = new Set<Promise<void>>();
  private readonly stop = new AbortController();
  private block: Buffer | undefined;
  private filled = 0;
  private written = 0;
  private failure: unknown;
  private state: "open" | "committing" | "committed" | "aborted" | "failed" = "open";

  constructor(
    private readonly store: ModelStore,
    readonly path: string,
    private readonly client: BlockBlobClient,
    private readonly options: Omit<WriteOptions, "signal">,
  ) {
    this.name = store.uri(path);
  }

  /** Bytes accepted so far. */
  get size(): number {
    return this.written;
  }

  async write(chunk: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    this.assertOpen("write");
    this.throwIfFailed();
    this.hash.update(chunk);
    this.written += chunk.byteLength;
    const blockSize = this.store.blockSize;
    let pos = 0;
    while (pos < chunk.byteLength) {
      this.block ??= Buffer.allocUnsafe(blockSize);
      const n = Math.min(chunk.byteLength - pos, blockSize - this.filled);
      this.block.set(chunk.subarray(pos, pos + n), this.filled);
      this.filled += n;
      pos += n;
      if (this.filled === blockSize) await this.stageCurrent(options.signal);
    }
  }

  async commit(options: { signal?: AbortSignal } = {}): Promise<WrittenObject> {
    this.assertOpen("commit");
    this.state = "committing";
    try {
      if (this.filled > 0) await this.stageCurrent(options.signal);
      await Promise.all(this.inFlight);
      this.throwIfFailed();
      await this.client.commitBlockList(this.blockIds, {
        abortSignal: options.signal,
        metadata: { sha256: this.digest() },
        blobHTTPHeaders: { blobContentType: this.options.contentType ?? "application/octet-stream" },
        conditions: this.options.overwrite === false ? { ifNoneMatch: "*" } : undefined,
      });
    } catch (err) {
      this.state = "failed";
      this.stop.abort();
      if (this.options.overwrite === false && (err as Sdk)?.statusCode === 409) throw new BlobExistsError(this.path, this.name, { cause: err });
      if (err instanceof ModelStoreError || isAbort(err)) throw err;
      throw new StorageRequestError("commit", this.name, (err as Sdk)?.statusCode, { cause: err });
    }
    this.state = "committed";
    return { uri: this.name, size: this.written, sha256: this.digest() };
  }

  /** Resolves once every block handed off so far has been staged (or failed; see commit()). */
  async waitForStaged(): Promise<void> {
    await Promise.allSettled(this.inFlight);
  }

  /** Drops everything staged; the blob (or its previous version) is untouched. Safe to call twice. */
  async abort(): Promise<void> {
    if (this.state === "committed") return;
    this.state = "aborted";
    this.stop.abort();
    this.block = undefined;
    await Promise.allSettled(this.inFlight);
  }

  private digestHex: string | undefined;
  private digest(): string {
    return (this.digestHex ??= this.hash.digest("hex"));
  }

  private assertOpen(operation: string): void {
    if (this.state !== "open") throw new SinkStateError(`${operation} on ${this.name}: sink is ${this.state}`);
  }

  private throwIfFailed(): void {
    if (this.failure === undefined) return;
    const err = this.failure;
    if (err instanceof ModelStoreError || isAbort(err)) throw err;
    throw new StorageRequestError("stage block", this.name, (err as Sdk)?.statusCode, { cause: err });
  }

  private async stageCurrent(signal: AbortSignal | undefined): Promise<void> {
    const data = this.filled === this.block!.length ? this.block! : this.block!.subarray(0, this.filled);
    this.block = undefined;
    this.filled = 0;
    const index = this.blockIds.length;
    if (index >= 50_000) throw new SinkStateError(`${this.name}: more than 50,000 blocks; raise blockSize`);
    const blockId = Buffer.from(`${this.nonce}-${String(index).padStart(6, "0")}`).toString("base64");
    this.blockIds.push(blockId);
    while (this.inFlight.size >= this.store.uploadConcurrency) await Promise.race(this.inFlight);
    this.throwIfFailed();
    const staged: Promise<void> = this.client
      .stageBlock(blockId, data, data.length, { abortSignal: combineSignals(this.stop.signal, signal) })
      .then(
        () => undefined,
        (err: unknown) => {
          this.failure ??= err;
        },
      )
      .finally(() => this.inFlight.delete(staged));
    this.inFlight.add(staged);
  }
}
