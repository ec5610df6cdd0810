/**
 * Secure aggregation end to end on flo's embedded host: local silos mask their toy trainer's output
 * inside the job, survivors run unmask jobs, the orchestrator aggregates the unmasked sum. The
 * secure federation is compared with the plain FedAvg the toy spec gives, within the stated bound.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ModelStore } from "../lib/models/store";
import type { RoundManifest } from "../lib/federation/manifest";
import { generateKeyPair, encodeKey, writeSecretKeyFile } from "../lib/secagg/keys";
import { readSafetensorsHeader } from "../lib/models/safetensors";
import { expectedToyModel, finished, readToyModel, startFloHost, TOY_TEAM, toySpec, writeToyData, writeToyModel, type FloHost, type ToySilo } from "./helpers/flo";

let flo: FloHost;
let store: ModelStore;

beforeAll(async () => {
  flo = await startFloHost();
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
});
afterAll(async () => {
  await flo?.stop();
});

const CLIP_NORM = 10;

/** A secure toy spec: every silo gets a fresh key pair in `<dir>/keys/` (never committed). */
async function secureSpec(name: string, silos: readonly ToySilo[], extra: { secureAggregation?: Record<string, unknown>; policy?: Record<string, unknown>; strategy?: Record<string, unknown> } = {}) {
  writeToyData(flo.dir, silos);
  mkdirSync(join(flo.dir, "keys", name), { recursive: true });
  writeToyModel(join(flo.dir, `${name}-init.safetensors`), [0, 0, 0, 0]);
  const spec = toySpec(name, silos, {
    initialModel: `${name}-init.safetensors`,
    aggregation: { strategy: "fedavg", ...extra.strategy, clipping: { mode: "fixed", norm: CLIP_NORM }, secureAggregation: { rounding: "nearest", ...extra.secureAggregation } },
  }) as { silos: Record<string, unknown>[]; policy: Record<string, unknown> };
  for (const [i, silo] of spec.silos.entries()) {
    const pair = generateKeyPair();
    const keyFile = join("keys", name, `${silos[i].name}.key`);
    await writeSecretKeyFile(join(flo.dir, keyFile), pair);
    silo.publicKey = encodeKey(pair.publicKey);
    silo.maxExamples = 1000;
    silo.compute = { type: "local", keyFile };
  }
  spec.policy = { ...spec.policy, jobRetries: 0, ...extra.policy };
  return spec;
}

async function manifest(id: string, round: number): Promise<RoundManifest> {
  return store.getJson<RoundManifest>(`federations/${id}/rounds/${round}/manifest.json`);
}

describe("a secure 3-silo federation", () => {
  let status: any;
  beforeAll(async () => {
    const started = await flo.start(await secureSpec("sec", TOY_TEAM));
    expect(started.status).toBe(202);
    status = await flo.waitFor("sec", finished, 240_000);
  }, 300_000);

  it("ends at plain FedAvg's model within the stated quantization bound", async () => {
    expect(status.runtimeStatus).toBe("Completed");
    const w = readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
    const plain = expectedToyModel(TOY_TEAM, 3);
    // Per round: the manifest's bound on the mean update, plus one float32 rounding of the model
    // (values below 4: 2^-22) for writing the mean and one for the output; errors add over rounds.
    let tolerance = 0;
    for (const round of [1, 2, 3]) tolerance += (await manifest("sec", round)).secureAggregation!.errorBound + 2 * 2 ** -22;
    w.forEach((v, i) => expect(Math.abs(v - plain[i])).toBeLessThanOrEqual(tolerance));
    expect(tolerance).toBeLessThan(1e-5);
  });

  it("records t, S, D, the session, the quantization and the bound, and no silo's count or plain update", async () => {
    for (const round of [1, 2, 3]) {
      const m = await manifest("sec", round);
      const record = m.secureAggregation!;
      expect(record.threshold).toBe(2);
      expect(record.survivors.sort()).toEqual(["east", "north", "west"]);
      expect(record.dropped).toEqual([]);
      expect(record.session).toMatch(/^[0-9a-f]{64}$/);
      expect(record.quantization).toMatchObject({ bits: 16, ringBits: 32, clipNorm: CLIP_NORM, rounding: "nearest" });
      expect(record.weightSum).toBe(500);
      expect(m.totalExamples).toBe(500);
      for (const s of m.silos) {
        expect(s.included).toBe(true);
        expect(s.numExamples).toBeUndefined();
        expect(s.weightShare).toBeUndefined();
        expect(s.metrics).toBeUndefined();
        expect(s.update!.uri).toContain(`/secagg/s0/updates/${s.silo}/`);
      }
    }
  });

  it("stores masked updates that look uniform and differ from the trainers' outputs", async () => {
    const blobs = await store.list("federations/sec/");
    const masked = blobs.filter((b) => b.path.endsWith("/masked.safetensors"));
    expect(masked.length).toBe(9);
    const words: number[] = [];
    for (const b of masked) {
      const source = store.source(b.path);
      const header = await readSafetensorsHeader(source);
      const w = header.byName.get("w")!;
      expect(w.dtype).toBe("U32");
      const bytes = await source.read(header.dataStart + w.begin, w.end - w.begin);
      for (let i = 0; i < 4; i++) words.push(bytes.readUInt32LE(4 * i));
    }
    // The trainers' outputs are float32 values in [0, 3]: as uint32 words they sit in a narrow band
    // (0 or 0x3e000000..0x40400000); 36 uniform words fall there with probability < 1e-30.
    const plainBand = words.filter((x) => x === 0 || (x >= 0x3e000000 && x <= 0x40400000));
    expect(plainBand.length).toBeLessThan(4);
    // Uniform over 2^32: a chi-square over 4 equal bins with 3 degrees of freedom stays below 16.3 (p = 0.001).
    const bins = [0, 0, 0, 0];
    for (const x of words) bins[Math.floor(x / 2 ** 30)]++;
    const expected = words.length / 4;
    const chi2 = bins.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    expect(chi2).toBeLessThan(16.3);
  });

  it("keeps no count and no plain update in storage or in the host's logs", async () => {
    const blobs = await store.list("federations/sec/");
    const names = blobs.map((b) => b.path);
    expect(names.filter((n) => /\/(model\.safetensors|metrics\.json)$/.test(n) && n.includes("/updates/"))).toEqual([]);
    const plainModels = new Set<string>();
    // Every trained model of every round (the toy trainer is deterministic): none may be stored.
    let w = [0, 0, 0, 0];
    for (let r = 1; r <= 3; r++) {
      for (const s of TOY_TEAM) plainModels.add(Buffer.from(new Float32Array(w.map((v, i) => v + 0.5 * (s.target[i] - v))).buffer).toString("hex"));
      w = expectedToyModel(TOY_TEAM, r);
    }
    for (const b of blobs) {
      const bytes = await store.getBytes(b.path);
      const hex = bytes.toString("hex");
      for (const plain of plainModels) expect(hex.includes(plain)).toBe(false);
      const text = bytes.toString("utf8");
      expect(text).not.toMatch(/num_?examples/i);
    }
    const logs = flo.logs.join("");
    expect(logs).not.toMatch(/num_?examples/i);
    for (const n of TOY_TEAM.map((s) => s.n)) expect(logs).not.toMatch(new RegExp(`"?numExamples"?\\s*[:=]\\s*${n}\\b`));
    // The local jobs' folders keep nothing unmasked either.
    for (const job of readdirSync(join(flo.dir, "jobs")).filter((j) => j.startsWith("flo-sec-"))) {
      const out = join(flo.dir, "jobs", job, "outputs");
      for (const folder of readdirSync(out)) {
        for (const file of readdirSync(join(out, folder))) expect(["masked.safetensors", "shares.json", "reveal.json"]).toContain(file);
      }
      expect(readFileSync(join(flo.dir, "jobs", job, "job.json"), "utf8")).not.toMatch(/num_examples/);
    }
  });
});

describe("a secure federation where a silo never uploads", () => {
  it("recovers the round from the survivors' pairwise seeds and records the dropped silo", async () => {
    const silos: ToySilo[] = [...TOY_TEAM.slice(0, 2), { ...TOY_TEAM[2], behavior: "fail" }];
    const spec = await secureSpec("drop", silos, { policy: { minSilos: 2 } });
    (spec as unknown as { rounds: number }).rounds = 1;
    expect((await flo.start(spec)).status).toBe(202);
    const status = await flo.waitFor("drop", finished, 180_000);
    expect(status.runtimeStatus).toBe("Completed");
    const m = await manifest("drop", 1);
    expect(m.secureAggregation!.survivors.sort()).toEqual(["east", "west"]);
    expect(m.secureAggregation!.dropped.map((d) => d.silo)).toEqual(["north"]);
    const w = readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
    const plain = expectedToyModel(silos, 1, (_r, silo) => silo !== "north");
    w.forEach((v, i) => expect(Math.abs(v - plain[i])).toBeLessThanOrEqual(m.secureAggregation!.errorBound + 2 * 2 ** -22));
  }, 200_000);
});

describe("a secure federation where a survivor fails during unmasking while a silo dropped", () => {
  it("abandons the session, re-runs the round under a new one and ends with the right model", async () => {
    const silos: ToySilo[] = [...TOY_TEAM.slice(0, 2), { ...TOY_TEAM[2], behavior: "fail" }];
    const spec = await secureSpec("rerun", silos, { policy: { minSilos: 2, jobRetries: 1 } });
    (spec as unknown as { rounds: number }).rounds = 1;
    // A file where east keeps its per-session reveal records: east's unmask jobs fail until it goes.
    const blocker = join(flo.dir, "keys", "rerun", "east.key.reveals");
    writeFileSync(blocker, "not a folder");
    expect((await flo.start(spec)).status).toBe(202);
    const deadline = Date.now() + 120_000;
    while (!(await store.exists("federations/rerun/rounds/1/secagg/s1/session/east.json")) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    rmSync(blocker);
    const status = await flo.waitFor("rerun", finished, 180_000);
    expect(status.runtimeStatus).toBe("Completed");
    const m = await manifest("rerun", 1);
    const record = m.secureAggregation!;
    expect(record.attempt).toBe(1);
    expect(record.failedSessions).toHaveLength(1);
    expect(record.failedSessions[0].reason).toMatch(/UNRECOVERABLE/);
    expect(record.failedSessions[0].session).not.toBe(record.session);
    expect(record.dropped.map((d) => d.silo)).toEqual(["north"]);
    // Nothing was unmasked under the abandoned session.
    expect(await store.list("federations/rerun/rounds/1/secagg/s0/sum/")).toEqual([]);
    const w = readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
    const plain = expectedToyModel(silos, 1, (_r, silo) => silo !== "north");
    w.forEach((v, i) => expect(Math.abs(v - plain[i])).toBeLessThanOrEqual(record.errorBound + 2 * 2 ** -22));
  }, 300_000);
});
