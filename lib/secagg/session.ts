/**
 * Roster, session and the per-session secrets derived from long-term keys. Every byte string below is
 * defined exactly so other implementations (the Python silo package) derive the same values:
 *
 *   u32(n), u64(n): little-endian unsigned integers; str(s): u32(byte length) || UTF-8 bytes.
 *   roster order: silos sorted by the UTF-8 bytes of their id; a silo's index is its 1-based position.
 *   rosterDigest = SHA-256("flo-secagg/v1/roster" || u32(K) || for each silo: str(id) || publicKey[32])
 *   session      = SHA-256("flo-secagg/v1/session" || str(federationId) || u64(round) || u64(attempt)
 *                          || u32(threshold) || u32(ringBits) || rosterDigest)
 *   pairwise seed s_ij = HKDF-SHA256(ikm = X25519(sk_i, pk_j), salt = session,
 *                          info = "flo-secagg/v1/pairwise-mask" || u32(min(i,j)) || u32(max(i,j)), 32 bytes)
 *   share key k_ij     = the same with info label "flo-secagg/v1/share-key"
 * Revealing s_ij (for a dropped silo) reveals neither k_ij, nor the X25519 secret, nor another session's seeds.
 */

import * as crypto from "node:crypto";
import { SecAggError } from "./errors";
import { sharedSecret } from "./keys";

export interface RosterEntry {
  id: string;
  publicKey: Buffer;
}

/** Silos in protocol order; `indexOf(id)` is 1-based. */
export interface Roster {
  silos: readonly RosterEntry[];
  digest: Buffer;
  indexOf(id: string): number;
}

export type RingBits = 32 | 64;

export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
}

function u64(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
}

function str(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  return Buffer.concat([u32(bytes.length), bytes]);
}

export function buildRoster(silos: readonly RosterEntry[]): Roster {
  if (silos.length < 2) throw new SecAggError("BAD_ROSTER", "silos", `secure aggregation needs at least 2 silos, got ${silos.length}`);
  const sorted = [...silos].sort((a, b) => Buffer.compare(Buffer.from(a.id, "utf8"), Buffer.from(b.id, "utf8")));
  const seenKeys = new Map<string, string>();
  sorted.forEach((silo, i) => {
    if (silo.publicKey.length !== 32) throw new SecAggError("BAD_ROSTER", `silos[${silo.id}].publicKey`, `expected 32 bytes, got ${silo.publicKey.length}`);
    if (i > 0 && sorted[i - 1].id === silo.id) throw new SecAggError("BAD_ROSTER", `silos[${silo.id}]`, "silo id appears twice");
    const key = silo.publicKey.toString("hex");
    const other = seenKeys.get(key);
    if (other !== undefined) throw new SecAggError("BAD_ROSTER", `silos[${silo.id}].publicKey`, `same public key as silo "${other}": every silo needs its own key pair`);
    seenKeys.set(key, silo.id);
  });
  const digest = sha256(Buffer.from("flo-secagg/v1/roster"), u32(sorted.length), ...sorted.flatMap((s) => [str(s.id), s.publicKey]));
  const positions = new Map(sorted.map((s, i) => [s.id, i + 1]));
  return {
    silos: sorted,
    digest,
    indexOf(id: string): number {
      const index = positions.get(id);
      if (index === undefined) throw new SecAggError("BAD_ROSTER", "silo", `"${id}" is not in the roster (${sorted.map((s) => s.id).join(", ")})`);
      return index;
    },
  };
}

export interface SessionInput {
  federationId: string;
  round: number;
  /** Generation/attempt of the round: a resumed or re-run round uses a new attempt, hence a new session. */
  attempt: number;
  threshold: number;
  ringBits: RingBits;
  roster: Roster;
}

export function sessionId(input: SessionInput): Buffer {
  for (const field of ["round", "attempt"] as const) {
    if (!Number.isSafeInteger(input[field]) || input[field] < 0) throw new SecAggError("BAD_PARAMETERS", field, `expected a non-negative integer, got ${input[field]}`);
  }
  checkThreshold(input.threshold, input.roster.silos.length);
  return sha256(Buffer.from("flo-secagg/v1/session"), str(input.federationId), u64(input.round), u64(input.attempt), u32(input.threshold), u32(input.ringBits), input.roster.digest);
}

export function checkThreshold(threshold: number, silos: number): void {
  if (!Number.isSafeInteger(threshold) || threshold < 2 || threshold > silos) {
    throw new SecAggError("BAD_PARAMETERS", "threshold", `expected an integer t with 2 <= t <= ${silos} (the roster size), got ${threshold}`);
  }
}

/** The default threshold: ceil(2K/3), at least 2. */
export function defaultThreshold(silos: number): number {
  return Math.max(2, Math.ceil((2 * silos) / 3));
}

function sha256(...parts: Buffer[]): Buffer {
  const hash = crypto.createHash("sha256");
  for (const p of parts) hash.update(p);
  return hash.digest();
}

function derive(label: string, shared: Buffer, session: Buffer, i: number, j: number): Buffer {
  const info = Buffer.concat([Buffer.from(label), u32(Math.min(i, j)), u32(Math.max(i, j))]);
  return Buffer.from(crypto.hkdfSync("sha256", shared, session, info, 32));
}

export interface PairSecrets {
  maskSeed: Buffer;
  shareKey: Buffer;
}

/** Silo `selfIndex`'s secrets shared with silo `peerIndex` (symmetric: both ends derive the same). */
export function pairSecrets(options: { secretKey: Uint8Array; roster: Roster; session: Buffer; selfIndex: number; peerIndex: number }): PairSecrets {
  const { roster, selfIndex, peerIndex } = options;
  const peer = roster.silos[peerIndex - 1];
  if (!peer || !roster.silos[selfIndex - 1]) throw new SecAggError("BAD_ROSTER", "index", `silo indexes run from 1 to ${roster.silos.length}, got ${selfIndex} and ${peerIndex}`);
  const shared = sharedSecret(options.secretKey, peer.publicKey, `silos[${peer.id}].publicKey`);
  return {
    maskSeed: derive("flo-secagg/v1/pairwise-mask", shared, options.session, selfIndex, peerIndex),
    shareKey: derive("flo-secagg/v1/share-key", shared, options.session, selfIndex, peerIndex),
  };
}
