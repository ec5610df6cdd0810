/**
 * Stored format of a masked update: a safetensors file whose tensors are the global model's float
 * tensors (same names and shapes) with dtype U32 (k = 32) or U64 (k = 64), holding ring elements, plus
 * the masked weight as tensor "flo.secagg.weight" of shape [1]. Metadata:
 *   {"format": "flo-secagg-masked/1", "session": "<hex>", "sender": "<index>", "ringBits": "32"|"64"}
 *
 * Mask stream positions: element 0 is the weight; then the float tensors in the order of the UTF-8
 * bytes of their names, each row-major. A tensor's masks start at its stream offset, whatever order
 * the file stores tensors in.
 */

import type { ByteSource } from "../models/bytes";
import { readSafetensorsHeader, SafetensorsHeader, TensorSpec } from "../models/safetensors";
import { SecAggError } from "./errors";
import type { RingBits } from "./session";

export const MASKED_FORMAT = "flo-secagg-masked/1";
export const WEIGHT_TENSOR = "flo.secagg.weight";

export interface StreamTensor {
  name: string;
  shape: number[];
  numel: number;
  /** Position of the tensor's first element in the mask streams. */
  streamOffset: number;
}

export function streamLayout(tensors: readonly { name: string; shape: readonly number[] }[]): StreamTensor[] {
  const sorted = [...tensors].sort((a, b) => Buffer.compare(Buffer.from(a.name, "utf8"), Buffer.from(b.name, "utf8")));
  let offset = 1;
  return sorted.map((t) => {
    if (t.name === WEIGHT_TENSOR) throw new SecAggError("BAD_INPUT", `tensor "${t.name}"`, "this name is reserved for the masked weight");
    const numel = t.shape.reduce((a, b) => a * b, 1);
    const entry = { name: t.name, shape: [...t.shape], numel, streamOffset: offset };
    offset += numel;
    return entry;
  });
}

export function maskedDType(ringBits: RingBits): "U32" | "U64" {
  return ringBits === 32 ? "U32" : "U64";
}

export function maskedTensorSpecs(layout: readonly StreamTensor[], ringBits: RingBits): TensorSpec[] {
  const dtype = maskedDType(ringBits);
  return [{ name: WEIGHT_TENSOR, dtype, shape: [1] }, ...layout.map((t) => ({ name: t.name, dtype, shape: t.shape }))];
}

export function maskedMetadata(options: { session: Buffer; sender: number; ringBits: RingBits }): Record<string, string> {
  return { format: MASKED_FORMAT, session: options.session.toString("hex"), sender: String(options.sender), ringBits: String(options.ringBits) };
}

/**
 * Checks an uploaded masked update before survivors are fixed: metadata names this session and
 * sender, and the tensors are exactly the expected ones with the expected shapes and dtype.
 */
export async function validateMaskedUpload(source: ByteSource, expected: { session: Buffer; sender: number; ringBits: RingBits; layout: readonly StreamTensor[] }): Promise<SafetensorsHeader> {
  const header = await readSafetensorsHeader(source);
  const file = source.name;
  const want = maskedMetadata(expected);
  for (const key of Object.keys(want)) {
    const got = header.metadata?.[key];
    if (got !== want[key]) throw new SecAggError("BAD_UPLOAD", `${file}: __metadata__.${key}`, `expected "${want[key]}", got ${got === undefined ? "nothing" : `"${got}"`}`);
  }
  const specs = maskedTensorSpecs(expected.layout, expected.ringBits);
  if (header.tensors.length !== specs.length) {
    throw new SecAggError("BAD_UPLOAD", `${file}: tensors`, `expected ${specs.length} tensors (the model's float tensors and ${WEIGHT_TENSOR}), got ${header.tensors.length}`);
  }
  for (const spec of specs) {
    const entry = header.byName.get(spec.name);
    if (!entry) throw new SecAggError("BAD_UPLOAD", `${file}: tensor "${spec.name}"`, "missing");
    if (entry.dtype !== spec.dtype) throw new SecAggError("BAD_UPLOAD", `${file}: tensor "${spec.name}".dtype`, `expected ${spec.dtype}, got ${entry.dtype}`);
    if (entry.shape.length !== spec.shape.length || entry.shape.some((d, i) => d !== spec.shape[i])) {
      throw new SecAggError("BAD_UPLOAD", `${file}: tensor "${spec.name}".shape`, `expected ${JSON.stringify(spec.shape)}, got ${JSON.stringify(entry.shape)}`);
    }
  }
  return header;
}
