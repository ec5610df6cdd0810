/**
 * safetensors dtypes: sizes, and bulk little-endian decode/encode of float tensors to/from JS
 * typed arrays, including F16 and BF16 (round-to-nearest-even on encode).
 */

import * as os from "node:os";

export const DTYPE_SIZES = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U8: 1,
  BOOL: 1,
} as const;

export type DType = keyof typeof DTYPE_SIZES;
export type FloatDType = "F64" | "F32" | "F16" | "BF16";

export const DTYPES: readonly DType[] = Object.keys(DTYPE_SIZES) as DType[];

export function isDType(value: unknown): value is DType {
  return typeof value === "string" && Object.prototype.hasOwnProperty.call(DTYPE_SIZES, value);
}

export function isFloatDType(dtype: DType): dtype is FloatDType {
  return dtype === "F64" || dtype === "F32" || dtype === "F16" || dtype === "BF16";
}

export function dtypeSize(dtype: DType): number {
  return DTYPE_SIZES[dtype];
}

// Typed-array views below reinterpret bytes in host order; safetensors is little-endian.
const HOST_IS_LE = os.endianness() === "LE";
function assertLittleEndianHost(): void {
  if (!HOST_IS_LE) throw new Error("flo's tensor codecs need a little-endian host (safetensors data is little-endian)");
}

// ---------- scalar conversions ----------

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits -> number. */
export function f16BitsToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 bits -> binary16 bits, round to nearest, ties to even; NaN stays NaN, overflow -> Inf. */
export function f32BitsToF16Bits(x: number): number {
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // binary16 subnormal (or zero): value = mant24 * 2^(exp-150) = half * 2^-24
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rem > halfway || (rem === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (and reaches Inf at the top).
  if (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1)) h++;
  return sign | h;
}

/** float32 bits -> bfloat16 bits, round to nearest, ties to even; NaN stays (quiet) NaN. */
export function f32BitsToBf16Bits(x: number): number {
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff) !== 0) return ((x >>> 16) & 0x8000) | 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** number -> binary16 bits. Rounding via float32 first is exact here: double rounding through a
 *  format with >= 2p+2 bits (24 >= 2*11+2) is innocuous. */
export function numberToF16Bits(v: number): number {
  f32Scratch[0] = v;
  return f32BitsToF16Bits(u32Scratch[0]);
}

/** number -> bfloat16 bits (via float32, innocuous for the same reason: 24 >= 2*8+2). */
export function numberToBf16Bits(v: number): number {
  f32Scratch[0] = v;
  return f32BitsToBf16Bits(u32Scratch[0]);
}

export function bf16BitsToNumber(b: number): number {
  u32Scratch[0] = (b & 0xffff) << 16;
  return f32Scratch[0];
}

let f16Table: Float32Array | undefined;
function f16DecodeTable(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = f16BitsToNumber(h);
  }
  return f16Table;
}

// ---------- bulk conversions ----------

/** Views `bytes` as `T` when aligned, else copies into an aligned buffer first. */
function alignedCopy(bytes: Uint8Array, alignment: number): ArrayBuffer {
  if (bytes.byteOffset % alignment === 0) return bytes.buffer as ArrayBuffer;
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return copy.buffer;
}

function u16View(bytes: Uint8Array): Uint16Array {
  const count = bytes.byteLength >> 1;
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, count);
  return new Uint16Array(alignedCopy(bytes, 2), 0, count);
}

/**
 * Decodes little-endian float tensor bytes. F32 returns a zero-copy view when the bytes are
 * 4-aligned; F16/BF16 decode exactly into Float32Array (into `scratch` when given and long enough);
 * F64 returns a Float64Array view (or copy when unaligned).
 */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDType, scratch?: Float32Array): Float32Array | Float64Array {
  assertLittleEndianHost();
  const size = DTYPE_SIZES[dtype];
  if (bytes.byteLength % size !== 0) {
    throw new RangeError(`decodeFloats: ${bytes.byteLength} bytes is not a multiple of ${dtype}'s ${size}-byte size`);
  }
  const count = bytes.byteLength / size;
  switch (dtype) {
    case "F32":
      if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, count);
      return new Float32Array(alignedCopy(bytes, 4), 0, count);
    case "F64":
      if (bytes.byteOffset % 8 === 0) return new Float64Array(bytes.buffer, bytes.byteOffset, count);
      return new Float64Array(alignedCopy(bytes, 8), 0, count);
    case "F16": {
      const table = f16DecodeTable();
      const src = u16View(bytes);
      const out = scratch && scratch.length >= count ? scratch.subarray(0, count) : new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = table[src[i]];
      return out;
    }
    case "BF16": {
      const src = u16View(bytes);
      const out = scratch && scratch.length >= count ? scratch.subarray(0, count) : new Float32Array(count);
      const bits = new Uint32Array(out.buffer, out.byteOffset, count);
      for (let i = 0; i < count; i++) bits[i] = src[i] << 16;
      return out;
    }
  }
}

/**
 * Encodes values as little-endian `dtype` bytes (F32 rounds to nearest even via the typed array,
 * F16/BF16 round to nearest even). Writes into `target` when given (must be exactly sized).
 */
export function encodeFloats(values: ArrayLike<number>, dtype: FloatDType, target?: Uint8Array): Uint8Array {
  assertLittleEndianHost();
  const count = values.length;
  const byteLength = count * DTYPE_SIZES[dtype];
  let out: Uint8Array;
  if (target) {
    if (target.byteLength !== byteLength) {
      throw new RangeError(`encodeFloats: target has ${target.byteLength} bytes, expected ${byteLength} for ${count} ${dtype}`);
    }
    out = target;
  } else {
    out = new Uint8Array(byteLength);
  }
  const aligned = out.byteOffset % DTYPE_SIZES[dtype] === 0;
  const dest = aligned ? out : new Uint8Array(byteLength);
  switch (dtype) {
    case "F64":
      new Float64Array(dest.buffer, dest.byteOffset, count).set(values);
      break;
    case "F32":
      new Float32Array(dest.buffer, dest.byteOffset, count).set(values);
      break;
    case "F16":
    case "BF16": {
      // Round to f32 in bulk, then narrow the bits.
      const f32 = values instanceof Float32Array ? values : Float32Array.from(values);
      const bits = new Uint32Array(f32.buffer, f32.byteOffset, count);
      const u16 = new Uint16Array(dest.buffer, dest.byteOffset, count);
      if (dtype === "F16") for (let i = 0; i < count; i++) u16[i] = f32BitsToF16Bits(bits[i]);
      else for (let i = 0; i < count; i++) u16[i] = f32BitsToBf16Bits(bits[i]);
      break;
    }
  }
  if (!aligned) out.set(dest);
  return out;
}
