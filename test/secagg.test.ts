import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { encodeFloats } from "../lib/models/dtypes";
import { readSafetensorsHeader, writeSafetensors } from "../lib/models/safetensors";
import { SecAggError } from "../lib/secagg/errors";
import { generateKeyPair, KeyPair, keyPairFromSecret, parsePublicKey, readSecretKeyFile, sharedSecret, writeSecretKeyFile } from "../lib/secagg/keys";
import { floatTensors, prepareSiloRound, SiloRoundSetup, writeMaskedUpdate } from "../lib/secagg/mask";
import { streamLayout, StreamTensor, validateMaskedUpload } from "../lib/secagg/masked";
import { planQuantization, QuantizationPlan, Rounding, sumErrorBound } from "../lib/secagg/quantize";
import { Reveal, revealForUnmask, Split } from "../lib/secagg/reveal";
import { MaskStream } from "../lib/secagg/ring";
import { buildRoster, defaultThreshold, Roster, sessionId } from "../lib/secagg/session";
import { FIELD_PRIME, interpolate, mod, randomFieldElement, reconstructSecret, splitSecret } from "../lib/secagg/shamir";
import { decryptShare, encryptShare, parseSharesFile, SharesFile } from "../lib/secagg/shares";
import { unmaskSum } from "../lib/secagg/unmask";
import { memorySink, memorySource } from "./fixtures/memoryBytes";
import { normal, rng } from "./helpers/random";

const hex = (s: string) => Buffer.from(s, "hex");

async function tmpDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), "flo-secagg-"));
}

describe("secagg keys", () => {
  test("X25519 matches RFC 7748 section 6.1 and both ends derive the same secret", () => {
    const alice = keyPairFromSecret(hex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"));
    expect(alice.publicKey.toString("hex")).toBe("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
    const bobPublic = hex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
    expect(sharedSecret(alice.secretKey, bobPublic).toString("hex")).toBe("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
    const a = generateKeyPair();
    const b = generateKeyPair();
    expect(sharedSecret(a.secretKey, b.publicKey).equals(sharedSecret(b.secretKey, a.publicKey))).toBe(true);
    expect(a.publicKey.equals(b.publicKey)).toBe(false);
  });

  test("public keys parse from base64 and are refused with the field and the size", () => {
    const pair = generateKeyPair();
    expect(parsePublicKey(pair.publicKey.toString("base64"), "silos[0].publicKey").equals(pair.publicKey)).toBe(true);
    expect(parsePublicKey(pair.publicKey.toString("base64url"), "x").equals(pair.publicKey)).toBe(true);
    expect(() => parsePublicKey(Buffer.alloc(31, 1).toString("base64"), "silos[2].publicKey")).toThrow("silos[2].publicKey: expected 32 bytes, got 31");
    expect(() => parsePublicKey("not base64!", "silos[1].publicKey")).toThrow(/silos\[1\]\.publicKey: expected base64 .* \[BAD_KEY\]/);
    expect(() => parsePublicKey(42, "silos[1].publicKey")).toThrow("got number");
    // The all-zero point is of low order: its shared secret would be public.
    expect(() => sharedSecret(pair.secretKey, Buffer.alloc(32), "silos[3].publicKey")).toThrow(/silos\[3\]\.publicKey: .*\[BAD_KEY\]/);
  });

  test("key file: mode 0600, never overwritten, read back; a mismatched public key is refused", async () => {
    const dir = await tmpDir();
    const file = path.join(dir, "silo.key");
    const pair = generateKeyPair();
    await writeSecretKeyFile(file, pair);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    const read = await readSecretKeyFile(file);
    expect(read.secretKey.equals(pair.secretKey) && read.publicKey.equals(pair.publicKey)).toBe(true);
    await expect(writeSecretKeyFile(file, generateKeyPair())).rejects.toMatchObject({ code: "KEY_FILE_EXISTS" });
    expect((await readSecretKeyFile(file)).secretKey.equals(pair.secretKey)).toBe(true);
    const other = path.join(dir, "other.key");
    await fs.writeFile(other, JSON.stringify({ format: "flo-secagg-x25519/1", secretKey: pair.secretKey.toString("base64"), publicKey: generateKeyPair().publicKey.toString("base64") }));
    await expect(readSecretKeyFile(other)).rejects.toThrow(`${other}: publicKey: does not belong to the file's secretKey [BAD_KEY]`);
  });
});

describe("secagg session and Shamir", () => {
  const pairs = [generateKeyPair(), generateKeyPair(), generateKeyPair()];
  const entries = ["hospital-b", "hospital-a", "bank"].map((id, i) => ({ id, publicKey: pairs[i].publicKey }));

  test("roster order is by id whatever the input order; session changes with round, attempt, threshold and roster", () => {
    const roster = buildRoster(entries);
    expect(roster.silos.map((s) => s.id)).toEqual(["bank", "hospital-a", "hospital-b"]);
    expect(roster.indexOf("hospital-a")).toBe(2);
    expect(buildRoster([...entries].reverse()).digest.equals(roster.digest)).toBe(true);
    const base = { federationId: "fed", round: 3, attempt: 0, threshold: 2, ringBits: 32 as const, roster };
    const id = sessionId(base);
    expect(id).toHaveLength(32);
    const variants = [
      { ...base, round: 4 },
      { ...base, attempt: 1 },
      { ...base, threshold: 3 },
      { ...base, ringBits: 64 as const },
      { ...base, federationId: "fed2" },
      { ...base, roster: buildRoster([...entries.slice(0, 2), { id: "bank", publicKey: generateKeyPair().publicKey }]) },
    ];
    for (const v of variants) expect(sessionId(v).equals(id)).toBe(false);
    expect(() => buildRoster([...entries, { id: "bank", publicKey: generateKeyPair().publicKey }])).toThrow("silos[bank]: silo id appears twice [BAD_ROSTER]");
    expect(() => buildRoster([...entries, { id: "c", publicKey: pairs[0].publicKey }])).toThrow(
      'silos[hospital-b].publicKey: same public key as silo "c": every silo needs its own key pair [BAD_ROSTER]',
    );
    expect(() => sessionId({ ...base, threshold: 1 })).toThrow("threshold: expected an integer t with 2 <= t <= 3 (the roster size), got 1 [BAD_PARAMETERS]");
    expect(defaultThreshold(5)).toBe(4);
    expect(defaultThreshold(2)).toBe(2);
  });

  test("any t shares reconstruct the secret; t-1 shares are consistent with every secret", () => {
    const secret = randomFieldElement();
    const shares = splitSecret({ secret, threshold: 3, count: 5 });
    expect(shares.map((s) => s.x)).toEqual([1, 2, 3, 4, 5]);
    for (const subset of [
      [0, 1, 2],
      [0, 3, 4],
      [1, 2, 4],
      [4, 2, 0],
    ]) {
      expect(
        reconstructSecret(
          subset.map((i) => shares[i]),
          3,
          "s",
        ),
      ).toBe(secret);
    }
    expect(reconstructSecret(shares, 3, "s")).toBe(secret);
    const twoShares = [shares[1], shares[3]];
    expect(interpolate(twoShares, 0n)).not.toBe(secret);
    // For any other secret there is a degree-2 polynomial through it and the same two shares: derive
    // its coefficients and check splitSecret with them hands out exactly those two shares.
    for (const other of [0n, 1n, FIELD_PRIME - 1n, randomFieldElement()]) {
      const points = [{ x: 0, y: other }, ...twoShares];
      const at = (x: bigint) => interpolateAt(points, x);
      // f(x) = other + c1 x + c2 x^2: c2 from f(1), f(-1); c1 likewise.
      const f1 = at(1n);
      const fm1 = at(FIELD_PRIME - 1n);
      const inv2 = (FIELD_PRIME + 1n) / 2n;
      const c2 = mod((f1 + fm1 - 2n * other) * inv2);
      const c1 = mod((f1 - fm1) * inv2);
      const resplit = splitSecret({ secret: other, threshold: 3, count: 5, coefficients: [c1, c2] });
      expect([resplit[1].y, resplit[3].y]).toEqual([twoShares[0].y, twoShares[1].y]);
    }
    expect(() => reconstructSecret(twoShares, 3, "selfShares[2]")).toThrow("selfShares[2]: 2 shares, need at least t = 3 [UNRECOVERABLE]");
    const corrupted = [...shares.slice(0, 4), { x: 5, y: mod(shares[4].y + 1n) }];
    expect(() => reconstructSecret(corrupted, 3, "s")).toThrow(/share at x = 5 does not lie on the polynomial/);
  });

  function interpolateAt(points: { x: number; y: bigint }[], at: bigint): bigint {
    let acc = 0n;
    for (const pi of points) {
      let num = 1n;
      let den = 1n;
      for (const pj of points) {
        if (pj.x === pi.x) continue;
        num = mod(num * (at - BigInt(pj.x)));
        den = mod(den * BigInt(pi.x - pj.x));
      }
      acc = mod(acc + pi.y * num * modInverse(den));
    }
    return acc;
  }

  function modInverse(a: bigint): bigint {
    let [r0, r1, s0, s1] = [FIELD_PRIME, mod(a), 0n, 1n];
    while (r1 !== 0n) {
      const q = r0 / r1;
      [r0, r1] = [r1, r0 - q * r1];
      [s0, s1] = [s1, s0 - q * s1];
    }
    return mod(s0);
  }

  test("shares decrypt only with the same key, session, sender and recipient", () => {
    const shareKey = Buffer.alloc(32, 7);
    const session = Buffer.alloc(32, 1);
    const value = randomFieldElement();
    const ciphertext = encryptShare({ shareKey, session, sender: 2, recipient: 4, value });
    expect(ciphertext).toHaveLength(60);
    expect(decryptShare({ shareKey, session, sender: 2, recipient: 4, ciphertext, field: "f" })).toBe(value);
    const wrong = [
      { shareKey: Buffer.alloc(32, 8), session, sender: 2, recipient: 4 },
      { shareKey, session: Buffer.alloc(32, 2), sender: 2, recipient: 4 },
      { shareKey, session, sender: 4, recipient: 2 },
      { shareKey, session, sender: 2, recipient: 3 },
    ];
    for (const w of wrong) expect(() => decryptShare({ ...w, ciphertext, field: "shares[2]" })).toThrow(/^shares\[2\]: share from silo \d to silo \d fails authentication .*\[BAD_SHARE\]$/);
    const flipped = Buffer.from(ciphertext);
    flipped[20] ^= 1;
    expect(() => decryptShare({ shareKey, session, sender: 2, recipient: 4, ciphertext: flipped, field: "f" })).toThrow(/fails authentication/);
  });

  test("PRG: AES-256-CTR from a zero counter; a stream started at element e continues the one from 0", () => {
    const seed = Buffer.alloc(32, 3);
    for (const ringBits of [32, 64] as const) {
      const whole = new MaskStream(seed, ringBits).next(100);
      const perElement = ringBits / 32;
      for (const start of [0, 1, 3, 4, 37, 99]) {
        const part = new MaskStream(seed, ringBits, start);
        const a = part.next(5);
        const b = part.next(Math.max(0, 100 - start - 5));
        expect(
          Array.from(a)
            .concat(Array.from(b))
            .slice(0, (100 - start) * perElement),
        ).toEqual(Array.from(whole.subarray(start * perElement)));
      }
    }
  });
});

// ---------------- end to end at the library level ----------------

interface Silo {
  id: string;
  keys: KeyPair;
  update: Map<string, Float32Array>;
  numExamples: number;
  maxExamples: number;
}

const SHAPES: Record<string, number[]> = { "layer.0.weight": [40, 25], "layer.0.bias": [40], "head.weight": [3, 40] };
const K = 5;
const T = 3;
const CLIP = 2;

function makeGlobal(r: () => number): Map<string, Float32Array> {
  return new Map(Object.entries(SHAPES).map(([name, shape]) => [name, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => normal(r))]));
}

async function modelFile(name: string, tensors: Map<string, Float32Array>): Promise<Buffer> {
  const sink = memorySink(name);
  await writeSafetensors(sink, [
    ...[...tensors].map(([tensor, values]) => ({ name: tensor, dtype: "F32" as const, shape: SHAPES[tensor], data: encodeFloats(values, "F32") })),
    // An integer tensor: secure aggregation takes it from the global model, so it never enters the masks.
    { name: "steps", dtype: "I64" as const, shape: [1], data: new Uint8Array(8) },
  ]);
  return sink.committed!;
}

function makeSilos(r: () => number): Silo[] {
  return Array.from({ length: K }, (_, i) => {
    // Norms range well below and above the clipping norm; two silos declare more examples than their maximum.
    const spread = [0.01, 0.05, 0.2, 0.03, 0.002][i];
    const update = new Map(Object.entries(SHAPES).map(([name, shape]) => [name, Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => spread * normal(r))]));
    const maxExamples = [500, 1000, 800, 300, 1200][i];
    return { id: `silo-${i + 1}`, keys: generateKeyPair(), update, numExamples: [450, 1500, 800, 999, 17][i], maxExamples };
  });
}

/** The plain weighted sum sum_i w_i clip(x_i) over the given silos, in float64. */
function plainWeightedSum(silos: readonly Silo[], global: Map<string, Float32Array>, trainedOf: (s: Silo) => Map<string, Float32Array>): { sums: Map<string, Float64Array>; weightSum: number } {
  const sums = new Map([...global].map(([n, v]) => [n, new Float64Array(v.length)]));
  let weightSum = 0;
  for (const silo of silos) {
    const trained = trainedOf(silo);
    let squares = 0;
    for (const [n, g] of global) for (let i = 0; i < g.length; i++) squares += (trained.get(n)![i] - g[i]) ** 2;
    const norm = Math.sqrt(squares);
    const clip = norm > CLIP ? CLIP / norm : 1;
    const w = Math.min(silo.numExamples, silo.maxExamples);
    weightSum += w;
    for (const [n, g] of global) {
      const out = sums.get(n)!;
      for (let i = 0; i < g.length; i++) out[i] += w * clip * (trained.get(n)![i] - g[i]);
    }
  }
  return { sums, weightSum };
}

interface Federation {
  silos: Silo[];
  roster: Roster;
  plan: QuantizationPlan;
  global: Map<string, Float32Array>;
  globalFile: Buffer;
  layout: StreamTensor[];
  trainedOf(s: Silo): Map<string, Float32Array>;
}

async function federation(seed: number, bits = 16): Promise<Federation> {
  const r = rng(seed);
  const global = makeGlobal(r);
  const silos = makeSilos(r);
  const roster = buildRoster(silos.map((s) => ({ id: s.id, publicKey: s.keys.publicKey })));
  const plan = planQuantization({ bits, clipNorm: CLIP, maxExamples: roster.silos.map((e) => silos.find((s) => s.id === e.id)!.maxExamples) });
  const globalFile = await modelFile("mem://global", global);
  const layout = streamLayout(floatTensors(await readSafetensorsHeader(memorySource("mem://global", globalFile))));
  const trainedOf = (s: Silo) => new Map([...global].map(([n, g]) => [n, Float32Array.from(g, (v, i) => v + s.update.get(n)![i])]));
  return { silos, roster, plan, global, globalFile, layout, trainedOf };
}

interface SessionRun {
  session: Buffer;
  setups: Map<number, SiloRoundSetup>;
  masked: Map<number, Buffer>;
  sharesFiles: Map<number, SharesFile>;
}

/** Every silo in `uploaders` (roster indexes) masks its update for the session and uploads. */
async function maskRound(fed: Federation, options: { attempt: number; uploaders: number[]; rounding: Rounding }): Promise<SessionRun> {
  const session = sessionId({ federationId: "fed-secagg", round: 1, attempt: options.attempt, threshold: T, ringBits: fed.plan.ringBits, roster: fed.roster });
  const run: SessionRun = { session, setups: new Map(), masked: new Map(), sharesFiles: new Map() };
  for (const index of options.uploaders) {
    const silo = fed.silos.find((s) => s.id === fed.roster.silos[index - 1].id)!;
    const setup = prepareSiloRound({ secretKey: silo.keys.secretKey, roster: fed.roster, session, selfIndex: index, threshold: T });
    const sink = memorySink(`mem://masked-${index}`);
    await writeMaskedUpdate({
      trained: memorySource(`mem://trained-${index}`, await modelFile("trained", fed.trainedOf(silo))),
      global: memorySource("mem://global", fed.globalFile),
      sink,
      setup,
      session,
      plan: fed.plan,
      numExamples: silo.numExamples,
      maxExamples: silo.maxExamples,
      rounding: options.rounding,
      chunkElements: 256,
    });
    run.setups.set(index, setup);
    run.masked.set(index, sink.committed!);
    run.sharesFiles.set(index, parseSharesFile(JSON.parse(JSON.stringify(setup.sharesFile)), { session, sender: index, rosterSize: K, file: `shares-${index}.json` }));
  }
  return run;
}

async function reveals(fed: Federation, run: SessionRun, split: Split, revealers: number[], recordRoot: string): Promise<Reveal[]> {
  const out: Reveal[] = [];
  for (const index of revealers) {
    const silo = fed.silos.find((s) => s.id === fed.roster.silos[index - 1].id)!;
    const sharesFiles = new Map(split.survivors.map((i) => [i, run.sharesFiles.get(i)!]));
    out.push(
      await revealForUnmask({
        secretKey: silo.keys.secretKey,
        roster: fed.roster,
        session: run.session,
        threshold: T,
        selfIndex: index,
        split,
        sharesFiles,
        recordDir: path.join(recordRoot, silo.id),
      }),
    );
  }
  return out;
}

async function unmask(fed: Federation, run: SessionRun, split: Split, revealList: Reveal[]): Promise<{ sums: Map<string, Float64Array>; weightSum: number; chunks: number }> {
  const sums = new Map(fed.layout.map((t) => [t.name, new Float64Array(t.numel)]));
  let chunks = 0;
  const result = await unmaskSum({
    roster: fed.roster,
    session: run.session,
    threshold: T,
    plan: fed.plan,
    split,
    masked: new Map(split.survivors.map((i) => [i, memorySource(`mem://masked-${i}`, run.masked.get(i)!)])),
    reveals: revealList,
    layout: fed.layout,
    chunkElements: 300,
    onChunk({ tensor, start, sum }) {
      chunks++;
      sums.get(tensor.name)!.set(sum, start);
    },
  });
  return { sums, weightSum: result.weightSum, chunks };
}

function maxError(a: Map<string, Float64Array>, b: Map<string, Float64Array>): number {
  let worst = 0;
  for (const [n, x] of a) for (let i = 0; i < x.length; i++) worst = Math.max(worst, Math.abs(x[i] - b.get(n)![i]));
  return worst;
}

const silosAt = (fed: Federation, indexes: number[]) => indexes.map((i) => fed.silos.find((s) => s.id === fed.roster.silos[i - 1].id)!);

describe("secagg end to end: K = 5 silos, t = 3", () => {
  let recordRoot: string;
  beforeEach(async () => {
    recordRoot = await tmpDir();
  });

  test.each(["nearest", "stochastic"] as const)("no dropout (%s rounding): the unmasked sum equals the plain weighted sum within the stated bound", async (rounding) => {
    const fed = await federation(11);
    expect(fed.plan.ringBits).toBe(32);
    const all = [1, 2, 3, 4, 5];
    const run = await maskRound(fed, { attempt: 0, uploaders: all, rounding });
    const split = { survivors: all, dropped: [] };
    const result = await unmask(fed, run, split, await reveals(fed, run, split, all, recordRoot));
    const plain = plainWeightedSum(fed.silos, fed.global, fed.trainedOf.bind(fed));
    expect(result.weightSum).toBe(plain.weightSum);
    expect(result.weightSum).toBe(450 + 1000 + 800 + 300 + 17);
    const bound = sumErrorBound(fed.plan, 5, rounding);
    const error = maxError(result.sums, plain.sums);
    expect(error).toBeLessThanOrEqual(bound);
    // The bound is tight enough to matter: it is far below the sum's own scale.
    expect(bound).toBeLessThan(1e-3 * Math.max(...[...plain.sums.values()].map((v) => Math.max(...v.map(Math.abs)))));
  });

  test("masking and unmasking stream: no read is larger than one chunk, whatever the model size", async () => {
    const fed = await federation(19);
    const largest = { value: 0 };
    const recording = (name: string, bytes: Buffer) => {
      const source = memorySource(name, bytes);
      const read = source.read.bind(source);
      source.read = async (offset, length, options) => {
        // Offsets 0 and 8 are the header's length and JSON; everything after is tensor data.
        if (offset > 8) largest.value = Math.max(largest.value, length);
        return read(offset, length, options);
      };
      return source;
    };
    const silo = fed.silos[0];
    const index = fed.roster.indexOf(silo.id);
    const session = sessionId({ federationId: "f", round: 1, attempt: 0, threshold: T, ringBits: fed.plan.ringBits, roster: fed.roster });
    const setup = prepareSiloRound({ secretKey: silo.keys.secretKey, roster: fed.roster, session, selfIndex: index, threshold: T });
    const sink = memorySink();
    await writeMaskedUpdate({
      trained: recording("t", await modelFile("t", fed.trainedOf(silo))),
      global: recording("g", fed.globalFile),
      sink,
      setup,
      session,
      plan: fed.plan,
      numExamples: 1,
      maxExamples: silo.maxExamples,
      rounding: "nearest",
      chunkElements: 64,
    });
    // Tensor data is read 64 F32 elements at a time (the model has 1160 per file).
    expect(largest.value).toBe(64 * 4);
    largest.value = 0;
    const run = await maskRound(fed, { attempt: 0, uploaders: [1, 2, 3, 4, 5], rounding: "nearest" });
    const split = { survivors: [1, 2, 3, 4, 5], dropped: [] };
    await unmaskSum({
      roster: fed.roster,
      session: run.session,
      threshold: T,
      plan: fed.plan,
      split,
      masked: new Map(split.survivors.map((i) => [i, recording(`m${i}`, run.masked.get(i)!)])),
      reveals: await reveals(fed, run, split, split.survivors, recordRoot),
      layout: fed.layout,
      chunkElements: 100,
      onChunk: () => undefined,
    });
    expect(largest.value).toBe(100 * 4);
  });

  test("a silo that never uploads is recovered from the survivors' pairwise seeds", async () => {
    const fed = await federation(12);
    const run = await maskRound(fed, { attempt: 0, uploaders: [1, 3, 4, 5], rounding: "nearest" });
    const split = { survivors: [1, 3, 4, 5], dropped: [2] };
    const revealList = await reveals(fed, run, split, split.survivors, recordRoot);
    for (const r of revealList) {
      expect(r.pairwiseSeeds.map((p) => p.dropped)).toEqual([2]);
      expect(r.selfShares.map((s) => s.owner)).toEqual([1, 3, 4, 5]);
    }
    const result = await unmask(fed, run, split, revealList);
    const plain = plainWeightedSum(silosAt(fed, split.survivors), fed.global, fed.trainedOf.bind(fed));
    expect(result.weightSum).toBe(plain.weightSum);
    expect(maxError(result.sums, plain.sums)).toBeLessThanOrEqual(sumErrorBound(fed.plan, 4, "nearest"));
  });

  test("a survivor failing during unmasking with D empty is recovered from t shares of its self-mask seed", async () => {
    const fed = await federation(13);
    const all = [1, 2, 3, 4, 5];
    const run = await maskRound(fed, { attempt: 0, uploaders: all, rounding: "nearest" });
    const split = { survivors: all, dropped: [] };
    // Silos 2 and 5 never answer the unmask job: 3 = t reveals remain.
    const result = await unmask(fed, run, split, await reveals(fed, run, split, [1, 3, 4], recordRoot));
    const plain = plainWeightedSum(fed.silos, fed.global, fed.trainedOf.bind(fed));
    expect(result.weightSum).toBe(plain.weightSum);
    expect(maxError(result.sums, plain.sums)).toBeLessThanOrEqual(sumErrorBound(fed.plan, 5, "nearest"));
    // With only t - 1 answers nothing is unmasked.
    let called = false;
    await expect(
      unmaskSum({
        roster: fed.roster,
        session: run.session,
        threshold: T,
        plan: fed.plan,
        split,
        masked: new Map(all.map((i) => [i, memorySource(`m${i}`, run.masked.get(i)!)])),
        reveals: await reveals(fed, run, split, [1, 3], await tmpDir()),
        layout: fed.layout,
        onChunk: () => void (called = true),
      }),
    ).rejects.toThrow(/selfShares\[1\]: 2 shares of survivor 1's self-mask seed, need t = 3.*\[UNRECOVERABLE\]/);
    expect(called).toBe(false);
  });

  test("a survivor failing during unmasking while D is not empty: refused, then a re-run under a new session is correct", async () => {
    const fed = await federation(14);
    const run = await maskRound(fed, { attempt: 0, uploaders: [1, 2, 3, 5], rounding: "nearest" });
    const split = { survivors: [1, 2, 3, 5], dropped: [4] };
    let called = false;
    await expect(
      unmaskSum({
        roster: fed.roster,
        session: run.session,
        threshold: T,
        plan: fed.plan,
        split,
        masked: new Map(split.survivors.map((i) => [i, memorySource(`m${i}`, run.masked.get(i)!)])),
        reveals: await reveals(fed, run, split, [1, 2, 5], recordRoot),
        layout: fed.layout,
        onChunk: () => void (called = true),
      }),
    ).rejects.toThrow("reveals: survivors 3 did not reveal their pairwise seeds with dropped silos 4: re-run the round under a new session [UNRECOVERABLE]");
    expect(called).toBe(false);
    const rerun = await maskRound(fed, { attempt: 1, uploaders: [1, 2, 3, 5], rounding: "nearest" });
    expect(rerun.session.equals(run.session)).toBe(false);
    const result = await unmask(fed, rerun, split, await reveals(fed, rerun, split, split.survivors, recordRoot));
    const plain = plainWeightedSum(silosAt(fed, split.survivors), fed.global, fed.trainedOf.bind(fed));
    expect(result.weightSum).toBe(plain.weightSum);
    expect(maxError(result.sums, plain.sums)).toBeLessThanOrEqual(sumErrorBound(fed.plan, 4, "nearest"));
  });

  test("fewer than t survivors: refused by the orchestrator and by every silo, nothing unmasked", async () => {
    const fed = await federation(15);
    const run = await maskRound(fed, { attempt: 0, uploaders: [2, 4], rounding: "nearest" });
    const split = { survivors: [2, 4], dropped: [1, 3, 5] };
    await expect(reveals(fed, run, split, [2], recordRoot)).rejects.toThrow("survivors: 2 survivors, the threshold is t = 3: nothing may be unmasked [TOO_FEW_SURVIVORS]");
    let called = false;
    await expect(
      unmaskSum({
        roster: fed.roster,
        session: run.session,
        threshold: T,
        plan: fed.plan,
        split,
        masked: new Map([2, 4].map((i) => [i, memorySource(`m${i}`, run.masked.get(i)!)])),
        reveals: [],
        layout: fed.layout,
        onChunk: () => void (called = true),
      }),
    ).rejects.toMatchObject({ code: "TOO_FEW_SURVIVORS" });
    expect(called).toBe(false);
    // Nothing was recorded either: the refusal came before any reveal.
    await expect(fs.readdir(path.join(recordRoot, fed.roster.silos[1].id))).rejects.toMatchObject({ code: "ENOENT" });
  });

  test("a silo asked to reveal for a second split of the same session refuses; the same split again is answered", async () => {
    const fed = await federation(16);
    const run = await maskRound(fed, { attempt: 0, uploaders: [1, 2, 3, 4, 5], rounding: "nearest" });
    const first = { survivors: [1, 2, 3, 4], dropped: [5] };
    const [reveal] = await reveals(fed, run, first, [1], recordRoot);
    expect(reveal.pairwiseSeeds.map((p) => p.dropped)).toEqual([5]);
    const again = await reveals(fed, run, { survivors: [4, 3, 2, 1], dropped: [5] }, [1], recordRoot);
    expect(again[0].pairwiseSeeds).toEqual(reveal.pairwiseSeeds);
    // Declaring 5 a survivor now would hand out a share of its self-mask seed next to its pairwise seed.
    await expect(reveals(fed, run, { survivors: [1, 2, 3, 4, 5], dropped: [] }, [1], recordRoot)).rejects.toThrow(/this silo already revealed for session .* \[SECOND_ROSTER\]/);
    const record = JSON.parse(await fs.readFile(path.join(recordRoot, fed.roster.silos[0].id, `${run.session.toString("hex")}.json`), "utf8")) as Split;
    expect(record).toEqual(first);
    // Another silo has its own record: it may still answer the first split.
    expect((await reveals(fed, run, first, [2], recordRoot))[0].revealer).toBe(2);
  });

  test("uploads are validated: session, sender, shapes, share count; anything from a dropped silo is refused", async () => {
    const fed = await federation(17);
    const run = await maskRound(fed, { attempt: 0, uploaders: [1, 2, 3, 4, 5], rounding: "nearest" });
    const expected = { session: run.session, sender: 2, ringBits: fed.plan.ringBits, layout: fed.layout };
    await expect(validateMaskedUpload(memorySource("m2", run.masked.get(2)!), expected)).resolves.toBeDefined();
    await expect(validateMaskedUpload(memorySource("m3", run.masked.get(3)!), expected)).rejects.toThrow('m3: __metadata__.sender: expected "2", got "3" [BAD_UPLOAD]');
    await expect(
      validateMaskedUpload(memorySource("m2", run.masked.get(2)!), {
        ...expected,
        layout: streamLayout([
          { name: "layer.0.bias", shape: [41] },
          { name: "layer.0.weight", shape: [40, 25] },
          { name: "head.weight", shape: [3, 40] },
        ]),
      }),
    ).rejects.toThrow('m2: tensor "layer.0.bias".shape: expected [41], got [40] [BAD_UPLOAD]');
    await expect(validateMaskedUpload(memorySource("m2", run.masked.get(2)!), { ...expected, session: Buffer.alloc(32) })).rejects.toThrow(/m2: __metadata__.session: expected "0000/);
    const shares = JSON.parse(JSON.stringify(run.sharesFiles.get(1))) as SharesFile;
    shares.shares.pop();
    expect(() => parseSharesFile(shares, { session: run.session, sender: 1, rosterSize: K, file: "s1.json" })).toThrow("s1.json: shares: expected 5 shares (one per roster silo), got 4 [BAD_UPLOAD]");
    const split = { survivors: [1, 2, 3, 4], dropped: [5] };
    const revealList = await reveals(fed, run, split, split.survivors, recordRoot);
    await expect(
      unmaskSum({
        roster: fed.roster,
        session: run.session,
        threshold: T,
        plan: fed.plan,
        split,
        masked: new Map([1, 2, 3, 4, 5].map((i) => [i, memorySource(`m${i}`, run.masked.get(i)!)])),
        reveals: revealList,
        layout: fed.layout,
        onChunk: () => undefined,
      }),
    ).rejects.toThrow("masked[5]: silo 5 is dropped for this session: its update must not be used [BAD_UPLOAD]");
    await expect(
      unmaskSum({
        roster: fed.roster,
        session: run.session,
        threshold: T,
        plan: fed.plan,
        split,
        masked: new Map(split.survivors.map((i) => [i, memorySource(`m${i}`, run.masked.get(i)!)])),
        reveals: [...revealList, { ...revealList[0], revealer: 5 }],
        layout: fed.layout,
        onChunk: () => undefined,
      }),
    ).rejects.toThrow("reveals[5]: silo 5 is dropped: nothing from it is used [BAD_UPLOAD]");
  });

  test("masked updates look uniform (byte chi-square, bit balance) and differ from the quantized inputs", async () => {
    const fed = await federation(18);
    const run = await maskRound(fed, { attempt: 0, uploaders: [1, 2, 3, 4, 5], rounding: "nearest" });
    for (const [index, file] of run.masked) {
      const header = await readSafetensorsHeader(memorySource("m", file));
      const data = file.subarray(header.dataStart);
      const counts = new Array<number>(256).fill(0);
      for (const b of data) counts[b]++;
      const expected = data.length / 256;
      const chi2 = counts.reduce((acc, c) => acc + (c - expected) ** 2 / expected, 0);
      // 255 degrees of freedom: P(chi2 > 340) < 0.0003 for uniform bytes.
      expect(chi2).toBeLessThan(340);
      // Each of the 32 bit positions of the words is set about half the time (|z| < 4.5).
      const words = new Uint32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
      for (let bit = 0; bit < 32; bit++) {
        let ones = 0;
        for (const w of words) ones += (w >>> bit) & 1;
        expect(Math.abs(ones - words.length / 2) / Math.sqrt(words.length / 4)).toBeLessThan(4.5);
      }
      // An unmasked quantized update of a small silo would have its high bits all 0 or all 1.
      const silo = silosAt(fed, [index])[0];
      const first = silo.update.get("head.weight")![0];
      expect(words.some((w) => w !== 0 && w !== 0xffffffff)).toBe(true);
      expect(first).not.toBe(0);
      const q = Math.floor(first * Math.min(silo.numExamples, silo.maxExamples) * fed.plan.scale + 0.5) >>> 0;
      const tensor = header.byName.get("head.weight")!;
      expect(file.readUInt32LE(header.dataStart + tensor.begin)).not.toBe(q);
    }
  });

  test("the quantized sum driven to its largest magnitude decodes exactly, without wrap-around", async () => {
    for (const [bits, maxExamples, ringBits] of [
      [16, [6554, 6554, 6554, 6554, 6552], 32], // W = 2^15 -> L = 15: b + L + 1 = 32 exactly
      [20, [1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20], 64],
    ] as const) {
      const pairs = Array.from({ length: K }, generateKeyPair);
      const roster = buildRoster(pairs.map((p, i) => ({ id: `s${i}`, publicKey: p.publicKey })));
      const plan = planQuantization({ bits, clipNorm: 1.5, maxExamples: [...maxExamples] });
      expect(plan.ringBits).toBe(ringBits);
      const session = sessionId({ federationId: "f", round: 0, attempt: 0, threshold: T, ringBits, roster });
      const shapes = { w: [2] };
      const global = await gridModel(shapes, [0, 0]);
      const layout = streamLayout([{ name: "w", shape: [2] }]);
      for (const sign of [1, -1]) {
        const masked = new Map<number, Buffer>();
        const setups: SiloRoundSetup[] = [];
        for (let i = 1; i <= K; i++) {
          const setup = prepareSiloRound({ secretKey: pairs[i - 1].secretKey, roster, session, selfIndex: i, threshold: T });
          setups.push(setup);
          const sink = memorySink();
          // Update +-C on one axis (norm exactly C), weight = maxExamples: every code is +-w*Q.
          await writeMaskedUpdate({
            trained: memorySource("t", await gridModel(shapes, [sign * 1.5, 0])),
            global: memorySource("g", global),
            sink,
            setup,
            session,
            plan,
            numExamples: maxExamples[i - 1] * 10,
            maxExamples: maxExamples[i - 1],
            rounding: "stochastic",
          });
          masked.set(i, sink.committed!);
        }
        const all = [1, 2, 3, 4, 5];
        const split = { survivors: all, dropped: [] };
        const revealList: Reveal[] = [];
        const dir = await tmpDir();
        for (const i of all) {
          revealList.push(
            await revealForUnmask({
              secretKey: pairs[i - 1].secretKey,
              roster,
              session,
              threshold: T,
              selfIndex: i,
              split,
              sharesFiles: new Map(setups.map((s) => [s.selfIndex, s.sharesFile])),
              recordDir: path.join(dir, String(i)),
            }),
          );
        }
        let sum: Float64Array | undefined;
        const result = await unmaskSum({
          roster,
          session,
          threshold: T,
          plan,
          split,
          masked: new Map([...masked].map(([i, b]) => [i, memorySource(`m${i}`, b)])),
          reveals: revealList,
          layout,
          onChunk: (c) => void (sum = c.sum),
        });
        const W = maxExamples.reduce((a, b) => a + b, 0);
        expect(result.weightSum).toBe(W);
        // The largest code sum: W * Q, within one step of the ring's signed range 2^(k-1) when k is tight.
        expect(W * plan.levels).toBeLessThan(2 ** (ringBits - 1));
        expect(Array.from(sum!)).toEqual([(sign * W * plan.levels) / plan.scale, 0]);
        expect(Math.abs(sum![0] - sign * W * 1.5)).toBeLessThanOrEqual(1e-9 * W);
      }
    }
  });

  async function gridModel(shapes: Record<string, number[]>, values: number[]): Promise<Buffer> {
    const sink = memorySink();
    await writeSafetensors(
      sink,
      Object.entries(shapes).map(([name, shape]) => ({ name, dtype: "F64" as const, shape, data: encodeFloats(values, "F64") })),
    );
    return sink.committed!;
  }

  test("parameters out of range are refused with the field", () => {
    expect(() => planQuantization({ bits: 1, clipNorm: 1, maxExamples: [1] })).toThrow("bits: expected an integer in [2, 32], got 1 [BAD_PARAMETERS]");
    expect(() => planQuantization({ bits: 16, clipNorm: 0, maxExamples: [1] })).toThrow("clipping.norm: expected a finite number > 0, got 0 [BAD_PARAMETERS]");
    expect(() => planQuantization({ bits: 16, clipNorm: 1, maxExamples: [10, 2.5] })).toThrow("silos[1].maxExamples: expected an integer >= 1, got 2.5 [BAD_PARAMETERS]");
    expect(() => planQuantization({ bits: 32, clipNorm: 1, maxExamples: [1 << 20] })).toThrow(
      "bits: b + ceil(log2(sum of maxExamples)) = 32 + 20 exceeds 48: lower bits or maxExamples [BAD_PARAMETERS]",
    );
    expect(planQuantization({ bits: 16, clipNorm: 1, maxExamples: [1 << 15] })).toMatchObject({ headroomBits: 15, ringBits: 32, levels: 32767 });
    expect(planQuantization({ bits: 16, clipNorm: 1, maxExamples: [(1 << 15) + 1] })).toMatchObject({ headroomBits: 16, ringBits: 64 });
    expect(new SecAggError("BAD_INPUT", "f", "m")).toBeInstanceOf(Error);
  });
});
