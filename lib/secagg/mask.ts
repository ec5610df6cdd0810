/**
 * Silo side of a session: draw the self-mask seed, Shamir-share and encrypt it to every roster silo,
 * and write the masked update:
 *   masked = q + PRG(selfSeed) + sum_{j>i} PRG(s_ij) - sum_{j<i} PRG(s_ij)   (mod 2^k)
 * streamed chunk by chunk, so memory stays bounded by the chunk size whatever the model size.
 */

import type { ByteSink, ByteSource, WrittenObject } from "../models/bytes";
import { decodeFloats, dtypeSize, isFloatDType } from "../models/dtypes";
import { readSafetensorsHeader, SafetensorsHeader, SafetensorsWriter, TensorEntry } from "../models/safetensors";
import { SecAggError } from "./errors";
import { maskedMetadata, maskedTensorSpecs, streamLayout, StreamTensor, WEIGHT_TENSOR } from "./masked";
import { clampWeight, QuantizationPlan, quantizeInto, Rounding, UniformSource } from "./quantize";
import { addInto, MaskStream, setSigned, subtractInto } from "./ring";
import { pairSecrets, Roster, RingBits } from "./session";
import { fieldToBytes, randomFieldElement, splitSecret } from "./shamir";
import { encryptShare, SHARES_FORMAT, SharesFile } from "./shares";

export const DEFAULT_CHUNK_ELEMENTS = 1 << 16;

export interface SiloRoundSetup {
  selfIndex: number;
  /** PRG seed of the self mask: the 32-byte encoding of the shared field element. */
  selfSeed: Buffer;
  pairwise: { peer: number; maskSeed: Buffer }[];
  sharesFile: SharesFile;
}

/**
 * Derives the pairwise seeds and shares the self-mask seed. `selfSecret`, `coefficients` and `nonces`
 * (indexed by recipient - 1) are only for test vectors: normally all are fresh randomness.
 */
export function prepareSiloRound(options: {
  secretKey: Uint8Array;
  roster: Roster;
  session: Buffer;
  selfIndex: number;
  threshold: number;
  selfSecret?: bigint;
  coefficients?: readonly bigint[];
  nonces?: readonly Buffer[];
}): SiloRoundSetup {
  const { roster, session, selfIndex } = options;
  const count = roster.silos.length;
  const selfSecret = options.selfSecret ?? randomFieldElement();
  const shares = splitSecret({ secret: selfSecret, threshold: options.threshold, count, coefficients: options.coefficients });
  const pairwise: SiloRoundSetup["pairwise"] = [];
  const encrypted: SharesFile["shares"] = [];
  for (let peer = 1; peer <= count; peer++) {
    const secrets = pairSecrets({ secretKey: options.secretKey, roster, session, selfIndex, peerIndex: peer });
    if (peer !== selfIndex) pairwise.push({ peer, maskSeed: secrets.maskSeed });
    const ciphertext = encryptShare({ shareKey: secrets.shareKey, session, sender: selfIndex, recipient: peer, value: shares[peer - 1].y, nonce: options.nonces?.[peer - 1] });
    encrypted.push({ recipient: peer, ciphertext: ciphertext.toString("base64") });
  }
  return { selfIndex, selfSeed: fieldToBytes(selfSecret), pairwise, sharesFile: { format: SHARES_FORMAT, session: session.toString("hex"), sender: selfIndex, shares: encrypted } };
}

/** Signed PRG streams added to (+1) or subtracted from (-1) ring elements, read from a start element on. */
export class MaskApplier {
  private readonly streams: { stream: MaskStream; sign: 1 | -1 }[];

  constructor(
    streams: readonly { seed: Uint8Array; sign: 1 | -1 }[],
    private readonly ringBits: RingBits,
    startElement: number,
  ) {
    this.streams = streams.map((s) => ({ stream: new MaskStream(s.seed, ringBits, startElement), sign: s.sign }));
  }

  /** Applies the next `elements` stream elements to `words` (which hold exactly that many elements). */
  apply(words: Uint32Array, elements: number): void {
    for (const { stream, sign } of this.streams) {
      const mask = stream.next(elements);
      if (sign === 1) addInto(words, mask, this.ringBits);
      else subtractInto(words, mask, this.ringBits);
    }
  }
}

function pairwiseStream(seed: Uint8Array, sign: 1 | -1): { seed: Uint8Array; sign: 1 | -1 } {
  return { seed, sign };
}

/** The streams silo `setup.selfIndex` adds: its self mask, +s_ij for j > i, -s_ij for j < i. */
export function siloMaskStreams(setup: SiloRoundSetup): { seed: Uint8Array; sign: 1 | -1 }[] {
  return [{ seed: setup.selfSeed, sign: 1 }, ...setup.pairwise.map((p) => pairwiseStream(p.maskSeed, p.peer > setup.selfIndex ? 1 : -1))];
}

/** Float tensors of the global model: the coordinates secure aggregation sums (integer tensors come from the global model). */
export function floatTensors(global: SafetensorsHeader): TensorEntry[] {
  return global.tensors.filter((t) => isFloatDType(t.dtype));
}

async function readFloatChunk(source: ByteSource, header: SafetensorsHeader, entry: TensorEntry, start: number, count: number): Promise<Float32Array | Float64Array> {
  if (!isFloatDType(entry.dtype)) throw new SecAggError("BAD_INPUT", `${header.file}: tensor "${entry.name}"`, `expected a float dtype, got ${entry.dtype}`);
  const size = dtypeSize(entry.dtype);
  return decodeFloats(await source.read(header.dataStart + entry.begin + start * size, count * size), entry.dtype);
}

export interface MaskUpdateOptions {
  /** The trained model and the global model it started from: update = trained - global. */
  trained: ByteSource;
  global: ByteSource;
  sink: ByteSink;
  setup: SiloRoundSetup;
  session: Buffer;
  plan: QuantizationPlan;
  numExamples: number;
  maxExamples: number;
  rounding: Rounding;
  chunkElements?: number;
}

/** Clips, weights, quantizes and masks the update; writes the masked file. Nothing unmasked is written. */
export async function writeMaskedUpdate(options: MaskUpdateOptions): Promise<WrittenObject> {
  const { trained, global, plan, setup } = options;
  const chunk = options.chunkElements ?? DEFAULT_CHUNK_ELEMENTS;
  const globalHeader = await readSafetensorsHeader(global);
  const trainedHeader = await readSafetensorsHeader(trained);
  const floats = floatTensors(globalHeader);
  for (const g of floats) {
    const t = trainedHeader.byName.get(g.name);
    if (!t) throw new SecAggError("BAD_INPUT", `${trained.name}: tensor "${g.name}"`, "missing (the global model has it)");
    if (t.shape.length !== g.shape.length || t.shape.some((d, i) => d !== g.shape[i])) {
      throw new SecAggError("BAD_INPUT", `${trained.name}: tensor "${g.name}".shape`, `expected ${JSON.stringify(g.shape)} (the global model's), got ${JSON.stringify(t.shape)}`);
    }
  }
  const updateChunks = async function* (entry: TensorEntry): AsyncGenerator<Float64Array> {
    const t = trainedHeader.byName.get(entry.name)!;
    for (let start = 0; start < entry.numel; start += chunk) {
      const count = Math.min(chunk, entry.numel - start);
      const a = await readFloatChunk(trained, trainedHeader, t, start, count);
      const b = await readFloatChunk(global, globalHeader, entry, start, count);
      const diff = new Float64Array(count);
      for (let i = 0; i < count; i++) diff[i] = a[i] - b[i];
      yield diff;
    }
  };
  const layout = streamLayout(floats);
  // Pass 1: the update's L2 norm, for clipping, summed in stream order (so the Python side rounds alike).
  let squares = 0;
  for (const tensor of layout) {
    for await (const diff of updateChunks(globalHeader.byName.get(tensor.name)!)) for (let i = 0; i < diff.length; i++) squares += diff[i] * diff[i];
  }
  const norm = Math.sqrt(squares);
  if (!Number.isFinite(norm)) throw new SecAggError("BAD_INPUT", `${trained.name}`, "the update (trained - global) has a non-finite coordinate");
  const clipFactor = norm > plan.clipNorm ? plan.clipNorm / norm : 1;
  const weight = clampWeight(options.numExamples, options.maxExamples);
  const factor = clipFactor * weight * plan.scale;
  const limit = weight * plan.levels;

  const byName = new Map<string, StreamTensor>(layout.map((t) => [t.name, t]));
  const streams = siloMaskStreams(setup);
  const ringBits = plan.ringBits;
  const writer = new SafetensorsWriter(options.sink, maskedTensorSpecs(layout, ringBits), maskedMetadata({ session: options.session, sender: setup.selfIndex, ringBits }));
  const uniform = new UniformSource();
  const wordsPerElement = ringBits / 32;
  try {
    for (const entry of writer.layout.tensors) {
      if (entry.name === WEIGHT_TENSOR) {
        const words = new Uint32Array(wordsPerElement);
        setSigned(words, 0, weight, ringBits);
        new MaskApplier(streams, ringBits, 0).apply(words, 1);
        await writer.write(entry.name, new Uint8Array(words.buffer));
        continue;
      }
      const tensor = byName.get(entry.name)!;
      const applier = new MaskApplier(streams, ringBits, tensor.streamOffset);
      const globalEntry = globalHeader.byName.get(entry.name)!;
      for await (const diff of updateChunks(globalEntry)) {
        const words = new Uint32Array(diff.length * wordsPerElement);
        quantizeInto({ values: diff, factor, limit, rounding: options.rounding, words, offset: 0, ringBits, uniform });
        applier.apply(words, diff.length);
        await writer.write(entry.name, new Uint8Array(words.buffer));
      }
    }
    return await writer.commit();
  } catch (err) {
    await writer.abort().catch(() => undefined);
    throw err;
  }
}
