/**
 * safetensors reader and writer (no native code). Format: 8-byte little-endian u64 header length N,
 * N bytes of JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {..}}`,
 * then the data section; offsets are relative to the start of the data section.
 *
 * The reader reads only the header and validates everything before any offset is trusted; the
 * writer is deterministic (tensors sorted by name, header padded with spaces to a multiple of 8 as
 * the reference implementation does) and streams tensor data into a ByteSink.
 */

import type { ByteSink, ByteSource, WrittenObject } from "./bytes";
import { DType, DTYPES, dtypeSize, isDType } from "./dtypes";

/** Headers above this are rejected before allocating (the reference implementation uses 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export type SafetensorsErrorCode =
  | "TRUNCATED" // fewer bytes than the 8-byte prefix / header / data section announce
  | "HEADER_TOO_LARGE" // header length above the limit
  | "BAD_JSON" // header is not valid UTF-8 JSON
  | "BAD_HEADER" // header is not a JSON object
  | "BAD_ENTRY" // a tensor entry is not {dtype, shape, data_offsets}
  | "BAD_DTYPE" // unknown dtype
  | "BAD_SHAPE" // shape is not an array of non-negative integers
  | "BAD_OFFSETS" // data_offsets not [begin, end] integers with begin <= end
  | "SIZE_MISMATCH" // product(shape) x dtype size != end - begin
  | "OUT_OF_BOUNDS" // a range ends past the data section
  | "OVERLAP" // two tensors' ranges overlap
  | "GAP" // bytes between tensors (or before the first) belong to no tensor
  | "TRAILING_BYTES" // bytes after the last tensor
  | "BAD_METADATA" // __metadata__ not an object of strings
  | "RESERVED_NAME" // a tensor named __proto__, constructor or prototype (object-key names JavaScript treats specially)
  | "WRITE_ORDER"; // writer misuse: data does not match the declared tensors

/** Any invalid safetensors file or writer misuse; `code` says which rule, the message names file and tensor. */
export class SafetensorsError extends Error {
  override readonly name = "SafetensorsError";
  constructor(
    readonly code: SafetensorsErrorCode,
    readonly file: string,
    message: string,
    readonly tensor?: string,
  ) {
    super(`${file}: ${tensor !== undefined ? `tensor "${tensor}": ` : ""}${message} [${code}]`);
  }
}

export interface TensorEntry {
  name: string;
  dtype: DType;
  shape: number[];
  numel: number;
  /** Byte offsets relative to the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** The source's name (file path or blob URI). */
  file: string;
  fileSize: number;
  /** N, the JSON header's length. */
  headerLength: number;
  /** Absolute offset of the data section (8 + N). */
  dataStart: number;
  /** Tensors sorted by name. */
  tensors: TensorEntry[];
  byName: Map<string, TensorEntry>;
  metadata?: Record<string, string>;
  /** The raw 8 + N prefix bytes (e.g. to hash the whole file while streaming its data). */
  prefix: Buffer;
}

/**
 * Tensor names that JavaScript objects treat specially: `header["__proto__"] = x` sets the prototype
 * instead of adding a key, so such a tensor silently vanishes from any header built on a plain object.
 * Rejected by the reader and the writer alike.
 */
export const RESERVED_TENSOR_NAMES: ReadonlySet<string> = new Set(["__proto__", "constructor", "prototype"]);

function rejectReservedName(name: string, file: string): void {
  if (RESERVED_TENSOR_NAMES.has(name)) {
    throw new SafetensorsError("RESERVED_NAME", file, `tensor name "${name}" is reserved (one of ${[...RESERVED_TENSOR_NAMES].join(", ")})`, name);
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Names the kind of a value, never its content: the file may not be a model at all (a path naming
 * another file), and an error message must not become a way to read it.
 */
function describe(v: unknown): string {
  if (v === null) return "null";
  if (Array.isArray(v)) return `an array of ${v.length} item${v.length === 1 ? "" : "s"}`;
  if (typeof v === "string") return `a string of ${v.length} character${v.length === 1 ? "" : "s"}`;
  if (typeof v === "number") return Number.isInteger(v) ? (v < 0 ? "a negative integer" : "an integer") : "a non-integer number";
  if (typeof v === "object") return "an object";
  return `a ${typeof v}`;
}

/** Reads and validates the header of a safetensors file without reading its data section. */
export async function readSafetensorsHeader(source: ByteSource, options: { signal?: AbortSignal; maxHeaderBytes?: number } = {}): Promise<SafetensorsHeader> {
  const file = source.name;
  const maxHeader = options.maxHeaderBytes ?? MAX_HEADER_BYTES;
  const fileSize = await source.size({ signal: options.signal });
  if (fileSize < 8) {
    throw new SafetensorsError("TRUNCATED", file, `file has ${fileSize} bytes, expected at least the 8-byte header length`);
  }
  const lengthBytes = await source.read(0, 8, { signal: options.signal });
  const declared = lengthBytes.readBigUInt64LE(0);
  if (declared > BigInt(maxHeader)) {
    // The declared length is not echoed: those 8 bytes are the file's content, whatever the file is.
    throw new SafetensorsError("HEADER_TOO_LARGE", file, `declared header length exceeds the ${maxHeader}-byte limit`);
  }
  const headerLength = Number(declared);
  if (8 + headerLength > fileSize) {
    throw new SafetensorsError("TRUNCATED", file, `declared header length runs past the end of the ${fileSize}-byte file`);
  }
  const headerBytes = await source.read(8, headerLength, { signal: options.signal });
  let parsed: unknown;
  try {
    const text = new TextDecoder("utf-8", { fatal: true }).decode(headerBytes);
    parsed = JSON.parse(text);
  } catch (err) {
    // V8's JSON errors quote the offending text; say only where parsing stopped.
    const position = /position (\d+)/.exec((err as Error).message)?.[1];
    throw new SafetensorsError("BAD_JSON", file, `header is not valid UTF-8 JSON${position !== undefined ? ` (stopped at byte ${position} of the header)` : ""}`);
  }
  const parsedHeader = parseHeaderObject(parsed, file, fileSize - 8 - headerLength);
  return {
    file,
    fileSize,
    headerLength,
    dataStart: 8 + headerLength,
    ...parsedHeader,
    prefix: Buffer.concat([lengthBytes, headerBytes]),
  };
}

/** Validates a parsed header against a data section of `dataSize` bytes. Pure. */
export function parseHeaderObject(parsed: unknown, file: string, dataSize: number): { tensors: TensorEntry[]; byName: Map<string, TensorEntry>; metadata?: Record<string, string> } {
  if (!isObject(parsed)) {
    throw new SafetensorsError("BAD_HEADER", file, `header must be a JSON object, got ${describe(parsed)}`);
  }
  let metadata: Record<string, string> | undefined;
  const tensors: TensorEntry[] = [];
  for (const [name, raw] of Object.entries(parsed)) {
    if (name === "__metadata__") {
      if (!isObject(raw)) throw new SafetensorsError("BAD_METADATA", file, `__metadata__ must be an object of strings, got ${describe(raw)}`);
      for (const [k, v] of Object.entries(raw)) {
        if (typeof v !== "string") {
          throw new SafetensorsError("BAD_METADATA", file, `__metadata__["${k}"] must be a string, got ${describe(v)}`);
        }
      }
      metadata = Object.assign(Object.create(null) as Record<string, string>, raw as Record<string, string>);
      continue;
    }
    rejectReservedName(name, file);
    tensors.push(parseEntry(name, raw, file, dataSize));
  }
  // Ranges must tile the data section exactly: sorted by begin, each starts where the last ended.
  const byOffset = [...tensors].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let cursor = 0;
  let previous: TensorEntry | undefined;
  for (const t of byOffset) {
    if (t.begin < cursor) {
      throw new SafetensorsError("OVERLAP", file, `bytes [${t.begin}, ${t.end}) overlap tensor "${previous!.name}" [${previous!.begin}, ${previous!.end})`, t.name);
    }
    if (t.begin > cursor) {
      throw new SafetensorsError(
        "GAP",
        file,
        `starts at byte ${t.begin} but the previous tensor${previous ? ` "${previous.name}"` : ""} ends at ${cursor}: ${t.begin - cursor} unclaimed bytes`,
        t.name,
      );
    }
    cursor = t.end;
    previous = t;
  }
  if (cursor !== dataSize) {
    throw new SafetensorsError("TRAILING_BYTES", file, `data section has ${dataSize} bytes but tensors cover only ${cursor} (${dataSize - cursor} trailing bytes)`);
  }
  tensors.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return { tensors, byName: new Map(tensors.map((t) => [t.name, t])), metadata };
}

function parseEntry(name: string, raw: unknown, file: string, dataSize: number): TensorEntry {
  if (!isObject(raw)) throw new SafetensorsError("BAD_ENTRY", file, `entry must be an object {dtype, shape, data_offsets}, got ${describe(raw)}`, name);
  for (const field of ["dtype", "shape", "data_offsets"]) {
    if (!(field in raw)) throw new SafetensorsError("BAD_ENTRY", file, `entry lacks "${field}"`, name);
  }
  const { dtype, shape, data_offsets: offsets } = raw;
  if (!isDType(dtype)) {
    throw new SafetensorsError("BAD_DTYPE", file, `dtype must be one of ${DTYPES.join(", ")}, got ${typeof dtype === "string" && dtype.length <= 8 ? `"${dtype}"` : describe(dtype)}`, name);
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError("BAD_SHAPE", file, `shape must be an array of non-negative integers, got ${describe(shape)}`, name);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
    throw new SafetensorsError("BAD_OFFSETS", file, `data_offsets must be [begin, end] integers with 0 <= begin <= end, got ${describe(offsets)}`, name);
  }
  const [begin, end] = offsets as [number, number];
  let numel = 1;
  for (const d of shape as number[]) numel *= d;
  const expected = numel * dtypeSize(dtype);
  if (!Number.isSafeInteger(expected) || expected !== end - begin) {
    throw new SafetensorsError("SIZE_MISMATCH", file, `shape ${JSON.stringify(shape)} x ${dtype} needs ${expected} bytes but data_offsets [${begin}, ${end}] span ${end - begin}`, name);
  }
  if (end > dataSize) {
    throw new SafetensorsError("OUT_OF_BOUNDS", file, `data_offsets [${begin}, ${end}] end past the ${dataSize}-byte data section`, name);
  }
  return { name, dtype, shape: [...(shape as number[])], numel, begin, end };
}

/** Reads one tensor's raw bytes (whole; for small tensors and tests; the engine reads ranges). */
export async function readTensorBytes(source: ByteSource, header: SafetensorsHeader, name: string, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
  const t = header.byName.get(name);
  if (!t) throw new SafetensorsError("BAD_ENTRY", header.file, "no such tensor", name);
  return source.read(header.dataStart + t.begin, t.end - t.begin, options);
}

// ---------------- writer ----------------

export interface TensorSpec {
  name: string;
  dtype: DType;
  shape: readonly number[];
}

export interface SafetensorsLayout {
  /** 8-byte length + space-padded JSON header. */
  prefix: Buffer;
  /** Tensors in write order (sorted by name) with their data-section byte ranges. */
  tensors: TensorEntry[];
  /** Total file size. */
  fileSize: number;
}

/** Plans the deterministic layout of a file holding `tensors` (sorted by name, header padded to 8). */
export function planSafetensorsLayout(tensors: readonly TensorSpec[], metadata?: Record<string, string>): SafetensorsLayout {
  const file = "<writer>";
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  // Null prototype: no key can reach Object.prototype's accessors, whatever names arrive.
  const header = Object.create(null) as Record<string, unknown>;
  if (metadata && Object.keys(metadata).length > 0) {
    const sortedMeta = Object.create(null) as Record<string, string>;
    for (const k of Object.keys(metadata).sort()) {
      if (typeof metadata[k] !== "string") throw new SafetensorsError("BAD_METADATA", file, `__metadata__["${k}"] must be a string`);
      sortedMeta[k] = metadata[k];
    }
    header.__metadata__ = sortedMeta;
  }
  const entries: TensorEntry[] = [];
  let offset = 0;
  for (let i = 0; i < sorted.length; i++) {
    const t = sorted[i];
    if (t.name === "__metadata__") throw new SafetensorsError("BAD_ENTRY", file, "tensor name __metadata__ is reserved", t.name);
    rejectReservedName(t.name, file);
    if (i > 0 && sorted[i - 1].name === t.name) throw new SafetensorsError("BAD_ENTRY", file, "duplicate tensor name", t.name);
    if (!isDType(t.dtype)) throw new SafetensorsError("BAD_DTYPE", file, `unknown dtype ${String(t.dtype)}`, t.name);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw new SafetensorsError("BAD_SHAPE", file, `shape must be non-negative integers, got ${JSON.stringify(t.shape)}`, t.name);
    }
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const bytes = numel * dtypeSize(t.dtype);
    entries.push({ name: t.name, dtype: t.dtype, shape: [...t.shape], numel, begin: offset, end: offset + bytes });
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = Buffer.from(JSON.stringify(header), "utf8");
  const pad = (8 - (json.length % 8)) % 8;
  if (pad) json = Buffer.concat([json, Buffer.alloc(pad, 0x20)]);
  const prefix = Buffer.alloc(8 + json.length);
  prefix.writeBigUInt64LE(BigInt(json.length), 0);
  json.copy(prefix, 8);
  return { prefix, tensors: entries, fileSize: prefix.length + offset };
}

/**
 * Streams a safetensors file into a sink: tensor data must be written in layout order (sorted by
 * name), each tensor exactly its byte size, in any number of chunks.
 */
export class SafetensorsWriter {
  readonly layout: SafetensorsLayout;
  private index = 0;
  private writtenInTensor = 0;
  private started = false;

  constructor(
    private readonly sink: ByteSink,
    tensors: readonly TensorSpec[],
    metadata?: Record<string, string>,
  ) {
    this.layout = planSafetensorsLayout(tensors, metadata);
  }

  /** The tensor the next bytes belong to (undefined when all are complete). */
  get currentTensor(): TensorEntry | undefined {
    this.skipEmpty();
    return this.layout.tensors[this.index];
  }

  private skipEmpty(): void {
    while (this.index < this.layout.tensors.length) {
      const t = this.layout.tensors[this.index];
      if (this.writtenInTensor < t.end - t.begin) return;
      this.index++;
      this.writtenInTensor = 0;
    }
  }

  private async ensureStarted(signal?: AbortSignal): Promise<void> {
    if (!this.started) {
      this.started = true;
      await this.sink.write(this.layout.prefix, { signal });
    }
  }

  /** Writes the next bytes of tensor `name` (which must be the current tensor). */
  async write(name: string, chunk: Uint8Array, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.ensureStarted(options.signal);
    if (chunk.byteLength === 0) return;
    const t = this.currentTensor;
    if (!t || t.name !== name) {
      throw new SafetensorsError("WRITE_ORDER", this.sink.name, `data written out of order: expected ${t ? `tensor "${t.name}"` : "no more data"}`, name);
    }
    const remaining = t.end - t.begin - this.writtenInTensor;
    if (chunk.byteLength > remaining) {
      throw new SafetensorsError("WRITE_ORDER", this.sink.name, `chunk of ${chunk.byteLength} bytes exceeds the ${remaining} bytes left in the tensor`, name);
    }
    this.writtenInTensor += chunk.byteLength;
    await this.sink.write(chunk, options);
  }

  /** Writes a whole tensor from chunks. */
  async writeTensor(name: string, data: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>, options: { signal?: AbortSignal } = {}): Promise<void> {
    if (data instanceof Uint8Array) {
      await this.write(name, data, options);
    } else {
      for await (const chunk of data) await this.write(name, chunk, options);
    }
    const t = this.layout.tensors.find((x) => x.name === name);
    if (t && this.currentTensor === t) {
      throw new SafetensorsError("WRITE_ORDER", this.sink.name, `tensor data ended ${t.end - t.begin - this.writtenInTensor} bytes short`, name);
    }
  }

  /** Checks every tensor is complete, then commits the sink. */
  async commit(options: { signal?: AbortSignal } = {}): Promise<WrittenObject> {
    await this.ensureStarted(options.signal);
    const t = this.currentTensor;
    if (t) {
      throw new SafetensorsError("WRITE_ORDER", this.sink.name, `commit before all data was written (${t.end - t.begin - this.writtenInTensor} bytes missing)`, t.name);
    }
    return this.sink.commit(options);
  }

  abort(): Promise<void> {
    return this.sink.abort();
  }
}

/** Convenience: writes a whole file from in-memory tensors (or chunk iterables). */
export async function writeSafetensors(
  sink: ByteSink,
  tensors: readonly (TensorSpec & { data: Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array> })[],
  options: { metadata?: Record<string, string>; signal?: AbortSignal } = {},
): Promise<WrittenObject> {
  const writer = new SafetensorsWriter(sink, tensors, options.metadata);
  try {
    const byName = new Map(tensors.map((t) => [t.name, t]));
    for (const entry of writer.layout.tensors) await writer.writeTensor(entry.name, byName.get(entry.name)!.data, options);
    return await writer.commit(options);
  } catch (err) {
    await writer.abort().catch(() => undefined);
    throw err;
  }
}
