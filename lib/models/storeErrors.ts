/** Errors of the blob model store. One base class so callers can catch the family. */
export class ModelStoreError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The blob (or, for folder operations, any blob under the prefix) does not exist. */
export class BlobNotFoundError extends ModelStoreError {
  constructor(
    readonly path: string,
    readonly uri: string,
    options?: { cause?: unknown },
  ) {
    super(`blob not found: ${uri}`, options);
  }
}

/** A write with `overwrite: false` found the blob already there. */
export class BlobExistsError extends ModelStoreError {
  constructor(
    readonly path: string,
    readonly uri: string,
    options?: { cause?: unknown },
  ) {
    super(`blob already exists (overwrite: false): ${uri}`, options);
  }
}

/** The blob changed (new ETag) while a reader was reading it, so bytes could mix two versions. */
export class BlobChangedError extends ModelStoreError {
  constructor(
    readonly path: string,
    readonly uri: string,
    options?: { cause?: unknown },
  ) {
    super(`blob changed while being read: ${uri}`, options);
  }
}

/** Fewer bytes exist than were asked for. */
export class ShortReadError extends ModelStoreError {
  constructor(
    readonly uri: string,
    readonly offset: number,
    readonly length: number,
    readonly available: number,
  ) {
    super(`short read from ${uri}: asked for ${length} bytes at offset ${offset}, only ${Math.max(0, available)} exist there`);
  }
}

/** Downloaded bytes do not hash to the sha256 recorded when they were written. */
export class BlobIntegrityError extends ModelStoreError {
  constructor(
    readonly uri: string,
    readonly expectedSha256: string,
    readonly actualSha256: string,
  ) {
    super(`sha256 mismatch for ${uri}: recorded ${expectedSha256}, downloaded bytes hash to ${actualSha256}`);
  }
}

/** A path component or blob URI is not acceptable (empty, "..", a slash inside an id, foreign container, ...). */
export class StorePathError extends ModelStoreError {}

/** A sink was used after commit()/abort(), or a commit failed. */
export class SinkStateError extends ModelStoreError {}

/** A JSON blob did not parse. */
export class BlobJsonError extends ModelStoreError {
  constructor(
    readonly uri: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`blob ${uri} is not valid JSON: ${detail}`, options);
  }
}

/** Any other storage failure, wrapped with the blob it concerned (the SDK error is the cause). */
export class StorageRequestError extends ModelStoreError {
  constructor(
    readonly operation: string,
    readonly uri: string,
    readonly statusCode: number | undefined,
    options?: { cause?: unknown },
  ) {
    const cause = options?.cause as { message?: string } | undefined;
    super(`${operation} ${uri} failed${statusCode ? ` (HTTP ${statusCode})` : ""}: ${cause?.message ?? "unknown error"}`, options);
  }
}
