/**
 * Long-term X25519 key pairs of silos. Keys travel as base64 of their raw 32 bytes (RFC 7748
 * encoding). The secret key file is JSON, written with mode 0600:
 *   {"format": "flo-secagg-x25519/1", "secretKey": "<base64 32 bytes>", "publicKey": "<base64 32 bytes>"}
 */

import * as crypto from "node:crypto";
import { promises as fs } from "node:fs";
import { SecAggError } from "./errors";

export const KEY_FILE_FORMAT = "flo-secagg-x25519/1";
const KEY_BYTES = 32;

export interface KeyPair {
  secretKey: Buffer;
  publicKey: Buffer;
}

// DER prefixes of PKCS#8 and SPKI for X25519 (RFC 8410): the raw 32-byte key follows.
const PKCS8_X25519_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex");
const SPKI_X25519_PREFIX = Buffer.from("302a300506032b656e032100", "hex");

export function generateKeyPair(): KeyPair {
  const { privateKey } = crypto.generateKeyPairSync("x25519");
  return keyPairFromSecret(privateKey.export({ format: "der", type: "pkcs8" }).subarray(PKCS8_X25519_PREFIX.length));
}

/** The key pair of a raw 32-byte secret (clamping is part of X25519 itself, so any 32 bytes work). */
export function keyPairFromSecret(secretKey: Uint8Array): KeyPair {
  if (secretKey.length !== KEY_BYTES) throw new SecAggError("BAD_KEY", "secretKey", `expected ${KEY_BYTES} bytes, got ${secretKey.length}`);
  const spki = crypto.createPublicKey(privateKeyObject(secretKey)).export({ format: "der", type: "spki" });
  return { secretKey: Buffer.from(secretKey), publicKey: Buffer.from(spki.subarray(SPKI_X25519_PREFIX.length)) };
}

function privateKeyObject(secretKey: Uint8Array): crypto.KeyObject {
  return crypto.createPrivateKey({ key: Buffer.concat([PKCS8_X25519_PREFIX, secretKey]), format: "der", type: "pkcs8" });
}

/** X25519(secret, peer public): the raw 32-byte shared secret; an all-zero result (low-order peer key) is refused. */
export function sharedSecret(secretKey: Uint8Array, peerPublicKey: Uint8Array, field = "publicKey"): Buffer {
  if (peerPublicKey.length !== KEY_BYTES) throw new SecAggError("BAD_KEY", field, `expected ${KEY_BYTES} bytes, got ${peerPublicKey.length}`);
  const publicKey = crypto.createPublicKey({ key: Buffer.concat([SPKI_X25519_PREFIX, peerPublicKey]), format: "der", type: "spki" });
  let secret: Buffer;
  try {
    secret = crypto.diffieHellman({ privateKey: privateKeyObject(secretKey), publicKey });
  } catch {
    throw new SecAggError("BAD_KEY", field, "X25519 with this public key fails (a low-order point?)");
  }
  if (secret.every((b) => b === 0)) throw new SecAggError("BAD_KEY", field, "X25519 with this public key gives the all-zero secret (a low-order point)");
  return secret;
}

/** Parses a base64 (standard or url-safe) public key of exactly 32 bytes; `field` names it in errors. */
export function parsePublicKey(text: unknown, field: string): Buffer {
  if (typeof text !== "string") throw new SecAggError("BAD_KEY", field, `expected a base64 string of ${KEY_BYTES} bytes, got ${text === null ? "null" : typeof text}`);
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    throw new SecAggError("BAD_KEY", field, `expected base64 of ${KEY_BYTES} bytes (44 characters), got ${trimmed.length} characters that are not base64`);
  }
  const bytes = Buffer.from(trimmed.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (bytes.length !== KEY_BYTES) throw new SecAggError("BAD_KEY", field, `expected ${KEY_BYTES} bytes, got ${bytes.length} (from ${trimmed.length} base64 characters)`);
  return bytes;
}

export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}

/** Writes a new key file (mode 0600); refuses to overwrite an existing file. */
export async function writeSecretKeyFile(file: string, pair: KeyPair): Promise<void> {
  const body = JSON.stringify({ format: KEY_FILE_FORMAT, secretKey: encodeKey(pair.secretKey), publicKey: encodeKey(pair.publicKey) }) + "\n";
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, "wx", 0o600);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new SecAggError("KEY_FILE_EXISTS", file, "a file already exists here; keygen never overwrites a key (move it away first)");
    throw err;
  }
  try {
    // The umask may have narrowed the mode further but never widened it; chmod makes 0600 exact.
    await handle.chmod(0o600);
    await handle.writeFile(body, "utf8");
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Reads a key file, checking its format and that its public key matches its secret key. */
export async function readSecretKeyFile(file: string): Promise<KeyPair> {
  const text = await fs.readFile(file, "utf8");
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SecAggError("BAD_KEY", file, `not a flo key file: expected JSON {"format": "${KEY_FILE_FORMAT}", "secretKey", "publicKey"}`);
  }
  const record = parsed as Record<string, unknown>;
  if (typeof parsed !== "object" || parsed === null || record.format !== KEY_FILE_FORMAT) {
    throw new SecAggError("BAD_KEY", `${file}: format`, `expected "${KEY_FILE_FORMAT}"`);
  }
  const secretKey = parsePublicKey(record.secretKey, `${file}: secretKey`);
  const pair = keyPairFromSecret(secretKey);
  const publicKey = parsePublicKey(record.publicKey, `${file}: publicKey`);
  if (!publicKey.equals(pair.publicKey)) throw new SecAggError("BAD_KEY", `${file}: publicKey`, "does not belong to the file's secretKey");
  return pair;
}
