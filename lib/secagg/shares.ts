/**
 * Encrypted Shamir shares of self-mask seeds, and the file a silo uploads with them.
 *
 * A share from silo i to silo j (j may be i) is AES-256-GCM under the pair's share key k_ij with a
 * random 12-byte nonce; the plaintext is the 32-byte little-endian share value y (its x is j); the
 * associated data is "flo-secagg/v1/share" || session[32] || u32(i) || u32(j), so a share cannot be
 * replayed into another session or presented as coming from another sender or for another recipient.
 * Encoded ciphertext = nonce[12] || ciphertext[32] || tag[16] (60 bytes, base64 in the shares file).
 *
 * Shares file (JSON):
 *   {"format": "flo-secagg-shares/1", "session": "<hex>", "sender": i,
 *    "shares": [{"recipient": 1, "ciphertext": "<base64>"}, ..., {"recipient": K, ...}]}
 */

import * as crypto from "node:crypto";
import { SecAggError } from "./errors";
import { fieldFromBytes, fieldToBytes } from "./shamir";
import { u32 } from "./session";

export const SHARES_FORMAT = "flo-secagg-shares/1";
export const SHARE_CIPHERTEXT_BYTES = 12 + 32 + 16;

export interface SharesFile {
  format: typeof SHARES_FORMAT;
  session: string;
  sender: number;
  shares: { recipient: number; ciphertext: string }[];
}

function associatedData(session: Buffer, sender: number, recipient: number): Buffer {
  return Buffer.concat([Buffer.from("flo-secagg/v1/share"), session, u32(sender), u32(recipient)]);
}

export function encryptShare(options: { shareKey: Buffer; session: Buffer; sender: number; recipient: number; value: bigint; nonce?: Buffer }): Buffer {
  const nonce = options.nonce ?? crypto.randomBytes(12);
  const cipher = crypto.createCipheriv("aes-256-gcm", options.shareKey, nonce);
  cipher.setAAD(associatedData(options.session, options.sender, options.recipient));
  const body = Buffer.concat([cipher.update(fieldToBytes(options.value)), cipher.final()]);
  return Buffer.concat([nonce, body, cipher.getAuthTag()]);
}

export function decryptShare(options: { shareKey: Buffer; session: Buffer; sender: number; recipient: number; ciphertext: Buffer; field: string }): bigint {
  const { ciphertext, field } = options;
  if (ciphertext.length !== SHARE_CIPHERTEXT_BYTES) throw new SecAggError("BAD_SHARE", field, `expected ${SHARE_CIPHERTEXT_BYTES} bytes, got ${ciphertext.length}`);
  const decipher = crypto.createDecipheriv("aes-256-gcm", options.shareKey, ciphertext.subarray(0, 12));
  decipher.setAAD(associatedData(options.session, options.sender, options.recipient));
  decipher.setAuthTag(ciphertext.subarray(44));
  let plain: Buffer;
  try {
    plain = Buffer.concat([decipher.update(ciphertext.subarray(12, 44)), decipher.final()]);
  } catch {
    throw new SecAggError("BAD_SHARE", field, `share from silo ${options.sender} to silo ${options.recipient} fails authentication (wrong session, sender, recipient or key, or altered)`);
  }
  return fieldFromBytes(plain, field);
}

/** Validates an uploaded shares file: format, session, sender, exactly one share per roster index 1..K. */
export function parseSharesFile(parsed: unknown, expected: { session: Buffer; sender: number; rosterSize: number; file: string }): SharesFile {
  const { file } = expected;
  const record = parsed as Record<string, unknown>;
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new SecAggError("BAD_UPLOAD", file, "expected a JSON object");
  if (record.format !== SHARES_FORMAT) throw new SecAggError("BAD_UPLOAD", `${file}: format`, `expected "${SHARES_FORMAT}"`);
  if (record.session !== expected.session.toString("hex")) throw new SecAggError("BAD_UPLOAD", `${file}: session`, `expected ${expected.session.toString("hex")}, got ${String(record.session)}`);
  if (record.sender !== expected.sender) throw new SecAggError("BAD_UPLOAD", `${file}: sender`, `expected ${expected.sender}, got ${String(record.sender)}`);
  const shares = record.shares;
  if (!Array.isArray(shares) || shares.length !== expected.rosterSize) {
    throw new SecAggError("BAD_UPLOAD", `${file}: shares`, `expected ${expected.rosterSize} shares (one per roster silo), got ${Array.isArray(shares) ? shares.length : typeof shares}`);
  }
  shares.forEach((raw: unknown, i) => {
    const share = raw as Record<string, unknown>;
    if (typeof raw !== "object" || raw === null || share.recipient !== i + 1) {
      throw new SecAggError("BAD_UPLOAD", `${file}: shares[${i}].recipient`, `expected ${i + 1} (shares in recipient order)`);
    }
    if (typeof share.ciphertext !== "string" || Buffer.from(share.ciphertext, "base64").length !== SHARE_CIPHERTEXT_BYTES) {
      throw new SecAggError("BAD_UPLOAD", `${file}: shares[${i}].ciphertext`, `expected base64 of ${SHARE_CIPHERTEXT_BYTES} bytes`);
    }
  });
  return parsed as SharesFile;
}
