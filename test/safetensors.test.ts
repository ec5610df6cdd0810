import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { bf16BitsToNumber, decodeFloats, encodeFloats, f16BitsToNumber, numberToBf16Bits, numberToF16Bits } from "../lib/models/dtypes";
import { fileSink, fileSource, FileBytesError } from "../lib/models/fileBytes";
import { planSafetensorsLayout, readSafetensorsHeader, readTensorBytes, SafetensorsError, SafetensorsErrorCode, SafetensorsWriter, writeSafetensors } from "../lib/models/safetensors";
import { memorySink, memorySource, rawSafetensors, sha256 } from "./fixtures/memoryBytes";

describe("safetensors writer/reader", () => {
  const f32 = (xs: number[]) => new Uint8Array(new Float32Array(xs).buffer);

  test("round trip; deterministic bytes whatever the input order; header padded with spaces to 8", async () => {
    const tensors = [
      { name: "z.weight", dtype: "F32" as const, shape: [2, 2], data: f32([1, 2, 3, 4]) },
      { name: "a.bias", dtype: "F32" as const, shape: [3], data: f32([5, 6, 7]) },
      { name: "count", dtype: "I64" as const, shape: [], data: new Uint8Array(new BigInt64Array([42n]).buffer) },
      { name: "empty", dtype: "F16" as const, shape: [0, 4], data: new Uint8Array(0) },
    ];
    const s1 = memorySink();
    const s2 = memorySink();
    const w1 = await writeSafetensors(s1, tensors, { metadata: { format: "pt" } });
    await writeSafetensors(s2, [...tensors].reverse(), { metadata: { format: "pt" } });
    expect(s1.committed!.equals(s2.committed!)).toBe(true);
    expect(w1.sha256).toBe(sha256(s1.committed!));
    expect(w1.size).toBe(s1.committed!.length);

    const bytes = s1.committed!;
    const headerLength = Number(bytes.readBigUInt64LE(0));
    expect(headerLength % 8).toBe(0);
    const headerText = bytes.subarray(8, 8 + headerLength).toString("utf8");
    expect(headerText.trimEnd().length).toBeGreaterThan(headerText.length - 8);
    expect(headerText.startsWith('{"__metadata__":{"format":"pt"},"a.bias":')).toBe(true);

    const src = memorySource("mem://model", bytes);
    const header = await readSafetensorsHeader(src);
    expect(header.tensors.map((t) => t.name)).toEqual(["a.bias", "count", "empty", "z.weight"]);
    expect(header.metadata).toEqual({ format: "pt" });
    expect(header.byName.get("z.weight")).toMatchObject({ dtype: "F32", shape: [2, 2], numel: 4 });
    // data laid out in name order
    expect(header.byName.get("a.bias")!.begin).toBe(0);
    expect(Array.from(decodeFloats(await readTensorBytes(src, header, "z.weight"), "F32"))).toEqual([1, 2, 3, 4]);
    expect((await readTensorBytes(src, header, "count")).readBigInt64LE(0)).toBe(42n);
  });

  test("unsigned U32/U64 tensors round trip with exact values up to 2^32-1 and 2^64-1", async () => {
    const u32 = Uint32Array.of(0, 1, 0xffffffff);
    const u64 = BigUint64Array.of(0n, 2n ** 63n, 2n ** 64n - 1n);
    const sink = memorySink();
    await writeSafetensors(sink, [
      { name: "masked32", dtype: "U32", shape: [3], data: new Uint8Array(u32.buffer) },
      { name: "masked64", dtype: "U64", shape: [3, 1], data: new Uint8Array(u64.buffer) },
    ]);
    const src = memorySource("mem://masked", sink.committed!);
    const header = await readSafetensorsHeader(src);
    expect(header.byName.get("masked32")).toMatchObject({ dtype: "U32", numel: 3, begin: 0, end: 12 });
    expect(header.byName.get("masked64")).toMatchObject({ dtype: "U64", shape: [3, 1], begin: 12, end: 36 });
    const b32 = await readTensorBytes(src, header, "masked32");
    expect([0, 4, 8].map((o) => b32.readUInt32LE(o))).toEqual([0, 1, 0xffffffff]);
    const b64 = await readTensorBytes(src, header, "masked64");
    expect([0, 8, 16].map((o) => b64.readBigUInt64LE(o))).toEqual([0n, 2n ** 63n, 2n ** 64n - 1n]);
    // a U64 entry whose byte span is sized for U32 is refused
    const bad = rawSafetensors({ w: { dtype: "U64", shape: [2], data_offsets: [0, 8] } }, 8);
    await expect(readSafetensorsHeader(memorySource("mem://bad", bad))).rejects.toMatchObject({ code: "SIZE_MISMATCH", tensor: "w" });
  });

  test("writer streams chunks and rejects out-of-order or short data", async () => {
    const sink = memorySink();
    const w = new SafetensorsWriter(sink, [
      { name: "b", dtype: "F32", shape: [4] },
      { name: "a", dtype: "U8", shape: [2] },
    ]);
    await expect(w.write("b", f32([1]))).rejects.toMatchObject({ code: "WRITE_ORDER" });
    await w.write("a", Uint8Array.of(1));
    await w.write("a", Uint8Array.of(2));
    await w.write("b", f32([1, 2]));
    await expect(w.write("b", f32([3, 4, 5]))).rejects.toMatchObject({ code: "WRITE_ORDER" });
    await expect(w.commit()).rejects.toMatchObject({ code: "WRITE_ORDER", tensor: "b" });
    await w.write("b", f32([3, 4]));
    const written = await w.commit();
    const header = await readSafetensorsHeader(memorySource("m", sink.committed!));
    expect(header.fileSize).toBe(written.size);
    expect(planSafetensorsLayout([{ name: "x", dtype: "F32", shape: [3] }]).fileSize).toBe(8 + 56 + 12);
  });

  // Each malformed file must fail with its own code, naming the file (and the tensor when one is at fault).
  const cases: { what: string; bytes: () => Buffer; code: SafetensorsErrorCode; tensor?: string; maxHeaderBytes?: number }[] = [
    { what: "shorter than the 8-byte prefix", bytes: () => Buffer.alloc(5), code: "TRUNCATED" },
    {
      what: "header length past the end of the file",
      bytes: () => {
        const b = rawSafetensors({}, 0, "{}");
        b.writeBigUInt64LE(1000n);
        return b;
      },
      code: "TRUNCATED",
    },
    {
      what: "absurd header length (2^62), rejected without allocating",
      bytes: () => {
        const b = rawSafetensors({}, 0, "{}");
        b.writeBigUInt64LE(1n << 62n);
        return b;
      },
      code: "HEADER_TOO_LARGE",
    },
    { what: "header above a configured limit", bytes: () => rawSafetensors({}, 0, "{}" + " ".repeat(100)), code: "HEADER_TOO_LARGE", maxHeaderBytes: 64 },
    { what: "not JSON", bytes: () => rawSafetensors(null, 0, "{not json"), code: "BAD_JSON" },
    { what: "invalid UTF-8", bytes: () => Buffer.concat([rawSafetensors(null, 0, "{}  "), Buffer.alloc(0)]).fill(0xff, 8, 10), code: "BAD_JSON" },
    { what: "header is an array", bytes: () => rawSafetensors([1, 2]), code: "BAD_HEADER" },
    { what: "entry without data_offsets", bytes: () => rawSafetensors({ w: { dtype: "F32", shape: [1] } }, 4), code: "BAD_ENTRY", tensor: "w" },
    { what: "unknown dtype", bytes: () => rawSafetensors({ w: { dtype: "F8_E4M3", shape: [1], data_offsets: [0, 1] } }, 1), code: "BAD_DTYPE", tensor: "w" },
    { what: "negative dimension", bytes: () => rawSafetensors({ w: { dtype: "F32", shape: [-1], data_offsets: [0, 4] } }, 4), code: "BAD_SHAPE", tensor: "w" },
    { what: "fractional dimension", bytes: () => rawSafetensors({ w: { dtype: "F32", shape: [1.5], data_offsets: [0, 4] } }, 4), code: "BAD_SHAPE", tensor: "w" },
    { what: "offsets reversed", bytes: () => rawSafetensors({ w: { dtype: "U8", shape: [0], data_offsets: [4, 0] } }, 4), code: "BAD_OFFSETS", tensor: "w" },
    { what: "shape x dtype != byte range", bytes: () => rawSafetensors({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } }, 8), code: "SIZE_MISMATCH", tensor: "w" },
    { what: "range past the data section (truncated data)", bytes: () => rawSafetensors({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } }, 12), code: "OUT_OF_BOUNDS", tensor: "w" },
    {
      what: "overlapping ranges",
      bytes: () => rawSafetensors({ a: { dtype: "F32", shape: [2], data_offsets: [0, 8] }, b: { dtype: "F32", shape: [2], data_offsets: [4, 12] } }, 12),
      code: "OVERLAP",
      tensor: "b",
    },
    {
      what: "gap between tensors",
      bytes: () => rawSafetensors({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] }, b: { dtype: "F32", shape: [1], data_offsets: [8, 12] } }, 12),
      code: "GAP",
      tensor: "b",
    },
    { what: "bytes after the last tensor", bytes: () => rawSafetensors({ a: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, 9), code: "TRAILING_BYTES" },
    { what: "metadata value not a string", bytes: () => rawSafetensors({ __metadata__: { epochs: 3 } }), code: "BAD_METADATA" },
  ];

  test.each(cases)("rejects $what with $code", async ({ bytes, code, tensor, maxHeaderBytes }) => {
    const src = memorySource("bad/model.safetensors", bytes());
    const err = await readSafetensorsHeader(src, { maxHeaderBytes }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(SafetensorsError);
    expect((err as SafetensorsError).code).toBe(code);
    expect((err as SafetensorsError).message).toContain("bad/model.safetensors");
    if (tensor) {
      expect((err as SafetensorsError).tensor).toBe(tensor);
      expect((err as SafetensorsError).message).toContain(`tensor "${tensor}"`);
    }
  });

  test("an absurd header length is rejected after reading only the 8-byte prefix", async () => {
    const b = rawSafetensors({}, 0, "{}");
    b.writeBigUInt64LE(1n << 62n);
    const src = memorySource("huge", b);
    await expect(readSafetensorsHeader(src)).rejects.toMatchObject({ code: "HEADER_TOO_LARGE" });
    expect(src.reads).toBe(1);
  });
});

describe("F16/BF16 codecs", () => {
  test("every F16 bit pattern decodes and re-encodes to itself (NaNs stay NaN)", () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const decoded = decodeFloats(new Uint8Array(bits.buffer), "F16");
    const reencoded = new Uint16Array(encodeFloats(decoded, "F16").buffer);
    for (let i = 0; i < 65536; i++) {
      if (Number.isNaN(decoded[i])) expect(Number.isNaN(f16BitsToNumber(reencoded[i]))).toBe(true);
      else if (reencoded[i] !== i) throw new Error(`F16 0x${i.toString(16)} -> ${decoded[i]} -> 0x${reencoded[i].toString(16)}`);
    }
  });

  test("every BF16 bit pattern decodes and re-encodes to itself", () => {
    const bits = new Uint16Array(65536).map((_, i) => i);
    const decoded = decodeFloats(new Uint8Array(bits.buffer), "BF16");
    const reencoded = new Uint16Array(encodeFloats(decoded, "BF16").buffer);
    for (let i = 0; i < 65536; i++) {
      if (Number.isNaN(decoded[i])) expect(Number.isNaN(bf16BitsToNumber(reencoded[i]))).toBe(true);
      else if (reencoded[i] !== i) throw new Error(`BF16 0x${i.toString(16)} -> ${decoded[i]} -> 0x${reencoded[i].toString(16)}`);
    }
  });

  test("F16 encode rounds to nearest, ties to even; overflow to Inf; subnormals", () => {
    expect(numberToF16Bits(1)).toBe(0x3c00);
    expect(numberToF16Bits(-2)).toBe(0xc000);
    expect(numberToF16Bits(65504)).toBe(0x7bff);
    expect(numberToF16Bits(65519)).toBe(0x7bff); // below the halfway point to 65536
    expect(numberToF16Bits(65520)).toBe(0x7c00); // tie rounds to even = Inf
    expect(numberToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie -> even (down)
    expect(numberToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie -> even (up)
    expect(numberToF16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // above the tie
    expect(numberToF16Bits(2 ** -24)).toBe(0x0001); // smallest subnormal
    expect(numberToF16Bits(2 ** -25)).toBe(0x0000); // tie -> even (zero)
    expect(numberToF16Bits(1.5 * 2 ** -25)).toBe(0x0001);
    expect(numberToF16Bits(2 ** -14 - 2 ** -25)).toBe(0x0400); // rounds up into the normals
    expect(numberToF16Bits(0.1)).toBe(0x2e66);
    expect(f16BitsToNumber(0x2e66)).toBeCloseTo(0.0999755859375, 15);
    expect(Number.isNaN(f16BitsToNumber(numberToF16Bits(NaN)))).toBe(true);
    expect(numberToF16Bits(-Infinity)).toBe(0xfc00);
  });

  test("BF16 encode rounds to nearest, ties to even", () => {
    expect(numberToBf16Bits(1)).toBe(0x3f80);
    expect(numberToBf16Bits(1 + 2 ** -8)).toBe(0x3f80); // tie -> even (down)
    expect(numberToBf16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82); // tie -> even (up)
    expect(numberToBf16Bits(1 + 2 ** -8 + 2 ** -16)).toBe(0x3f81);
    expect(numberToBf16Bits(3.4e38)).toBe(0x7f80); // rounds past the largest bf16 to Inf
    expect(bf16BitsToNumber(0x4049)).toBe(3.140625);
    expect(Number.isNaN(bf16BitsToNumber(numberToBf16Bits(NaN)))).toBe(true);
  });

  test("decode works on unaligned bytes", () => {
    const backing = new Uint8Array(9);
    backing.set(new Uint8Array(new Float32Array([1.5, -2]).buffer), 1);
    expect(Array.from(decodeFloats(backing.subarray(1), "F32"))).toEqual([1.5, -2]);
    const f64 = new Uint8Array(17);
    f64.set(new Uint8Array(new Float64Array([0.1, 3]).buffer), 1);
    expect(Array.from(decodeFloats(f64.subarray(1), "F64"))).toEqual([0.1, 3]);
  });
});

describe("local file bytes", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-filebytes-"));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("sink is invisible until commit, hashes what it wrote; abort leaves nothing", async () => {
    const target = path.join(dir, "model.safetensors");
    const sink = fileSink(target);
    await sink.write(Buffer.from("hello "));
    await sink.write(Buffer.from("world"));
    await expect(fs.stat(target)).rejects.toThrow();
    const written = await sink.commit();
    expect(written).toEqual({ uri: target, size: 11, sha256: sha256(Buffer.from("hello world")) });
    expect(await fs.readFile(target, "utf8")).toBe("hello world");
    await expect(sink.write(Buffer.from("x"))).rejects.toBeInstanceOf(FileBytesError);

    const aborted = fileSink(path.join(dir, "other.bin"));
    await aborted.write(Buffer.from("partial"));
    await aborted.abort();
    expect((await fs.readdir(dir)).sort()).toEqual(["model.safetensors"]);
  });

  test("source reads ranges and rejects short reads naming the file", async () => {
    const target = path.join(dir, "f.bin");
    await fs.writeFile(target, Buffer.from("0123456789"));
    const src = fileSource(target);
    expect(await src.size()).toBe(10);
    expect((await src.read(3, 4)).toString()).toBe("3456");
    await expect(src.read(8, 4)).rejects.toThrow(`${target}: short read: wanted 4 bytes at offset 8, file ends after 2`);
    await src.close!();
  });
});
