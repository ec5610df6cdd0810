/**
 * WebAssembly SIMD weighted-sum kernel: out[i] = sum_k w[k] * rows[k][i] for F32 rows, accumulated
 * in float64 (f64x2.promote_low_f32x4 + mul + add), 3-4x the plain JS loop, which V8 does not
 * vectorize. The module is assembled here from bytes (tiny, no toolchain needed) and imports a
 * SHARED memory, so the engine can read update chunks straight into it and a hashing worker can
 * read the same bytes without copies.
 *
 * Memory map of a kernel arena: [0, 512) row pointers (i32, K <= 128), [512, 1536) weights (f64),
 * then caller-managed buffers from PARAMS_BYTES on (16-byte aligned).
 */

// tsconfig's lib has no DOM types; Node provides WebAssembly at runtime. Just what we use:
// eslint-disable-next-line @typescript-eslint/no-namespace -- an ambient declaration of the global WebAssembly object, not a module
declare namespace WebAssembly {
  class Module {
    constructor(bytes: Uint8Array);
  }
  class Memory {
    constructor(descriptor: { initial: number; maximum: number; shared: boolean });
    readonly buffer: ArrayBuffer;
  }
  class Instance {
    constructor(module: Module, imports: object);
    readonly exports: Record<string, unknown>;
  }
}

const PAGE = 65536;
export const MAX_SIMD_ROWS = 128;
export const PARAMS_BYTES = 2048;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function section(id: number, body: number[]): number[] {
  return [id, ...uleb(body.length), ...body];
}

function name(s: string): number[] {
  const bytes = [...Buffer.from(s, "utf8")];
  return [...uleb(bytes.length), ...bytes];
}

// opcodes
const LOCAL_GET = 0x20,
  LOCAL_SET = 0x21,
  I32_CONST = 0x41,
  I32_ADD = 0x6a,
  I32_SHL = 0x74,
  I32_GE_U = 0x4f;
const I32_LOAD = 0x28,
  F64_LOAD = 0x2b,
  BLOCK = 0x02,
  LOOP = 0x03,
  BR = 0x0c,
  BR_IF = 0x0d,
  END = 0x0b,
  VOID = 0x40;
const simd = (op: number) => [0xfd, ...uleb(op)];
const V128_LOAD = (offset: number) => [...simd(0x00), 4, ...uleb(offset)];
const V128_STORE = (offset: number) => [...simd(0x0b), 4, ...uleb(offset)];
const F64X2_SPLAT = simd(0x14),
  F64X2_ADD = simd(0xf0),
  F64X2_SUB = simd(0xf1),
  F64X2_MUL = simd(0xf2),
  F64X2_PROMOTE_LOW = simd(0x5f);
const F32X4_DEMOTE_ZERO = simd(0x5e);
const F64X2_EXTRACT = (lane: number) => [...simd(0x21), lane];
const F64_CONST_0 = [0x44, 0, 0, 0, 0, 0, 0, 0, 0];
const F64_ADD = 0xa0,
  F64_EQ = 0x61;
const SHUFFLE_LOW_HALVES = [...simd(0x0d), 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
const SHUFFLE_HIGH_TO_LOW = [...simd(0x0d), 8, 9, 10, 11, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15];
const MEMORY_FILL = [0xfc, ...uleb(11), 0x00];

// params: 0 out, 1 k (even), 2 n ; locals: 3 j, 4 rp, 5 re, 6 o, 7 rb (i32), 8 w, 9 v, 10 wb, 11 vb (v128)
const [OUT, K, N, J, RP, RE, O, RB, W, V, WB, VB] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];

/** Two rows per sweep over `out` (halves the out traffic); the caller pads an odd K with a zero-weight row. */
function wsumBody(): number[] {
  const promoteLo = (v: number, w: number) => [LOCAL_GET, v, ...F64X2_PROMOTE_LOW, LOCAL_GET, w, ...F64X2_MUL];
  const promoteHi = (v: number, w: number) => [LOCAL_GET, v, LOCAL_GET, v, ...SHUFFLE_HIGH_TO_LOW, ...F64X2_PROMOTE_LOW, LOCAL_GET, w, ...F64X2_MUL];
  const code = [
    // out[0..n) = 0
    LOCAL_GET,
    OUT,
    I32_CONST,
    0,
    LOCAL_GET,
    N,
    I32_CONST,
    3,
    I32_SHL,
    ...MEMORY_FILL,
    I32_CONST,
    0,
    LOCAL_SET,
    J,
    BLOCK,
    VOID,
    LOOP,
    VOID,
    LOCAL_GET,
    J,
    LOCAL_GET,
    K,
    I32_GE_U,
    BR_IF,
    1,
    LOCAL_GET,
    J,
    I32_CONST,
    2,
    I32_SHL,
    I32_LOAD,
    2,
    0,
    LOCAL_SET,
    RP,
    LOCAL_GET,
    J,
    I32_CONST,
    2,
    I32_SHL,
    I32_LOAD,
    2,
    4,
    LOCAL_SET,
    RB,
    LOCAL_GET,
    RP,
    LOCAL_GET,
    N,
    I32_CONST,
    2,
    I32_SHL,
    I32_ADD,
    LOCAL_SET,
    RE,
    LOCAL_GET,
    J,
    I32_CONST,
    3,
    I32_SHL,
    F64_LOAD,
    3,
    ...uleb(512),
    ...F64X2_SPLAT,
    LOCAL_SET,
    W,
    LOCAL_GET,
    J,
    I32_CONST,
    3,
    I32_SHL,
    F64_LOAD,
    3,
    ...uleb(520),
    ...F64X2_SPLAT,
    LOCAL_SET,
    WB,
    LOCAL_GET,
    OUT,
    LOCAL_SET,
    O,
    BLOCK,
    VOID,
    LOOP,
    VOID,
    LOCAL_GET,
    RP,
    LOCAL_GET,
    RE,
    I32_GE_U,
    BR_IF,
    1,
    LOCAL_GET,
    RP,
    ...V128_LOAD(0),
    LOCAL_SET,
    V,
    LOCAL_GET,
    RB,
    ...V128_LOAD(0),
    LOCAL_SET,
    VB,
    LOCAL_GET,
    O,
    LOCAL_GET,
    O,
    ...V128_LOAD(0),
    ...promoteLo(V, W),
    ...promoteLo(VB, WB),
    ...F64X2_ADD,
    ...F64X2_ADD,
    ...V128_STORE(0),
    LOCAL_GET,
    O,
    LOCAL_GET,
    O,
    ...V128_LOAD(16),
    ...promoteHi(V, W),
    ...promoteHi(VB, WB),
    ...F64X2_ADD,
    ...F64X2_ADD,
    ...V128_STORE(16),
    LOCAL_GET,
    RP,
    I32_CONST,
    16,
    I32_ADD,
    LOCAL_SET,
    RP,
    LOCAL_GET,
    RB,
    I32_CONST,
    16,
    I32_ADD,
    LOCAL_SET,
    RB,
    LOCAL_GET,
    O,
    I32_CONST,
    32,
    I32_ADD,
    LOCAL_SET,
    O,
    BR,
    0,
    END,
    END,
    LOCAL_GET,
    J,
    I32_CONST,
    2,
    I32_ADD,
    LOCAL_SET,
    J,
    BR,
    0,
    END,
    END,
    END,
  ];
  const locals = [2, 5, 0x7f, 4, 0x7b];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

/**
 * demote(dst, src, n) -> i32: dst (f32[n]) = src (f64[n]) rounded to nearest, n a multiple of 4;
 * returns 1 when every value is finite (sums v - v, which is NaN exactly for NaN/Inf).
 * params: 0 dst, 1 src, 2 n ; locals: 3 stop (i32), 4 acc, 5 a, 6 b (v128)
 */
function demoteBody(): number[] {
  const [DST, SRC, NN, STOP, ACC, A, B] = [0, 1, 2, 3, 4, 5, 6];
  const code = [
    ...F64_CONST_0,
    ...F64X2_SPLAT,
    LOCAL_SET,
    ACC,
    LOCAL_GET,
    SRC,
    LOCAL_GET,
    NN,
    I32_CONST,
    3,
    I32_SHL,
    I32_ADD,
    LOCAL_SET,
    STOP,
    BLOCK,
    VOID,
    LOOP,
    VOID,
    LOCAL_GET,
    SRC,
    LOCAL_GET,
    STOP,
    I32_GE_U,
    BR_IF,
    1,
    LOCAL_GET,
    SRC,
    ...V128_LOAD(0),
    LOCAL_SET,
    A,
    LOCAL_GET,
    SRC,
    ...V128_LOAD(16),
    LOCAL_SET,
    B,
    LOCAL_GET,
    ACC,
    LOCAL_GET,
    A,
    LOCAL_GET,
    A,
    ...F64X2_SUB,
    ...F64X2_ADD,
    LOCAL_GET,
    B,
    LOCAL_GET,
    B,
    ...F64X2_SUB,
    ...F64X2_ADD,
    LOCAL_SET,
    ACC,
    LOCAL_GET,
    DST,
    LOCAL_GET,
    A,
    ...F32X4_DEMOTE_ZERO,
    LOCAL_GET,
    B,
    ...F32X4_DEMOTE_ZERO,
    ...SHUFFLE_LOW_HALVES,
    ...V128_STORE(0),
    LOCAL_GET,
    SRC,
    I32_CONST,
    32,
    I32_ADD,
    LOCAL_SET,
    SRC,
    LOCAL_GET,
    DST,
    I32_CONST,
    16,
    I32_ADD,
    LOCAL_SET,
    DST,
    BR,
    0,
    END,
    END,
    LOCAL_GET,
    ACC,
    ...F64X2_EXTRACT(0),
    LOCAL_GET,
    ACC,
    ...F64X2_EXTRACT(1),
    F64_ADD,
    LOCAL_GET,
    ACC,
    ...F64X2_EXTRACT(0),
    LOCAL_GET,
    ACC,
    ...F64X2_EXTRACT(1),
    F64_ADD,
    F64_EQ,
    END,
  ];
  const locals = [2, 1, 0x7f, 3, 0x7b];
  const body = [...locals, ...code];
  return [...uleb(body.length), ...body];
}

function moduleBytes(): Uint8Array {
  const type = section(1, [2, 0x60, 3, 0x7f, 0x7f, 0x7f, 0, 0x60, 3, 0x7f, 0x7f, 0x7f, 1, 0x7f]);
  // import "e" "m": shared memory (flags 3 = has max + shared); limits are overridden by the
  // memory object passed at instantiation, which must satisfy min 1 / max 65536 pages.
  const imports = section(2, [1, ...name("e"), ...name("m"), 0x02, 0x03, ...uleb(1), ...uleb(65536)]);
  const funcs = section(3, [2, 0, 1]);
  const exports = section(7, [2, ...name("wsum"), 0x00, 0, ...name("demote"), 0x00, 1]);
  const code = section(10, [2, ...wsumBody(), ...demoteBody()]);
  return Uint8Array.from([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...type, ...imports, ...funcs, ...exports, ...code]);
}

let compiled: WebAssembly.Module | null | undefined;
function kernelModule(): WebAssembly.Module | null {
  if (compiled === undefined) {
    try {
      compiled = new WebAssembly.Module(moduleBytes());
    } catch {
      compiled = null; // no SIMD/threads support: callers use the JS kernel
    }
  }
  return compiled;
}

/**
 * A shared-memory arena (SharedArrayBuffer) with the SIMD kernel bound to it when WebAssembly SIMD
 * is available (else `weightedSum` runs a JS loop on the same memory).
 */
export class SimdArena {
  readonly buffer: SharedArrayBuffer;
  private readonly wsum?: (out: number, k: number, n: number) => void;
  private readonly demote?: (dst: number, src: number, n: number) => number;
  private readonly ptrs: Int32Array;
  private readonly weights: Float64Array;
  private next = PARAMS_BYTES;

  /** An arena with at least `bytes` usable bytes. */
  constructor(bytes: number) {
    const pages = Math.max(1, Math.ceil((bytes + PARAMS_BYTES) / PAGE));
    const module = kernelModule();
    if (module) {
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
      this.buffer = memory.buffer as unknown as SharedArrayBuffer;
      const instance = new WebAssembly.Instance(module, { e: { m: memory } });
      this.wsum = instance.exports.wsum as (out: number, k: number, n: number) => void;
      this.demote = instance.exports.demote as (dst: number, src: number, n: number) => number;
    } else {
      this.buffer = new SharedArrayBuffer(pages * PAGE);
    }
    this.ptrs = new Int32Array(this.buffer, 0, MAX_SIMD_ROWS);
    this.weights = new Float64Array(this.buffer, 512, MAX_SIMD_ROWS);
    arenas.set(this.buffer, this);
  }

  /** True when the WebAssembly SIMD kernel is in use. */
  get simd(): boolean {
    return this.wsum !== undefined;
  }

  /** Carves a 16-byte aligned region (bump allocation; arenas live for one aggregation). */
  allocate(bytes: number): Uint8Array {
    const start = this.next;
    const end = start + Math.ceil(bytes / 16) * 16;
    if (end > this.buffer.byteLength) throw new RangeError(`SimdArena: ${bytes} bytes do not fit (${this.buffer.byteLength - start} left)`);
    this.next = end;
    return new Uint8Array(this.buffer, start, bytes);
  }

  /** out[0..length) = sum_k weights[k] * rows[k][0..length); all arrays must live in this arena. */
  weightedSum(rows: readonly Float32Array[], weights: readonly number[], out: Float64Array, length: number): void {
    const vectorLength = length & ~3;
    for (let k = 0; k < rows.length; k++) {
      this.ptrs[k] = rows[k].byteOffset;
      this.weights[k] = weights[k];
    }
    let k = rows.length;
    if (k % 2 === 1) {
      // pad to an even count with a zero-weight copy of row 0 (adds exactly 0 for finite values)
      this.ptrs[k] = rows[0].byteOffset;
      this.weights[k] = 0;
      k++;
    }
    if (vectorLength > 0 && this.wsum) this.wsum(out.byteOffset, k, vectorLength);
    for (let i = this.wsum ? vectorLength : 0; i < length; i++) {
      let s = 0;
      for (let k = 0; k < rows.length; k++) s += weights[k] * rows[k][i];
      out[i] = s;
    }
  }

  /**
   * Rounds `values` to float32 little-endian bytes in `target` (both in this arena) and reports
   * whether every value was finite; the encode and the NaN/Inf check in one pass.
   */
  encodeF32(values: Float64Array, target: Uint8Array): boolean {
    const length = values.length;
    if (target.byteLength !== length * 4) throw new RangeError(`encodeF32: target has ${target.byteLength} bytes, expected ${length * 4}`);
    if (values.buffer !== this.buffer || target.buffer !== this.buffer || values.byteOffset % 8 !== 0 || target.byteOffset % 4 !== 0) {
      throw new RangeError("encodeF32: values and target must be aligned views of this arena");
    }
    const vectorLength = this.demote ? length & ~3 : 0;
    let finite = vectorLength > 0 ? this.demote!(target.byteOffset, values.byteOffset, vectorLength) === 1 : true;
    const f32 = new Float32Array(this.buffer, target.byteOffset, length);
    for (let i = vectorLength; i < length; i++) {
      const v = values[i];
      if (v - v !== 0) finite = false;
      f32[i] = v;
    }
    return finite;
  }
}

const arenas = new WeakMap<ArrayBufferLike, SimdArena>();

/** The arena owning all of these arrays, if any (then the SIMD kernel can run on them). */
export function arenaOf(rows: readonly (Float32Array | Float64Array)[], out: Float64Array): SimdArena | undefined {
  const arena = arenas.get(out.buffer);
  if (!arena || rows.length === 0 || rows.length >= MAX_SIMD_ROWS) return undefined;
  for (const r of rows) if (!(r instanceof Float32Array) || r.buffer !== out.buffer || r.byteOffset % 4 !== 0) return undefined;
  return out.byteOffset % 8 === 0 ? arena : undefined;
}
