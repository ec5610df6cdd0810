/**
 * Orchestrator side: given the masked updates of survivors S, every survivor's reveal (or, when D is
 * empty, at least t of them), rebuild each survivor's self-mask seed from t shares, then remove all
 * masks in one streaming pass:
 *   sum = sum_{i in S} masked_i - sum_{i in S} PRG(b_i) - sum_{i in S, d in D} sign(i, d) PRG(s_id)
 * with sign(i, d) = +1 if d > i else -1 (what silo i added), and decode it to the float weighted sum
 * and the weight sum. Pairwise masks between survivors cancel in the sum.
 */

import type { ByteSource } from "../models/bytes";
import type { SafetensorsHeader } from "../models/safetensors";
import { SecAggError } from "./errors";
import { MaskApplier } from "./mask";
import { StreamTensor, validateMaskedUpload, WEIGHT_TENSOR } from "./masked";
import type { QuantizationPlan } from "./quantize";
import { checkSplit, Reveal, Split } from "./reveal";
import { addInto, getSigned, wordsOf } from "./ring";
import type { Roster } from "./session";
import { fieldFromBytes, fieldToBytes, reconstructSecret, Share } from "./shamir";

export interface UnmaskOptions {
  roster: Roster;
  session: Buffer;
  threshold: number;
  plan: QuantizationPlan;
  split: Split;
  /** The masked update of each survivor (indexed by roster index); anything from D is refused. */
  masked: ReadonlyMap<number, ByteSource>;
  /** Reveals of the survivors that answered the unmask job. */
  reveals: readonly Reveal[];
  /** The float tensors being summed (the global model's), in any order. */
  layout: readonly StreamTensor[];
  /** Receives the decoded weighted sum, chunk by chunk, with the weight sum already known. */
  onChunk(chunk: { tensor: StreamTensor; start: number; sum: Float64Array; weightSum: number }): void | Promise<void>;
  chunkElements?: number;
}

export interface UnmaskResult {
  weightSum: number;
  survivors: number[];
  dropped: number[];
}

/** Checks what arrived and rebuilds the seeds; throws before any mask is removed. */
function recoverSeeds(options: UnmaskOptions, split: Split): { selfSeeds: Map<number, Buffer>; droppedSeeds: { survivor: number; dropped: number; seed: Buffer }[] } {
  const { session, threshold } = options;
  const sessionHex = session.toString("hex");
  const survivors = new Set(split.survivors);
  for (const index of options.masked.keys()) {
    if (!survivors.has(index)) throw new SecAggError("BAD_UPLOAD", `masked[${index}]`, `silo ${index} is dropped for this session: its update must not be used`);
  }
  const byRevealer = new Map<number, Reveal>();
  for (const reveal of options.reveals) {
    if (reveal.session !== sessionHex) throw new SecAggError("BAD_UPLOAD", `reveals[${reveal.revealer}].session`, `expected ${sessionHex}, got ${reveal.session}`);
    if (!survivors.has(reveal.revealer)) throw new SecAggError("BAD_UPLOAD", `reveals[${reveal.revealer}]`, `silo ${reveal.revealer} is dropped: nothing from it is used`);
    if (byRevealer.has(reveal.revealer)) throw new SecAggError("BAD_UPLOAD", `reveals[${reveal.revealer}]`, "two reveals from one silo");
    byRevealer.set(reveal.revealer, reveal);
  }
  const droppedSeeds: { survivor: number; dropped: number; seed: Buffer }[] = [];
  if (split.dropped.length > 0) {
    const silent = split.survivors.filter((i) => !byRevealer.has(i));
    if (silent.length > 0) {
      throw new SecAggError(
        "UNRECOVERABLE",
        "reveals",
        `survivors ${silent.join(", ")} did not reveal their pairwise seeds with dropped silos ${split.dropped.join(", ")}: re-run the round under a new session`,
      );
    }
    for (const reveal of byRevealer.values()) {
      for (const d of split.dropped) {
        const entry = reveal.pairwiseSeeds.find((p) => p.dropped === d);
        if (!entry || !/^[0-9a-f]{64}$/.test(entry.seed)) throw new SecAggError("UNRECOVERABLE", `reveals[${reveal.revealer}].pairwiseSeeds`, `no 32-byte hex seed with dropped silo ${d}`);
        droppedSeeds.push({ survivor: reveal.revealer, dropped: d, seed: Buffer.from(entry.seed, "hex") });
      }
    }
  }
  const selfSeeds = new Map<number, Buffer>();
  for (const owner of split.survivors) {
    const shares: Share[] = [];
    for (const reveal of byRevealer.values()) {
      const share = reveal.selfShares.find((s) => s.owner === owner);
      if (share && /^[0-9a-f]{64}$/.test(share.y)) shares.push({ x: reveal.revealer, y: fieldFromBytes(Buffer.from(share.y, "hex"), `reveals[${reveal.revealer}].selfShares[${owner}]`) });
    }
    if (shares.length < threshold) {
      throw new SecAggError("UNRECOVERABLE", `selfShares[${owner}]`, `${shares.length} shares of survivor ${owner}'s self-mask seed, need t = ${threshold}: re-run the round under a new session`);
    }
    selfSeeds.set(owner, fieldToBytes(reconstructSecret(shares, threshold, `selfShares[${owner}]`)));
  }
  return { selfSeeds, droppedSeeds };
}

export async function unmaskSum(options: UnmaskOptions): Promise<UnmaskResult> {
  const { roster, plan } = options;
  const ringBits = plan.ringBits;
  const split = checkSplit(options.split, roster.silos.length, options.threshold);
  const headers = new Map<number, SafetensorsHeader>();
  for (const index of split.survivors) {
    const source = options.masked.get(index);
    if (!source) throw new SecAggError("BAD_UPLOAD", `masked[${index}]`, `survivor ${index} has no masked update`);
  }
  const { selfSeeds, droppedSeeds } = recoverSeeds(options, split);
  for (const index of split.survivors) {
    headers.set(index, await validateMaskedUpload(options.masked.get(index)!, { session: options.session, sender: index, ringBits, layout: options.layout }));
  }
  const removal = [
    ...split.survivors.map((i) => ({ seed: selfSeeds.get(i)!, sign: -1 as const })),
    // Silo i added +s_id when d > i: remove it by subtracting, and vice versa.
    ...droppedSeeds.map((p): { seed: Uint8Array; sign: 1 | -1 } => ({ seed: p.seed, sign: p.dropped > p.survivor ? -1 : 1 })),
  ];
  const bytesPerElement = ringBits / 8;
  const sumRange = async (name: string, start: number, count: number, masks: MaskApplier): Promise<Uint32Array> => {
    const acc = new Uint32Array((count * bytesPerElement) / 4);
    for (const index of split.survivors) {
      const header = headers.get(index)!;
      const entry = header.byName.get(name)!;
      addInto(acc, wordsOf(await options.masked.get(index)!.read(header.dataStart + entry.begin + start * bytesPerElement, count * bytesPerElement)), ringBits);
    }
    masks.apply(acc, count);
    return acc;
  };
  const weightSum = getSigned(await sumRange(WEIGHT_TENSOR, 0, 1, new MaskApplier(removal, ringBits, 0)), 0, ringBits);
  if (weightSum < 0 || weightSum > plan.totalMaxExamples) {
    throw new SecAggError("BAD_UPLOAD", "weightSum", `unmasked weight sum ${weightSum} is outside [0, ${plan.totalMaxExamples}]: a share, seed or masked update is wrong`);
  }
  const chunk = options.chunkElements ?? 1 << 16;
  for (const tensor of options.layout) {
    const masks = new MaskApplier(removal, ringBits, tensor.streamOffset);
    for (let start = 0; start < tensor.numel; start += chunk) {
      const count = Math.min(chunk, tensor.numel - start);
      const acc = await sumRange(tensor.name, start, count, masks);
      const sum = new Float64Array(count);
      for (let i = 0; i < count; i++) sum[i] = getSigned(acc, i, ringBits) / plan.scale;
      await options.onChunk({ tensor, start, sum, weightSum });
    }
  }
  return { weightSum, survivors: split.survivors, dropped: split.dropped };
}
