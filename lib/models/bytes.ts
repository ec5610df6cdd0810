/**
 * Random-access byte sources and streaming sinks: the one abstraction the data plane reads and
 * writes models through, so the same aggregation code runs on local files and on blob storage.
 */

/** A readable, seekable run of bytes (a local file, a blob). */
export interface ByteSource {
  /** Names the bytes in error messages (a file path or a blob URI). */
  readonly name: string;
  size(options?: { signal?: AbortSignal }): Promise<number>;
  /** Reads exactly `length` bytes at `offset`; rejects if fewer exist. */
  read(offset: number, length: number, options?: { signal?: AbortSignal }): Promise<Buffer>;
  /** Optional zero-copy variant of `read`: fills all of `target` from `offset` (rejects if fewer bytes exist). */
  readInto?(target: Uint8Array, offset: number, options?: { signal?: AbortSignal }): Promise<void>;
  close?(): Promise<void>;
}

/** What a sink reports once its bytes are durable. */
export interface WrittenObject {
  /** Where the bytes now live (file path or blob URI). */
  uri: string;
  size: number;
  /** Lower-case hex sha256 of everything written. */
  sha256: string;
}

/**
 * A streaming writer. Nothing is visible at the destination until `commit()` resolves; `abort()`
 * (or a crash before commit) leaves no partial object behind.
 */
export interface ByteSink {
  readonly name: string;
  write(chunk: Uint8Array, options?: { signal?: AbortSignal }): Promise<void>;
  commit(options?: { signal?: AbortSignal }): Promise<WrittenObject>;
  abort(): Promise<void>;
}
