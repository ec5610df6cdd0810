/**
 * Shared test vectors of the secure-aggregation protocol (test/fixtures/secagg-vectors.json): every
 * value is recomputed here through the TypeScript implementation and by the Python package's own test
 * (lib/secagg/python/tests), run below with /usr/bin/python3. Regenerate after a deliberate format
 * change with FLO_WRITE_SECAGG_VECTORS=1.
 */
import { execFile, spawnSync } from "node:child_process";
import * as crypto from "node:crypto";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { encodeFloats } from "../lib/models/dtypes";
import { readSafetensorsHeader, writeSafetensors } from "../lib/models/safetensors";
import { generateKeyPair, keyPairFromSecret, sharedSecret, writeSecretKeyFile } from "../lib/secagg/keys";
import { floatTensors, prepareSiloRound, writeMaskedUpdate } from "../lib/secagg/mask";
import { streamLayout, validateMaskedUpload } from "../lib/secagg/masked";
import { planQuantization, sumErrorBound } from "../lib/secagg/quantize";
import { Reveal, revealForUnmask } from "../lib/secagg/reveal";
import { MaskStream } from "../lib/secagg/ring";
import { buildRoster, pairSecrets, RingBits, sessionId } from "../lib/secagg/session";
import { fieldFromBytes, FIELD_PRIME, splitSecret } from "../lib/secagg/shamir";
import { parseSharesFile } from "../lib/secagg/shares";
import { unmaskSum } from "../lib/secagg/unmask";
import { MASKED_FILE, PUBLISHED_METRICS_FILE, SHARES_FILE } from "../lib/secagg/files";
import { memorySink, memorySource } from "./fixtures/memoryBytes";

const FIXTURE = path.join(__dirname, "fixtures", "secagg-vectors.json");
const PYTHON_TESTS = path.join(__dirname, "..", "lib", "secagg", "python");

const sha = (s: string) => crypto.createHash("sha256").update(s).digest();
const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

async function f32Model(tensors: Record<string, { shape: number[]; values: number[] }>): Promise<Buffer> {
  const sink = memorySink();
  await writeSafetensors(
    sink,
    Object.entries(tensors).map(([name, t]) => ({ name, dtype: "F32" as const, shape: t.shape, data: encodeFloats(t.values, "F32") })),
  );
  return sink.committed!;
}

async function computeVectors(ringBits: RingBits, bits: number, maxExamples: number[]): Promise<Record<string, unknown>> {
  const ids = ["alpha", "bravo", "charlie"];
  const pairs = ids.map((id) => keyPairFromSecret(sha(`flo-secagg-vector-key-${id}`)));
  const roster = buildRoster(ids.map((id, i) => ({ id, publicKey: pairs[i].publicKey })));
  const threshold = 2;
  const plan = planQuantization({ bits, clipNorm: 1.0, maxExamples });
  expect(plan.ringBits).toBe(ringBits);
  const sessionInput = { federationId: "vectors-fed", round: 7, attempt: 2, threshold, ringBits, roster };
  const session = sessionId(sessionInput);
  const pairwise = [];
  for (let i = 1; i <= 3; i++) {
    for (let j = i; j <= 3; j++) {
      const s = pairSecrets({ secretKey: pairs[i - 1].secretKey, roster, session, selfIndex: i, peerIndex: j });
      pairwise.push({ i, j, sharedSecret: hex(sharedSecret(pairs[i - 1].secretKey, pairs[j - 1].publicKey)), maskSeed: hex(s.maskSeed), shareKey: hex(s.shareKey) });
    }
  }
  const prgSeed = Buffer.from(pairwise[1].maskSeed, "hex");
  const prg = {
    seed: hex(prgSeed),
    first8: hex(new Uint8Array(new MaskStream(prgSeed, ringBits).next(8).slice().buffer)),
    from5: hex(new Uint8Array(new MaskStream(prgSeed, ringBits, 5).next(3).slice().buffer)),
  };
  const global = { "layer.b": { shape: [3], values: [0.5, -0.25, 0] }, "layer.a": { shape: [2, 2], values: [0, 0, 0, 0] } };
  const trained = [
    { "layer.b": { shape: [3], values: [0.6, -0.3, 0.05] }, "layer.a": { shape: [2, 2], values: [0.01, -0.02, 0.03, -0.04] } },
    // Norm above the clipping norm 1.0: clipped.
    { "layer.b": { shape: [3], values: [1.5, 0.75, -0.9] }, "layer.a": { shape: [2, 2], values: [0.2, 0.1, -0.3, 0.4] } },
    { "layer.b": { shape: [3], values: [0.45, -0.2, 0.001] }, "layer.a": { shape: [2, 2], values: [-0.005, 0.0025, 0.125, -0.0625] } },
  ];
  const numExamples = [4, 100, 25];
  const globalFile = await f32Model(global);
  const layout = streamLayout(floatTensors(await readSafetensorsHeader(memorySource("g", globalFile))));
  const silos = [];
  const setups = [];
  const masked = new Map<number, Buffer>();
  for (let i = 1; i <= 3; i++) {
    const selfSecret = fieldFromBytes(
      sha(`flo-secagg-vector-self-${i}-${ringBits}`).map((b, k) => (k === 31 ? b & 0x3f : b)),
      "selfSecret",
    );
    const coefficients = [BigInt(`0x${hex(sha(`flo-secagg-vector-coef-${i}`))}`) % FIELD_PRIME];
    const nonces = [1, 2, 3].map((j) => sha(`flo-secagg-vector-nonce-${i}-${j}`).subarray(0, 12));
    const setup = prepareSiloRound({ secretKey: pairs[i - 1].secretKey, roster, session, selfIndex: i, threshold, selfSecret, coefficients, nonces });
    setups.push(setup);
    const sink = memorySink();
    const trainedFile = await f32Model(trained[i - 1]);
    await writeMaskedUpdate({
      trained: memorySource("t", trainedFile),
      global: memorySource("g", globalFile),
      sink,
      setup,
      session,
      plan,
      numExamples: numExamples[i - 1],
      maxExamples: maxExamples[i - 1],
      rounding: "nearest",
      chunkElements: 2,
    });
    masked.set(i, sink.committed!);
    silos.push({
      id: roster.silos[i - 1].id,
      secretKey: hex(pairs[i - 1].secretKey),
      publicKey: pairs[i - 1].publicKey.toString("base64"),
      selfSecret: selfSecret.toString(16),
      coefficients: coefficients.map((c) => c.toString(16)),
      shares: splitSecret({ secret: selfSecret, threshold, count: 3, coefficients }).map((s) => ({ x: s.x, y: s.y.toString(16) })),
      nonces: nonces.map(hex),
      sharesFile: setup.sharesFile,
      trained: hex(trainedFile),
      numExamples: numExamples[i - 1],
      maxExamples: maxExamples[i - 1],
      masked: hex(sink.committed!),
    });
  }
  // Silo 3 drops; silos 1 and 2 reveal.
  const split = { survivors: [1, 2], dropped: [3] };
  const reveals = [];
  for (const i of split.survivors) {
    reveals.push(
      await revealForUnmask({
        secretKey: pairs[i - 1].secretKey,
        roster,
        session,
        threshold,
        selfIndex: i,
        split,
        sharesFiles: new Map(setups.map((s) => [s.selfIndex, s.sharesFile])),
        recordDir: await fs.mkdtemp(path.join(os.tmpdir(), "flo-vectors-")),
      }),
    );
  }
  const sums: Record<string, number[]> = {};
  const result = await unmaskSum({
    roster,
    session,
    threshold,
    plan,
    split,
    masked: new Map(split.survivors.map((i) => [i, memorySource(`m${i}`, masked.get(i)!)])),
    reveals,
    layout,
    onChunk: ({ tensor, sum }) => void (sums[tensor.name] = Array.from(sum)),
  });
  return {
    session: { federationId: "vectors-fed", round: 7, attempt: 2, threshold, ringBits, rosterDigest: hex(roster.digest), id: hex(session) },
    quantization: plan,
    roster: silos.map((s) => s.id),
    pairwise,
    prg,
    global: hex(globalFile),
    silos,
    split,
    reveals,
    unmasked: { weightSum: result.weightSum, sums },
  };
}

async function allVectors(): Promise<Record<string, unknown>> {
  return { ring32: await computeVectors(32, 8, [10, 20, 30]), ring64: await computeVectors(64, 24, [1000, 2000, 3000]) };
}

describe("secagg shared test vectors", () => {
  test("the TypeScript implementation reproduces every stored vector", async () => {
    const computed = JSON.parse(JSON.stringify(await allVectors())) as Record<string, unknown>;
    if (process.env.FLO_WRITE_SECAGG_VECTORS === "1") await fs.writeFile(FIXTURE, JSON.stringify(computed, null, 1) + "\n");
    const stored = JSON.parse(await fs.readFile(FIXTURE, "utf8")) as Record<string, unknown>;
    expect(computed).toEqual(stored);
  });

  test("the stored vectors decode as the protocol says (independent of the code that wrote them)", async () => {
    const stored = JSON.parse(await fs.readFile(FIXTURE, "utf8")) as {
      ring32: { unmasked: { weightSum: number; sums: Record<string, number[]> }; silos: { numExamples: number; maxExamples: number }[]; split: { survivors: number[] } };
    };
    const v = stored.ring32;
    // Survivors alpha (4 examples) and bravo (100, clamped to 20): weight sum 24.
    expect(v.unmasked.weightSum).toBe(24);
    // alpha's update of layer.b[0] is 0.1 (norm < 1, unclipped); bravo's is 1.0 scaled by 1/||x|| (> 1).
    const bravoNorm = Math.hypot(1.0, 1.0, -0.9, 0.2, 0.1, -0.3, 0.4);
    const plainB0 = 4 * 0.1 + 20 * (1.0 / bravoNorm);
    // bits 8: s = 127, nearest rounding: error <= 2 * (1/2 + 1/32) / 127 over the two survivors.
    expect(Math.abs(v.unmasked.sums["layer.b"][0] - plainB0)).toBeLessThanOrEqual((2 * (0.5 + 1 / 32)) / 127);
  });

  test("the Python package reproduces every stored vector (run with /usr/bin/python3)", async () => {
    const { stdout, stderr } = await promisify(execFile)("/usr/bin/python3", ["-m", "unittest", "discover", "-s", "tests", "-t", ".", "-v"], {
      cwd: PYTHON_TESTS,
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" },
    });
    expect(stdout + stderr).toMatch(/\nOK\n?$/);
    expect(stderr).toMatch(/Ran [1-9]\d* tests?/);
  }, 120000);
});

describe("Python silos, TypeScript orchestrator", () => {
  const python = (args: string[]) => promisify(execFile)("/usr/bin/python3", ["-m", "flo_secagg", ...args], { cwd: PYTHON_TESTS, env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1" } });

  test("silos masking and revealing with `python -m flo_secagg` are unmasked by unmaskSum, one silo dropped", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-secagg-py-"));
    const ids = ["north", "east", "south", "west"];
    const maxExamples = [50, 80, 40, 100];
    const numExamples = [30, 200, 40, 10];
    const pairs: ReturnType<typeof generateKeyPair>[] = [];
    for (const id of ids) {
      const pair = generateKeyPair();
      await writeSecretKeyFile(path.join(dir, `${id}.key`), pair);
      pairs.push(pair);
    }
    const roster = buildRoster(ids.map((id, i) => ({ id, publicKey: pairs[i].publicKey })));
    const description = (self: string) => ({
      federationId: "py-fed",
      round: 2,
      attempt: 1,
      threshold: 3,
      quantization: { bits: 16, clipNorm: 0.5, rounding: "stochastic" },
      silos: ids.map((id, i) => ({ id, publicKey: pairs[i].publicKey.toString("base64"), maxExamples: maxExamples[i] })),
      self,
    });
    const plan = planQuantization({ bits: 16, clipNorm: 0.5, maxExamples: roster.silos.map((s) => maxExamples[ids.indexOf(s.id)]) });
    const session = sessionId({ federationId: "py-fed", round: 2, attempt: 1, threshold: 3, ringBits: plan.ringBits, roster });
    const shape = [7, 9];
    let state = 7;
    const random = () => (state = (state * 48271) % 2147483647) / 2147483647 - 0.5;
    const globalValues = Array.from({ length: 63 }, random);
    await fs.writeFile(path.join(dir, "global.safetensors"), await f32Model({ w: { shape, values: globalValues } }));
    const updates = ids.map((_, s) => globalValues.map(() => random() * (s === 1 ? 0.5 : 0.05)));
    // "west" never uploads; the others mask in Python.
    const uploaders = ["north", "east", "south"];
    for (const id of uploaders) {
      const s = ids.indexOf(id);
      await fs.writeFile(path.join(dir, `${id}.session.json`), JSON.stringify(description(id)));
      await fs.writeFile(path.join(dir, `${id}.trained.safetensors`), await f32Model({ w: { shape, values: globalValues.map((g, i) => g + updates[s][i]) } }));
      await python([
        "mask",
        "--session",
        path.join(dir, `${id}.session.json`),
        "--key",
        path.join(dir, `${id}.key`),
        "--trained",
        path.join(dir, `${id}.trained.safetensors`),
        "--global",
        path.join(dir, "global.safetensors"),
        "--num-examples",
        String(numExamples[s]),
        "--out",
        path.join(dir, id),
      ]);
    }
    const layout = streamLayout([{ name: "w", shape }]);
    const survivors = uploaders.map((id) => roster.indexOf(id));
    const split = { survivors, dropped: [roster.indexOf("west")] };
    await fs.writeFile(path.join(dir, "split.json"), JSON.stringify(split));
    const masked = new Map<number, ReturnType<typeof memorySource>>();
    const sharesPaths = [];
    for (const id of uploaders) {
      const index = roster.indexOf(id);
      const bytes = await fs.readFile(path.join(dir, id, "masked.safetensors"));
      await validateMaskedUpload(memorySource(id, bytes), { session, sender: index, ringBits: plan.ringBits, layout });
      parseSharesFile(JSON.parse(await fs.readFile(path.join(dir, id, "shares.json"), "utf8")), { session, sender: index, rosterSize: 4, file: id });
      masked.set(index, memorySource(id, bytes));
      sharesPaths.push(path.join(dir, id, "shares.json"));
    }
    const reveals: Reveal[] = [];
    for (const id of uploaders) {
      const out = path.join(dir, `${id}.reveal.json`);
      await python([
        "reveal",
        "--session",
        path.join(dir, `${id}.session.json`),
        "--key",
        path.join(dir, `${id}.key`),
        "--split",
        path.join(dir, "split.json"),
        "--shares",
        ...sharesPaths,
        "--record-dir",
        path.join(dir, `${id}.records`),
        "--out",
        out,
      ]);
      reveals.push(JSON.parse(await fs.readFile(out, "utf8")) as Reveal);
    }
    let sum: Float64Array | undefined;
    const result = await unmaskSum({ roster, session, threshold: 3, plan, split, masked, reveals, layout, onChunk: (c) => void (sum = c.sum) });
    // Plain weighted sum of the three uploaders, clipped to 0.5 and with weights clamped to maxExamples.
    const expected = new Float64Array(63);
    let weightSum = 0;
    for (const id of uploaders) {
      const s = ids.indexOf(id);
      const x = Float32Array.from(globalValues.map((g, i) => g + updates[s][i])).map((v, i) => v - Math.fround(globalValues[i]));
      const norm = Math.hypot(...x);
      const w = Math.min(numExamples[s], maxExamples[s]);
      weightSum += w;
      x.forEach((v, i) => (expected[i] += w * v * (norm > 0.5 ? 0.5 / norm : 1)));
    }
    expect(result.weightSum).toBe(30 + 80 + 40);
    expect(result.weightSum).toBe(weightSum);
    const error = Math.max(...Array.from(sum!, (v, i) => Math.abs(v - expected[i])));
    expect(error).toBeLessThanOrEqual(sumErrorBound(plan, 3, "stochastic"));
    // A second split for the same session is refused by the Python silo.
    await fs.writeFile(path.join(dir, "split2.json"), JSON.stringify({ survivors: [1, 2, 3, 4], dropped: [] }));
    await expect(
      python([
        "reveal",
        "--session",
        path.join(dir, "north.session.json"),
        "--key",
        path.join(dir, "north.key"),
        "--split",
        path.join(dir, "split2.json"),
        "--shares",
        ...sharesPaths,
        "--record-dir",
        path.join(dir, "north.records"),
        "--out",
        path.join(dir, "x.json"),
      ]),
    ).rejects.toMatchObject({ code: 1, stderr: expect.stringContaining("[SECOND_ROSTER]") as unknown });
  }, 120000);
});

describe("python -m flo_secagg mask-run (the Azure ML wrapper around the user's command)", () => {
  /** A roster of two silos and a global model in a fresh folder; `tmp` is the wrapper's TMPDIR. */
  async function setup() {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-secagg-maskrun-"));
    const pairs = [generateKeyPair(), generateKeyPair()];
    for (const [i, pair] of pairs.entries()) await writeSecretKeyFile(path.join(dir, `s${i}.key`), pair);
    await fs.writeFile(
      path.join(dir, "session.json"),
      JSON.stringify({
        federationId: "maskrun",
        round: 1,
        attempt: 0,
        threshold: 2,
        quantization: { bits: 16, clipNorm: 1, rounding: "nearest" },
        silos: pairs.map((p, i) => ({ id: `s${i}`, publicKey: p.publicKey.toString("base64"), maxExamples: 100 })),
        self: "s0",
      }),
    );
    await fs.writeFile(path.join(dir, "global.safetensors"), await f32Model({ w: { shape: [3], values: [0, 0, 0] } }));
    await fs.writeFile(path.join(dir, "trained.safetensors"), await f32Model({ w: { shape: [3], values: [0.1, 0.2, 0.3] } }));
    await fs.mkdir(path.join(dir, "tmp"));
    return dir;
  }
  const maskRun = (dir: string, userCommand: string) =>
    spawnSync(
      "/usr/bin/python3",
      ["-m", "flo_secagg", "mask-run", "--session", "session.json", "--key", "s0.key", "--global", "global.safetensors", "--output", "out", "--publish-metrics", "--", userCommand],
      { cwd: dir, env: { ...process.env, PYTHONPATH: PYTHON_TESTS, PYTHONDONTWRITEBYTECODE: "1", TMPDIR: path.join(dir, "tmp") }, encoding: "utf8" },
    );
  const trainer = (metrics: string) => `cp trained.safetensors "$FLO_SECAGG_PLAIN_OUTPUT/model.safetensors" && echo '${metrics}' > "$FLO_SECAGG_PLAIN_OUTPUT/metrics.json"`;

  test("the trainer writes into a private folder; only the masked update, shares and finite published metrics reach the output", async () => {
    const dir = await setup();
    const run = maskRun(dir, trainer('{"num_examples": 40, "metrics": {"loss": 0.5, "bad": "x"}}'));
    expect({ status: run.status, stderr: run.stderr }).toEqual({ status: 0, stderr: "" });
    expect((await fs.readdir(path.join(dir, "out"))).sort()).toEqual([MASKED_FILE, PUBLISHED_METRICS_FILE, SHARES_FILE].sort());
    expect(JSON.parse(await fs.readFile(path.join(dir, "out", PUBLISHED_METRICS_FILE), "utf8"))).toEqual({ metrics: { loss: 0.5 }, global_metrics: {} });
    expect(await fs.readdir(path.join(dir, "tmp"))).toEqual([]);
  });

  test("a failing command exits with its code; a missing count fails masking: nothing is written, the plain folder is deleted", async () => {
    const dir = await setup();
    const failed = maskRun(dir, "exit 3");
    expect(failed.status).toBe(3);
    const noCount = maskRun(dir, trainer('{"metrics": {"loss": 0.5}}'));
    expect(noCount.status).toBe(1);
    expect(noCount.stderr).toMatch(/num_examples.*expected an integer > 0/);
    expect(await fs.readdir(path.join(dir, "out")).catch(() => [])).toEqual([]);
    expect(await fs.readdir(path.join(dir, "tmp"))).toEqual([]);
  });
});
