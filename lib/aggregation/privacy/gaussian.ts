/**
 * Gaussian noise from a cryptographically secure source. DP guarantees assume the adversary cannot
 * predict the noise, so Math.random (xorshift, state recoverable from outputs) is not acceptable.
 * Uniforms: 53 random bits from node:crypto (randomFillSync) -> (0, 1]; normals: Box-Muller (both outputs used).
 * A deterministic stream (AES-256-CTR keystream keyed by sha256(seed)) exists ONLY behind the explicit
 * `insecureTestSeed` option, for reproducible tests; production code never passes it.
 */
import { createCipheriv, createHash, createHmac, randomBytes, randomFillSync } from "node:crypto";

export interface GaussianSource {
  /** One N(0, 1) sample. */
  next(): number;
  /** out[i] += sigma * N(0, 1) for i < length. */
  addNoise(out: Float64Array, sigma: number, length?: number): void;
  /** True when seeded for tests (not private!). Recorded in manifests so it cannot go unnoticed. */
  readonly deterministic: boolean;
}

export interface GaussianSourceOptions {
  /** Makes the stream reproducible. Tests only: noise that can be re-derived gives no privacy. */
  insecureTestSeed?: string;
  /**
   * A secret random key (32 bytes, from `newNoiseKey`) and a label: the stream is the AES-256-CTR
   * keystream under HMAC-SHA256(key, label), so independent chunks (possibly in worker threads) draw
   * independent, unpredictable noise from one per-round key. The key must never be persisted.
   */
  key?: { secret: Buffer; label: string };
  /** Bytes fetched per refill. */
  blockBytes?: number;
}

const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 2 ** 53;

export function createGaussianSource(options: GaussianSourceOptions = {}): GaussianSource {
  const blockBytes = Math.max(64, (options.blockBytes ?? 64 * 1024) & ~7);
  // Random words land in our own aligned buffer (read as uint32, no per-value Buffer calls).
  const words = new Uint32Array(blockBytes / 4);
  const wordBytes = new Uint8Array(words.buffer);
  let refill: () => void;
  const keystream = (key: Buffer) => {
    const cipher = createCipheriv("aes-256-ctr", key, Buffer.alloc(16));
    const zeros = Buffer.alloc(blockBytes);
    return () => wordBytes.set(cipher.update(zeros));
  };
  if (options.key !== undefined) {
    if (options.key.secret.length !== 32) throw new RangeError(`noise key must be 32 bytes, got ${options.key.secret.length}`);
    refill = keystream(createHmac("sha256", options.key.secret).update(options.key.label, "utf8").digest());
  } else if (options.insecureTestSeed !== undefined) {
    refill = keystream(createHash("sha256").update(options.insecureTestSeed, "utf8").digest());
  } else {
    refill = () => randomFillSync(words);
  }
  let index = words.length;
  let spare = 0;
  let hasSpare = false;

  /** Uniform in (0, 1]: 53 random bits (21 + 32 from two words), +1 so log() never sees 0. */
  const uniform = (): number => {
    if (index + 2 > words.length) {
      refill();
      index = 0;
    }
    const hi = words[index] >>> 11;
    const lo = words[index + 1];
    index += 2;
    return (hi * TWO_POW_32 + lo + 1) / TWO_POW_53;
  };

  /** Box-Muller: two independent normals from two uniforms. */
  const next = (): number => {
    if (hasSpare) {
      hasSpare = false;
      return spare;
    }
    const radius = Math.sqrt(-2 * Math.log(uniform()));
    const angle = 2 * Math.PI * uniform();
    spare = radius * Math.sin(angle);
    hasSpare = true;
    return radius * Math.cos(angle);
  };

  return {
    deterministic: options.insecureTestSeed !== undefined,
    next,
    addNoise(out, sigma, length = out.length) {
      if (sigma === 0) return;
      for (let i = 0; i < length; i++) out[i] += sigma * next();
    },
  };
}

/** A fresh secret per-round noise key (CSPRNG), or one derived from a test seed (NOT private). */
export function newNoiseKey(insecureTestSeed?: string, round?: number): Buffer {
  if (insecureTestSeed === undefined) return randomBytes(32);
  return createHash("sha256")
    .update(`${insecureTestSeed}/round/${round ?? 0}`, "utf8")
    .digest();
}
