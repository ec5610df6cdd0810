/**
 * `node dist/bench/secagg.js [--size 100] [--count 10] [--tensors 4] [--dir D] [--keep]`
 *
 * Secure aggregation costs, on `count` silos with `size` MB F32 updates each (files in a temp dir):
 *  - silo side: masking throughput (MB of model per second) of one silo (clip, weight, quantize, add its
 *    self mask and count-1 pairwise masks, write the masked file);
 *  - orchestrator: unmasking all survivors (no dropout: one self-mask expansion per survivor, summing
 *    the masked files) against a plain weighted sum of the same updates read the same way, as a ratio.
 * Both orchestrator measurements read files through the page cache in chunks of the same size; each
 * runs `--repeat` times alternating, best time kept (the machine is shared).
 */

import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { decodeFloats } from "../lib/models/dtypes";
import { fileSink, fileSource } from "../lib/models/fileBytes";
import { readSafetensorsHeader, SafetensorsWriter } from "../lib/models/safetensors";
import type { ByteSource } from "../lib/models/bytes";
import { generateKeyPair } from "../lib/secagg/keys";
import { floatTensors, prepareSiloRound, writeMaskedUpdate } from "../lib/secagg/mask";
import { streamLayout } from "../lib/secagg/masked";
import { planQuantization } from "../lib/secagg/quantize";
import { Reveal } from "../lib/secagg/reveal";
import { buildRoster, sessionId } from "../lib/secagg/session";
import { fieldFromBytes, fieldToBytes, splitSecret } from "../lib/secagg/shamir";
import { unmaskSum } from "../lib/secagg/unmask";

const CHUNK = 1 << 18;

function flag(argv: string[], name: string, fallback: number): number {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
}

async function writeModel(file: string, tensors: number, elementsPerTensor: number, seed: number): Promise<void> {
  const writer = new SafetensorsWriter(
    fileSink(file),
    Array.from({ length: tensors }, (_, t) => ({ name: `layer.${t}`, dtype: "F32" as const, shape: [elementsPerTensor] })),
  );
  let state = seed >>> 0;
  for (const entry of writer.layout.tensors) {
    for (let start = 0; start < elementsPerTensor; start += CHUNK) {
      const chunk = new Float32Array(Math.min(CHUNK, elementsPerTensor - start));
      for (let i = 0; i < chunk.length; i++) {
        state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
        chunk[i] = (state / 4294967296 - 0.5) * 0.01;
      }
      await writer.write(entry.name, new Uint8Array(chunk.buffer));
    }
  }
  await writer.commit();
}

/** The plain weighted sum of updates (trained - global), same chunking as the unmasking. */
async function plainWeightedSum(trained: ByteSource[], global: ByteSource, weights: number[]): Promise<void> {
  const gh = await readSafetensorsHeader(global);
  const headers = await Promise.all(trained.map((t) => readSafetensorsHeader(t)));
  for (const entry of floatTensors(gh)) {
    for (let start = 0; start < entry.numel; start += CHUNK) {
      const count = Math.min(CHUNK, entry.numel - start);
      const g = decodeFloats(await global.read(gh.dataStart + entry.begin + 4 * start, 4 * count), "F32");
      const acc = new Float64Array(count);
      for (let s = 0; s < trained.length; s++) {
        const t = headers[s].byName.get(entry.name)!;
        const x = decodeFloats(await trained[s].read(headers[s].dataStart + t.begin + 4 * start, 4 * count), "F32");
        const w = weights[s];
        for (let i = 0; i < count; i++) acc[i] += w * (x[i] - g[i]);
      }
    }
  }
}

async function time(fn: () => Promise<void>): Promise<number> {
  const start = process.hrtime.bigint();
  await fn();
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function main(argv: string[]): Promise<void> {
  const dirFlag = argv.indexOf("--dir");
  await secureAggregationRows({
    sizeMb: flag(argv, "--size", 100),
    count: flag(argv, "--count", 10),
    tensors: flag(argv, "--tensors", 4),
    repeat: flag(argv, "--repeat", 2),
    dir: dirFlag >= 0 ? argv[dirFlag + 1] : undefined,
    keep: argv.includes("--keep"),
  });
}

/**
 * The secure-aggregation rows (also printed by `npm run bench:aggregate`): silo-side masking MB/s and
 * the orchestrator's unmasking time as a ratio to a plain weighted sum of the same files in the same run.
 */
export async function secureAggregationRows(options: { sizeMb: number; count: number; tensors: number; repeat: number; dir?: string; keep?: boolean }): Promise<void> {
  const { sizeMb, count, tensors, repeat } = options;
  const dir = options.dir ?? (await fs.mkdtemp(path.join(os.tmpdir(), "flo-bench-secagg-")));
  await fs.mkdir(dir, { recursive: true });
  const elementsPerTensor = Math.floor((sizeMb * 1e6) / 4 / tensors);
  const mb = (elementsPerTensor * tensors * 4) / 1e6;
  console.log(`secure aggregation bench: ${count} silos x ${mb.toFixed(1)} MB F32 (${tensors} tensors), files in ${dir}`);

  await writeModel(path.join(dir, "global.safetensors"), tensors, elementsPerTensor, 1);
  for (let s = 0; s < count; s++) await writeModel(path.join(dir, `trained-${s}.safetensors`), tensors, elementsPerTensor, 100 + s);

  const pairs = Array.from({ length: count }, generateKeyPair);
  const roster = buildRoster(pairs.map((p, i) => ({ id: `silo-${String(i).padStart(3, "0")}`, publicKey: p.publicKey })));
  const maxExamples = Array.from({ length: count }, () => 1000);
  const weights = maxExamples.map((m, i) => m - 7 * i);
  const plan = planQuantization({ bits: 16, clipNorm: 10, maxExamples });
  const threshold = Math.max(2, Math.ceil((2 * count) / 3));
  const session = sessionId({ federationId: "bench", round: 1, attempt: 0, threshold, ringBits: plan.ringBits, roster });
  const global = fileSource(path.join(dir, "global.safetensors"));

  const secrets: bigint[] = [];
  let maskSeconds = Infinity;
  for (let i = 1; i <= count; i++) {
    const setup = prepareSiloRound({ secretKey: pairs[i - 1].secretKey, roster, session, selfIndex: i, threshold });
    secrets.push(fieldFromBytes(setup.selfSeed, "selfSeed"));
    const trained = fileSource(path.join(dir, `trained-${i - 1}.safetensors`));
    const seconds = await time(async () => {
      await writeMaskedUpdate({
        trained,
        global,
        sink: fileSink(path.join(dir, `masked-${i}.safetensors`)),
        setup,
        session,
        plan,
        numExamples: weights[i - 1],
        maxExamples: maxExamples[i - 1],
        rounding: "stochastic",
        chunkElements: CHUNK,
      });
    });
    await trained.close?.();
    maskSeconds = Math.min(maskSeconds, seconds);
  }
  console.log(
    `silo masking (1 self + ${count - 1} pairwise masks, ring 2^${plan.ringBits}): ${(mb / maskSeconds).toFixed(1)} MB/s (best of ${count} silos: ${maskSeconds.toFixed(2)} s per ${mb.toFixed(0)} MB)`,
  );

  // Every survivor answers (no dropout): each reveals its share of every self-mask seed.
  const all = Array.from({ length: count }, (_, i) => i + 1);
  const shares = secrets.map((secret) => splitSecret({ secret, threshold, count }));
  const reveals: Reveal[] = all.map((r) => ({
    session: session.toString("hex"),
    revealer: r,
    pairwiseSeeds: [],
    selfShares: all.map((owner) => ({ owner, y: fieldToBytes(shares[owner - 1][r - 1].y).toString("hex") })),
  }));
  const layout = streamLayout(floatTensors(await readSafetensorsHeader(global)));
  const trainedSources = Array.from({ length: count }, (_, s) => fileSource(path.join(dir, `trained-${s}.safetensors`)));
  let unmaskBest = Infinity;
  let plainBest = Infinity;
  for (let r = 0; r < repeat; r++) {
    plainBest = Math.min(plainBest, await time(() => plainWeightedSum(trainedSources, global, weights)));
    unmaskBest = Math.min(
      unmaskBest,
      await time(async () => {
        const masked = new Map(all.map((i) => [i, fileSource(path.join(dir, `masked-${i}.safetensors`))]));
        await unmaskSum({ roster, session, threshold, plan, split: { survivors: all, dropped: [] }, masked, reveals, layout, chunkElements: CHUNK, onChunk: () => undefined });
        for (const source of masked.values()) await source.close?.();
      }),
    );
  }
  for (const source of [global, ...trainedSources]) await source.close?.();
  console.log(`plain weighted sum of ${count} x ${mb.toFixed(0)} MB: ${plainBest.toFixed(2)} s`);
  console.log(
    `secure unmasking of ${count} x ${mb.toFixed(0)} MB (${count} self masks, no dropout): ${unmaskBest.toFixed(2)} s = ${(unmaskBest / plainBest).toFixed(2)}x the plain weighted sum (target <= 3x)`,
  );
  if (!options.keep && !options.dir) await fs.rm(dir, { recursive: true, force: true });
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err) => {
    console.error(err instanceof Error ? err.stack : String(err));
    process.exitCode = 1;
  });
}
