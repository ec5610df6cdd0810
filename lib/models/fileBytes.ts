/**
 * Local-file ByteSource / ByteSink (the blob-backed ones live in store.ts). The sink writes to a
 * temp file next to the destination, hashing as it goes, and renames it into place on commit, so
 * a crash or abort never leaves a partial file at the destination.
 */

import { createHash, randomBytes } from "node:crypto";
import { constants, promises as fs } from "node:fs";
import * as path from "node:path";
import type { ByteSink, ByteSource, WrittenObject } from "./bytes";

/** I/O on a local file failed or was misused (short read, write after commit...). */
export class FileBytesError extends Error {
  override readonly name = "FileBytesError";
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${file}: ${message}`, options);
  }
}

function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new Error("aborted");
}

/**
 * Opens a file for reading without following a symbolic link at its last component: a model or
 * update path must name the file itself, so a link planted in a job folder or a base folder cannot
 * make flo read (and upload, or quote in an error) some other file.
 */
export async function openNoFollow(filePath: string): Promise<fs.FileHandle> {
  try {
    return await fs.open(filePath, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ELOOP") {
      throw new FileBytesError(filePath, "is a symbolic link; model and update files are opened without following links", { cause: err });
    }
    throw err;
  }
}

/** A random-access reader over a local file; the handle opens lazily and closes with `close()`. */
export function fileSource(filePath: string): ByteSource {
  let handle: Promise<fs.FileHandle> | undefined;
  const open = () => (handle ??= openNoFollow(filePath));
  const readInto = async (target: Uint8Array, offset: number, options?: { signal?: AbortSignal }): Promise<void> => {
    throwIfAborted(options?.signal);
    const fh = await open();
    const length = target.byteLength;
    let done = 0;
    while (done < length) {
      const { bytesRead } = await fh.read(target, done, length - done, offset + done);
      if (bytesRead === 0) {
        throw new FileBytesError(filePath, `short read: wanted ${length} bytes at offset ${offset}, file ends after ${done}`);
      }
      done += bytesRead;
    }
  };
  return {
    name: filePath,
    async size(options) {
      throwIfAborted(options?.signal);
      return (await (await open()).stat()).size;
    },
    async read(offset, length, options) {
      const buffer = Buffer.allocUnsafe(length);
      await readInto(buffer, offset, options);
      return buffer;
    },
    readInto,
    async close() {
      const h = handle;
      handle = undefined;
      if (h) await (await h.catch(() => undefined))?.close();
    },
  };
}

/** A streaming writer to `filePath` (temp file + rename on commit; sha256 computed while writing). */
export function fileSink(filePath: string): ByteSink {
  const tmp = path.join(path.dirname(filePath), `.${path.basename(filePath)}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`);
  const hash = createHash("sha256");
  let handle: Promise<fs.FileHandle> | undefined;
  let size = 0;
  let state: "open" | "committed" | "aborted" = "open";
  const open = () => (handle ??= fs.open(tmp, "wx"));
  const ensureOpen = (what: string) => {
    if (state !== "open") throw new FileBytesError(filePath, `${what} after ${state}`);
  };
  return {
    name: filePath,
    async write(chunk, options) {
      ensureOpen("write");
      throwIfAborted(options?.signal);
      const fh = await open();
      hash.update(chunk);
      size += chunk.byteLength;
      let done = 0;
      while (done < chunk.byteLength) {
        const { bytesWritten } = await fh.write(chunk, done, chunk.byteLength - done);
        done += bytesWritten;
      }
    },
    async commit(options): Promise<WrittenObject> {
      ensureOpen("commit");
      throwIfAborted(options?.signal);
      const fh = await open();
      await fh.sync();
      await fh.close();
      await fs.rename(tmp, filePath);
      state = "committed";
      return { uri: filePath, size, sha256: hash.digest("hex") };
    },
    async abort() {
      if (state !== "open") return;
      state = "aborted";
      if (handle) await (await handle.catch(() => undefined))?.close().catch(() => undefined);
      await fs.rm(tmp, { force: true });
    },
  };
}
