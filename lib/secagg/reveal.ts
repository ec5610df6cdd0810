/**
 * Survivor side of unmasking. Once the orchestrator fixes survivors S and dropped D for a session,
 * each survivor reveals its pairwise seeds with the silos in D and its (decrypted) shares of the
 * self-mask seeds of the silos in S; never both kinds for one silo (S and D partition the roster).
 * The split it answered is recorded per session before anything is revealed, and a different split
 * for the same session is refused: otherwise an orchestrator could learn a silo's pairwise seeds
 * (declaring it dropped) and its self-mask seed (declaring it a survivor) and unmask it alone.
 *
 * Record file: <recordDir>/<session hex>.json = {"survivors": [...], "dropped": [...]} (sorted indexes).
 */

import { promises as fs } from "node:fs";
import * as path from "node:path";
import { SecAggError } from "./errors";
import { pairSecrets, Roster } from "./session";
import { fieldToBytes } from "./shamir";
import { decryptShare, SharesFile } from "./shares";

export interface Reveal {
  session: string;
  revealer: number;
  /** s_{revealer,d} for every d in D (hex). */
  pairwiseSeeds: { dropped: number; seed: string }[];
  /** The revealer's share of each survivor's self-mask seed (x = revealer; y as 32 bytes hex). */
  selfShares: { owner: number; y: string }[];
}

export interface Split {
  survivors: number[];
  dropped: number[];
}

/** Checks that S and D partition 1..K and are sorted-unique; returns them sorted. */
export function checkSplit(split: Split, rosterSize: number, threshold: number): Split {
  const survivors = [...split.survivors].sort((a, b) => a - b);
  const dropped = [...split.dropped].sort((a, b) => a - b);
  const seen = new Set<number>();
  for (const [field, list] of [
    ["survivors", survivors],
    ["dropped", dropped],
  ] as const) {
    for (const index of list) {
      if (!Number.isSafeInteger(index) || index < 1 || index > rosterSize) throw new SecAggError("BAD_ROSTER", field, `silo indexes run from 1 to ${rosterSize}, got ${index}`);
      if (seen.has(index)) throw new SecAggError("BAD_ROSTER", field, `silo ${index} is listed twice (a silo is either a survivor or dropped)`);
      seen.add(index);
    }
  }
  if (seen.size !== rosterSize) {
    const missing = Array.from({ length: rosterSize }, (_, i) => i + 1).filter((i) => !seen.has(i));
    throw new SecAggError("BAD_ROSTER", "survivors", `every roster silo must be a survivor or dropped; missing ${missing.join(", ")}`);
  }
  if (survivors.length < threshold) throw new SecAggError("TOO_FEW_SURVIVORS", "survivors", `${survivors.length} survivors, the threshold is t = ${threshold}: nothing may be unmasked`);
  return { survivors, dropped };
}

function recordFile(recordDir: string, session: Buffer): string {
  return path.join(recordDir, `${session.toString("hex")}.json`);
}

/** Refuses when a different split is on record for the session; the same split again (a retried unmask job) reveals nothing new. */
async function checkRecord(recordDir: string, session: Buffer, split: Split): Promise<void> {
  let previous: string;
  try {
    previous = await fs.readFile(recordFile(recordDir, session), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw err;
  }
  const body = JSON.stringify(split);
  if (previous !== body) {
    throw new SecAggError("SECOND_ROSTER", "survivors", `this silo already revealed for session ${session.toString("hex").slice(0, 16)}… with split ${previous}; refusing ${body}`);
  }
}

async function recordSplit(recordDir: string, session: Buffer, split: Split): Promise<void> {
  await fs.mkdir(recordDir, { recursive: true, mode: 0o700 });
  try {
    await fs.writeFile(recordFile(recordDir, session), JSON.stringify(split), { flag: "wx", mode: 0o600 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    // Another job of this silo recorded meanwhile: it must have been the same split.
    await checkRecord(recordDir, session, split);
  }
}

export async function revealForUnmask(options: {
  secretKey: Uint8Array;
  roster: Roster;
  session: Buffer;
  threshold: number;
  selfIndex: number;
  split: Split;
  /** The validated shares files of the survivors (each holds a share for this silo). */
  sharesFiles: ReadonlyMap<number, SharesFile>;
  recordDir: string;
}): Promise<Reveal> {
  const { roster, session, selfIndex } = options;
  const split = checkSplit(options.split, roster.silos.length, options.threshold);
  if (!split.survivors.includes(selfIndex)) throw new SecAggError("BAD_ROSTER", "survivors", `silo ${selfIndex} is asked to reveal but is not a survivor`);
  await checkRecord(options.recordDir, session, split);
  // Decrypt (and so authenticate) everything before recording: a bad share must not burn the session.
  const selfShares: Reveal["selfShares"] = [];
  for (const owner of split.survivors) {
    const file = options.sharesFiles.get(owner);
    if (!file) throw new SecAggError("UNRECOVERABLE", `shares[${owner}]`, `no shares file from survivor ${owner}`);
    const { shareKey } = pairSecrets({ secretKey: options.secretKey, roster, session, selfIndex, peerIndex: owner });
    const y = decryptShare({
      shareKey,
      session,
      sender: owner,
      recipient: selfIndex,
      ciphertext: Buffer.from(file.shares[selfIndex - 1].ciphertext, "base64"),
      field: `shares[${owner}].shares[${selfIndex - 1}]`,
    });
    selfShares.push({ owner, y: fieldToBytes(y).toString("hex") });
  }
  const pairwiseSeeds = split.dropped.map((dropped) => ({ dropped, seed: pairSecrets({ secretKey: options.secretKey, roster, session, selfIndex, peerIndex: dropped }).maskSeed.toString("hex") }));
  await recordSplit(options.recordDir, session, split);
  return { session: session.toString("hex"), revealer: selfIndex, pairwiseSeeds, selfShares };
}
