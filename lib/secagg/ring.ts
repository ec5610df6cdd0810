/**
 * Arithmetic in the ring Z_2^k, k = 32 or 64, on little-endian word buffers viewed as Uint32Array:
 * one word per element for k = 32, a (low, high) pair per element for k = 64. Also the PRG.
 *
 * PRG(seed) = the AES-256-CTR keystream under key = seed (32 bytes), initial counter block = 16 zero
 * bytes (the counter is the whole block, big-endian, as in NIST SP 800-38A), read as consecutive
 * little-endian k-bit words: element e is keystream bytes [e*k/8, (e+1)*k/8).
 */

import * as crypto from "node:crypto";
import type { RingBits } from "./session";

/** A Uint32Array over the bytes, copying only when they are not 4-aligned. */
export function wordsOf(bytes: Uint8Array): Uint32Array {
  if (bytes.byteOffset % 4 === 0) return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
  const copy = new Uint8Array(bytes.byteLength);
  copy.set(bytes);
  return new Uint32Array(copy.buffer);
}

/** The next elements of PRG(seed), read chunk by chunk. */
export class MaskStream {
  private readonly cipher: crypto.Cipher;
  private zeros = Buffer.alloc(0);

  /** Starts at element `startElement` of the stream (CTR mode seeks: counter block = byte offset / 16). */
  constructor(
    seed: Uint8Array,
    private readonly ringBits: RingBits,
    startElement = 0,
  ) {
    const startByte = startElement * (ringBits / 8);
    const counter = Buffer.alloc(16);
    counter.writeBigUInt64BE(BigInt(Math.floor(startByte / 16)), 8);
    this.cipher = crypto.createCipheriv("aes-256-ctr", seed, counter);
    const skip = startByte % 16;
    if (skip > 0) this.cipher.update(Buffer.alloc(skip));
  }

  /** The next `elements` ring elements' words. */
  next(elements: number): Uint32Array {
    const bytes = elements * (this.ringBits / 8);
    if (this.zeros.length < bytes) this.zeros = Buffer.alloc(bytes);
    return wordsOf(this.cipher.update(this.zeros.subarray(0, bytes)));
  }
}

/** acc += words (mod 2^k), element-wise over equally long word arrays. */
export function addInto(acc: Uint32Array, words: Uint32Array, ringBits: RingBits): void {
  if (ringBits === 32) {
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i] + words[i];
    return;
  }
  for (let i = 0; i < acc.length; i += 2) {
    const lo = acc[i] + words[i];
    acc[i] = lo;
    acc[i + 1] = acc[i + 1] + words[i + 1] + (lo > 0xffffffff ? 1 : 0);
  }
}

/** acc -= words (mod 2^k). */
export function subtractInto(acc: Uint32Array, words: Uint32Array, ringBits: RingBits): void {
  if (ringBits === 32) {
    for (let i = 0; i < acc.length; i++) acc[i] = acc[i] - words[i];
    return;
  }
  for (let i = 0; i < acc.length; i += 2) {
    const lo = acc[i] - words[i];
    acc[i] = lo;
    acc[i + 1] = acc[i + 1] - words[i + 1] - (lo < 0 ? 1 : 0);
  }
}

/** Stores the signed integer v (|v| < 2^53 and < 2^(k-1)) as element `index` of `words`. */
export function setSigned(words: Uint32Array, index: number, v: number, ringBits: RingBits): void {
  if (ringBits === 32) {
    words[index] = v;
    return;
  }
  const hi = Math.floor(v / 4294967296);
  words[2 * index] = v - hi * 4294967296;
  words[2 * index + 1] = hi;
}

/** Element `index` of `words` read as a signed integer in [-2^(k-1), 2^(k-1)) (exact below 2^53). */
export function getSigned(words: Uint32Array, index: number, ringBits: RingBits): number {
  if (ringBits === 32) return words[index] | 0;
  return (words[2 * index + 1] | 0) * 4294967296 + words[2 * index];
}
