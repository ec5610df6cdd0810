/**
 * A secure round's orchestrator steps on real storage (Azurite), with silos simulated by the silo-side
 * code the local job runner and the unmask job run (maskTrainingOutput, revealFromFiles): the split
 * fixed once per session, the unmasked sum through fedavg and fedadam against plain aggregation with
 * the same clipping and weights, and the dropout cases (recovered, re-run under a new session, too
 * few survivors, second roster).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { promises as fs } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelStore } from "../lib/models/store";
import { readSafetensorsHeader, writeSafetensors } from "../lib/models/safetensors";
import { blobUri } from "../lib/models/storeLayout";
import { fileSink } from "../lib/models/fileBytes";
import { parseSpec, type FederationSpec } from "../lib/spec";
import type { FederationServices } from "../lib/federation/services";
import type { AggregateSecureRoundInput, ModelRef, SecureJobRef, SecureSplitOutput, SiloRoundResult } from "../lib/federation/types";
import { aggregateSecureRound, fixSecureSplit } from "../lib/federation/activities";
import { sessionDescription, sessionPaths } from "../lib/federation/secure";
import type { RoundManifest } from "../lib/federation/manifest";
import { aggregateUpdates, createStrategy } from "../lib/aggregation";
import { encodeKey, generateKeyPair, writeSecretKeyFile } from "../lib/secagg/keys";
import { maskTrainingOutput, revealFromFiles } from "../lib/secagg/siloJob";
import { SecAggError } from "../lib/secagg/errors";
import { useAzurite } from "./helpers/azurite";

const azurite = useAzurite({ services: ["blob"] });
const SILOS = ["a", "b", "c", "d"];
const EXAMPLES: Record<string, number> = { a: 10, b: 20, c: 30, d: 40 };
const SIZE = 64;
const CLIP = 1;
let store: ModelStore;
let dir: string;
const keyFiles: Record<string, string> = {};
const publicKeys: Record<string, string> = {};
let global: ModelRef;
let globalValues: Float32Array;
const trained: Record<string, Float32Array> = {};

function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function modelTensors(w: Float32Array, step: bigint) {
  return [
    { name: "w", dtype: "F32" as const, shape: [SIZE], data: new Uint8Array(w.buffer.slice(0)) },
    { name: "step", dtype: "I64" as const, shape: [1], data: new Uint8Array(new BigInt64Array([step]).buffer) },
  ];
}

beforeAll(async () => {
  store = ModelStore.fromConnectionString(azurite.connectionString, "flo");
  await store.ensureContainer();
  dir = mkdtempSync(join(tmpdir(), "flo-secagg-rounds-"));
  const r = random(7);
  globalValues = Float32Array.from({ length: SIZE }, () => r() - 0.5);
  const written = await writeSafetensors(store.sink("global/model.safetensors"), modelTensors(globalValues, 5n));
  global = { uri: written.uri, sha256: written.sha256 };
  for (const [i, silo] of SILOS.entries()) {
    const pair = generateKeyPair();
    keyFiles[silo] = join(dir, `${silo}.key`);
    await writeSecretKeyFile(keyFiles[silo], pair);
    publicKeys[silo] = encodeKey(pair.publicKey);
    // Update norms from about 0.3 to 2.4: silos c and d are clipped to C = 1.
    const scale = 0.05 * (i + 1) ** 1.5;
    trained[silo] = Float32Array.from(globalValues, (g) => g + scale * (2 * r() - 1));
  }
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function spec(name: string, aggregation: string, options: { minSilos?: number } = {}): FederationSpec {
  return parseSpec(
    JSON.stringify({
      name,
      rounds: 1,
      initialModel: "init.safetensors",
      silos: SILOS.map((silo) => ({ name: silo, compute: { type: "local", keyFile: keyFiles[silo] }, publicKey: publicKeys[silo], maxExamples: 100 })),
      training: { command: "node train.js --global ${{inputs.global_model}} --out ${{outputs.model_update}}" },
      aggregation: { ...(JSON.parse(aggregation) as object), clipping: { mode: "fixed", norm: CLIP }, secureAggregation: { threshold: 3, rounding: "nearest" } },
      policy: { minSilos: options.minSilos ?? 3, jobRetries: 1 },
    }),
    { format: "json", source: `${name}.json` },
  );
}

function servicesFor(federationSpec: FederationSpec): FederationServices {
  return { store, loadSpec: () => Promise.resolve(federationSpec), computeFor: () => ({}) } as unknown as FederationServices;
}

const specRef: ModelRef = { uri: "unused", sha256: "unused" };

/** A silo's training job under a session: the trainer's output masked in place, then uploaded. */
async function trainAndMask(federationSpec: FederationSpec, federationId: string, secure: SecureJobRef, silo: string): Promise<SiloRoundResult> {
  const jobDir = join(dir, `${federationId}-s${secure.attempt}-${silo}`);
  const out = join(jobDir, "out");
  mkdirSync(out, { recursive: true });
  await writeSafetensors(fileSink(join(out, "model.safetensors")), modelTensors(trained[silo], 9n));
  writeFileSync(join(out, "metrics.json"), JSON.stringify({ num_examples: EXAMPLES[silo], metrics: { loss: 1 } }));
  writeFileSync(join(jobDir, "session.json"), JSON.stringify({ ...sessionDescription(federationSpec, federationId, 1, secure.attempt), self: silo }));
  await fs.writeFile(join(jobDir, "global.safetensors"), await store.getBytes("global/model.safetensors"));
  await maskTrainingOutput({ sessionFile: join(jobDir, "session.json"), keyFile: keyFiles[silo], outputDir: out, globalModelFile: join(jobDir, "global.safetensors"), publishMetrics: false });
  const folder = sessionPaths(federationId, 1, secure.attempt).updateFolder(silo);
  await store.uploadFolder(out, folder);
  return { silo, outcome: "succeeded", attempts: [], outputUri: blobUri(store.containerUrl, folder) };
}

function failed(silo: string): SiloRoundResult {
  return { silo, outcome: "failed", attempts: [], reason: "job failed" };
}

/** A survivor's unmask job: reveals from the unmask folder flo wrote, output uploaded. */
async function unmask(federationSpec: FederationSpec, federationId: string, secure: SecureJobRef, silo: string): Promise<SiloRoundResult> {
  const paths = sessionPaths(federationId, 1, secure.attempt);
  const jobDir = join(dir, `${federationId}-s${secure.attempt}-${silo}-unmask`);
  mkdirSync(jobDir, { recursive: true });
  const shares: string[] = [];
  for (const blob of await store.list(paths.unmaskFolder)) {
    const file = join(jobDir, blob.path.slice(paths.unmaskFolder.length));
    await fs.writeFile(file, await store.getBytes(blob.path));
    if (/shares-\d+\.json$/.test(file)) shares.push(file);
  }
  writeFileSync(join(jobDir, "session.json"), JSON.stringify({ ...sessionDescription(federationSpec, federationId, 1, secure.attempt), self: silo }));
  await revealFromFiles({
    sessionFile: join(jobDir, "session.json"),
    keyFile: keyFiles[silo],
    splitFile: join(jobDir, "split.json"),
    sharesFiles: shares,
    recordDir: `${keyFiles[silo]}.reveals`,
    outFile: join(jobDir, "reveal.json"),
  });
  await store.putBytes(`${paths.revealFolder(silo)}reveal.json`, await fs.readFile(join(jobDir, "reveal.json")));
  return { silo, outcome: "succeeded", attempts: [], outputUri: blobUri(store.containerUrl, paths.revealFolder(silo)) };
}

function aggregateInput(federationId: string, results: SiloRoundResult[], secure: AggregateSecureRoundInput["secure"]): AggregateSecureRoundInput {
  return { federationId, spec: specRef, round: 1, sampled: SILOS, results, global, roundStartedAt: "2026-12-03T00:00:00.000Z", minSilos: 3, secure };
}

async function readW(uri: string): Promise<{ w: Float32Array; step: bigint }> {
  const source = store.source(store.pathFromUri(uri));
  const header = await readSafetensorsHeader(source);
  const w = header.byName.get("w")!;
  const step = header.byName.get("step")!;
  const bytes = await source.read(header.dataStart + w.begin, w.end - w.begin);
  const stepBytes = await source.read(header.dataStart + step.begin, 8);
  return { w: new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)), step: stepBytes.readBigInt64LE(0) };
}

/** The same round in the clear: the engine on the trainers' models with the same clipping and weights. */
async function plainRound(name: string, aggregation: Record<string, unknown>, silos: string[]): Promise<Float32Array> {
  const updates = [];
  for (const silo of silos) {
    const written = await writeSafetensors(store.sink(`plain/${name}/${silo}.safetensors`), modelTensors(trained[silo], 9n));
    updates.push({ id: silo, model: store.source(store.pathFromUri(written.uri)), metrics: { numExamples: EXAMPLES[silo], metrics: {} } });
  }
  const { strategy, ...options } = aggregation;
  const result = await aggregateUpdates({
    updates,
    output: () => store.sink(`plain/${name}/out.safetensors`),
    strategy: createStrategy(strategy as string, { ...options, clipping: { mode: "fixed", norm: CLIP } }),
    stateOutput: (stateName) => store.sink(`plain/${name}/state-${stateName}.safetensors`),
    global: store.source("global/model.safetensors"),
    minUpdates: silos.length,
  });
  return (await readW(result.output.uri)).w;
}

/** Runs fixSecureSplit, the survivors' unmask jobs (except `unmaskFails`) and aggregateRound. */
async function secureRound(federationSpec: FederationSpec, federationId: string, secure: SecureJobRef, options: { upload: string[]; unmaskFails?: string[] }) {
  const services = servicesFor(federationSpec);
  const results: SiloRoundResult[] = [];
  for (const silo of SILOS) results.push(options.upload.includes(silo) ? await trainAndMask(federationSpec, federationId, secure, silo) : failed(silo));
  const split = await fixSecureSplit(services, { federationId, spec: specRef, round: 1, secure, results, global, minSilos: 3 });
  if (!split.ok) return { split, results };
  const unmaskResults: SiloRoundResult[] = [];
  for (const silo of split.survivors) unmaskResults.push(options.unmaskFails?.includes(silo) ? failed(silo) : await unmask(federationSpec, federationId, secure, silo));
  const aggregated = await aggregateSecureRound(services, aggregateInput(federationId, results, { secure, split, unmask: unmaskResults, failedSessions: [] }));
  return { split, results, aggregated };
}

const F32_ULP = 2 ** -24; // relative; model values are below 1

describe("one secure round on identical inputs", () => {
  it("equals plain FedAvg within the stated bound, integer tensors from the global model", async () => {
    const federationSpec = spec("eq-fedavg", '{"strategy": "fedavg"}');
    const { aggregated } = await secureRound(federationSpec, "eq-fedavg", { attempt: 0, rerun: 0 }, { upload: SILOS });
    if (!aggregated?.ok) throw new Error(`not aggregated: ${JSON.stringify(aggregated)}`);
    const secure = await readW(aggregated.summary.model.uri);
    const plain = await plainRound("eq-fedavg", { strategy: "fedavg" }, SILOS);
    const manifest = await store.getJson<RoundManifest>(store.pathFromUri(aggregated.summary.manifestUri));
    const bound = manifest.secureAggregation!.errorBound;
    expect(bound).toBeLessThan(1e-6);
    // The bound on the mean update, plus float32 rounding of the mean model and of the output.
    for (let i = 0; i < SIZE; i++) expect(Math.abs(secure.w[i] - plain[i])).toBeLessThanOrEqual(bound + 2 * F32_ULP);
    expect(secure.step).toBe(5n);
    expect(manifest.totalExamples).toBe(100);
    expect(manifest.secureAggregation!.survivors).toEqual(SILOS);
  });

  it("equals plain FedAdam within the bound propagated through one Adam step", async () => {
    const federationSpec = spec("eq-fedadam", '{"strategy": "fedadam"}');
    const { aggregated } = await secureRound(federationSpec, "eq-fedadam", { attempt: 0, rerun: 0 }, { upload: SILOS });
    if (!aggregated?.ok) throw new Error(`not aggregated: ${JSON.stringify(aggregated)}`);
    const secure = await readW(aggregated.summary.model.uri);
    const plain = await plainRound("eq-fedadam", { strategy: "fedadam" }, SILOS);
    const bound = (await store.getJson<RoundManifest>(store.pathFromUri(aggregated.summary.manifestUri))).secureAggregation!.errorBound;
    // Round 1's step lr (1 - b1) D / (sqrt(1 - b2) |D| + tau) changes by at most lr (1 - b1) / tau = 10 per unit of D.
    const amplification = (0.1 * (1 - 0.9)) / 1e-3;
    for (let i = 0; i < SIZE; i++) expect(Math.abs(secure.w[i] - plain[i])).toBeLessThanOrEqual(amplification * (bound + F32_ULP) + 2 * F32_ULP);
    // The comparison is not vacuous: the Adam step moved the model by far more than the tolerance.
    expect(Math.max(...plain.map((v, i) => Math.abs(v - globalValues[i])))).toBeGreaterThan(0.05);
  });
});

describe("central DP on the unmasked sum", () => {
  it("calibrates the noise to the survivors (sigma = z C / |S|) and weighs every silo 1", async () => {
    const federationSpec = spec("dp", '{"strategy": "fedavg", "dp": {"noiseMultiplier": 0.5}}');
    const { aggregated } = await secureRound(federationSpec, "dp", { attempt: 0, rerun: 0 }, { upload: SILOS });
    if (!aggregated?.ok) throw new Error(`not aggregated: ${JSON.stringify(aggregated)}`);
    const manifest = await store.getJson<RoundManifest>(store.pathFromUri(aggregated.summary.manifestUri));
    expect((manifest.strategy.report as { noiseStddev: number }).noiseStddev).toBeCloseTo((0.5 * CLIP) / SILOS.length, 12);
    // Every weight clamped to 1: the weight sum is the number of survivors, not the examples.
    expect(manifest.secureAggregation!.weightSum).toBe(SILOS.length);
    expect(manifest.secureAggregation!.quantization.totalMaxExamples).toBe(SILOS.length);
  });
});

describe("dropouts", () => {
  it("a survivor failing during unmasking with D empty is recovered from the others' shares", async () => {
    const federationSpec = spec("unmask-fail", '{"strategy": "fedavg"}');
    const { aggregated, split } = await secureRound(federationSpec, "unmask-fail", { attempt: 0, rerun: 0 }, { upload: SILOS, unmaskFails: ["d"] });
    if (!aggregated?.ok) throw new Error(`not aggregated: ${JSON.stringify(aggregated)}`);
    expect(split.dropped).toEqual([]);
    const secure = await readW(aggregated.summary.model.uri);
    const plain = await plainRound("unmask-fail", { strategy: "fedavg" }, SILOS);
    const record = (await store.getJson<RoundManifest>(store.pathFromUri(aggregated.summary.manifestUri))).secureAggregation!;
    expect(record.unmaskFailed).toEqual(["d"]);
    for (let i = 0; i < SIZE; i++) expect(Math.abs(secure.w[i] - plain[i])).toBeLessThanOrEqual(record.errorBound + 2 * F32_ULP);
  });

  it("a survivor failing during unmasking with D not empty abandons the session (nothing unmasked); the new session's result is correct", async () => {
    const federationSpec = spec("rerun", '{"strategy": "fedavg"}');
    const first = await secureRound(federationSpec, "rerun", { attempt: 0, rerun: 0 }, { upload: ["a", "b", "c"], unmaskFails: ["c"] });
    expect(first.split.dropped).toEqual(["d"]);
    expect(first.aggregated).toMatchObject({ ok: false, rerun: true, session: first.split.session });
    expect((first.aggregated as { reason: string }).reason).toMatch(/UNRECOVERABLE/);
    expect(await store.list(`${sessionPaths("rerun", 1, 0).folder}sum/`)).toEqual([]);
    expect(await store.list("federations/rerun/rounds/2/")).toEqual([]);

    const second = await secureRound(federationSpec, "rerun", { attempt: 1, rerun: 1 }, { upload: ["a", "b", "c"] });
    if (!second.aggregated?.ok) throw new Error(`not aggregated: ${JSON.stringify(second.aggregated)}`);
    expect(second.split.session).not.toBe(first.split.session);
    const secure = await readW(second.aggregated.summary.model.uri);
    const plain = await plainRound("rerun", { strategy: "fedavg" }, ["a", "b", "c"]);
    const record = (await store.getJson<RoundManifest>(store.pathFromUri(second.aggregated.summary.manifestUri))).secureAggregation!;
    expect(record.dropped).toEqual([{ silo: "d", reason: "no upload: job failed" }]);
    for (let i = 0; i < SIZE; i++) expect(Math.abs(secure.w[i] - plain[i])).toBeLessThanOrEqual(record.errorBound + 2 * F32_ULP);
  });

  it("fewer than t valid uploads: the split is refused with the reason and nothing is handed to unmask jobs", async () => {
    const federationSpec = spec("too-few", '{"strategy": "fedavg"}');
    const secure = { attempt: 0, rerun: 0 };
    const results = [
      await trainAndMask(federationSpec, "too-few", secure, "a"),
      await trainAndMask(federationSpec, "too-few", secure, "b"),
      await trainAndMask(federationSpec, "too-few", secure, "c"),
      failed("d"),
    ];
    // c's upload is replaced by a's: validation drops it (wrong sender), leaving 2 < t = 3.
    await store.putBytes(`${sessionPaths("too-few", 1, 0).updateFolder("c")}masked.safetensors`, await store.getBytes(`${sessionPaths("too-few", 1, 0).updateFolder("a")}masked.safetensors`));
    const split = await fixSecureSplit(servicesFor(federationSpec), { federationId: "too-few", spec: specRef, round: 1, secure, results, global, minSilos: 3 });
    expect(split.ok).toBe(false);
    expect(split.reason).toBe("TOO_FEW_SURVIVORS: 2 valid upload(s), the threshold is t = 3: nothing is unmasked under this session");
    expect(split.droppedReasons.find((d) => d.silo === "c")!.reason).toMatch(/^bad upload: .*__metadata__\.sender: expected "3", got "1"/);
    expect(await store.list(sessionPaths("too-few", 1, 0).unmaskFolder)).toEqual([]);
  });

  it("S and D are fixed once per session, and a silo refuses to reveal for a second roster", async () => {
    const federationSpec = spec("roster", '{"strategy": "fedavg"}');
    const secure = { attempt: 0, rerun: 0 };
    const services = servicesFor(federationSpec);
    const results = [...(await Promise.all(["a", "b", "c"].map((s) => trainAndMask(federationSpec, "roster", secure, s)))), failed("d")];
    const split: SecureSplitOutput = await fixSecureSplit(services, { federationId: "roster", spec: specRef, round: 1, secure, results, global, minSilos: 3 });
    expect(split.dropped).toEqual(["d"]);
    // d's upload shows up late: the split stays.
    const late = [...results.slice(0, 3), await trainAndMask(federationSpec, "roster", secure, "d")];
    expect(await fixSecureSplit(services, { federationId: "roster", spec: specRef, round: 1, secure, results: late, global, minSilos: 3 })).toEqual(split);
    await unmask(federationSpec, "roster", secure, "a");
    // An orchestrator now showing a a roster with d as a survivor (to get d's self-mask share) is refused.
    const paths = sessionPaths("roster", 1, 0);
    const jobDir = join(dir, "roster-second");
    mkdirSync(jobDir, { recursive: true });
    writeFileSync(join(jobDir, "split.json"), JSON.stringify({ survivors: [1, 2, 3, 4], dropped: [] }));
    writeFileSync(join(jobDir, "session.json"), JSON.stringify({ ...sessionDescription(federationSpec, "roster", 1, 0), self: "a" }));
    const shares: string[] = [];
    for (const silo of SILOS) {
      const file = join(jobDir, `shares-${silo}.json`);
      await fs.writeFile(file, await store.getBytes(`${paths.updateFolder(silo)}shares.json`));
      shares.push(file);
    }
    const second = revealFromFiles({
      sessionFile: join(jobDir, "session.json"),
      keyFile: keyFiles.a,
      splitFile: join(jobDir, "split.json"),
      sharesFiles: shares,
      recordDir: `${keyFiles.a}.reveals`,
      outFile: join(jobDir, "reveal.json"),
    });
    await expect(second).rejects.toThrow(SecAggError);
    await expect(second).rejects.toMatchObject({ code: "SECOND_ROSTER" });
  });
});
