/**
 * The fraud trainer on flo's silo job contract, end to end: spawns `node train.js` (the compiled
 * trainer in dist/, built by `npm test`) on small generated data the way the local runtime does
 * (working directory examples/fraud), and the baselines command the demo's prestart runs.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { featurize, readCsvFile } from "../examples/fraud/dataset";
import { generateFraudData, writeFraudData } from "../examples/fraud/generate";
import { binaryMetrics } from "../examples/fraud/metrics";
import { PARAMETERS, predict, readModelFile } from "../examples/fraud/model";
import { fileSink, fileSource } from "../lib/models/fileBytes";
import { readSafetensorsHeader, writeSafetensors } from "../lib/models/safetensors";
import { encodeFloats } from "../lib/models/dtypes";
import { reportSeries } from "../lib/report/html";

const ROOT = join(__dirname, "..");
const CODE_DIR = join(ROOT, "examples/fraud");
const COMPILED = [join(ROOT, "dist/examples/fraud/train.js"), join(ROOT, "dist/examples/fraud/baselines.js")];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(script: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
  });
}

const trainer = (args: string[]) => run("train.js", args, CODE_DIR);

let work: string;
let data: string;

beforeAll(() => {
  const missing = COMPILED.filter((f) => !existsSync(f));
  if (missing.length) throw new Error(`fraud trainer tests need the compiled demo (${missing.join(", ")}): run "npm run build" first (npm test does)`);
  work = mkdtempSync(join(tmpdir(), "flo-fraud-"));
  data = join(work, "data");
  writeFraudData(data, generateFraudData({ seed: 7, scale: 0.2 }));
});

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const common = (silo: string, round: number) => ["--data", join(data, silo), "--epochs", "1", "--round", String(round), "--lr", "0.01"];

async function readTensors(file: string): Promise<Record<string, number[]>> {
  const weights = await readModelFile(file);
  return Object.fromEntries(Object.entries(weights).map(([k, v]) => [k, Array.from(v)]));
}

describe("fraud trainer (silo job contract)", () => {
  let round1: string;
  let round2: string;

  it("round 1 without a global model: seeded init, writes F32 safetensors and metrics.json", async () => {
    round1 = join(work, "r1");
    const r = await trainer([...common("east", 1), "--out", round1]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^fraud trainer: round 1, 1200 rows, 1 epoch\(s\): trained auc=/);
    const source = fileSource(join(round1, "model.safetensors"));
    const header = await readSafetensorsHeader(source);
    await source.close!();
    expect(header.tensors.map((t) => [t.name, t.dtype, t.shape])).toEqual([...PARAMETERS].sort((a, b) => (a.name < b.name ? -1 : 1)).map((p) => [p.name, "F32", [...p.shape]]));
    const metrics = JSON.parse(readFileSync(join(round1, "metrics.json"), "utf8"));
    expect(metrics.num_examples).toBe(1200);
    expect(Object.keys(metrics.metrics).sort()).toEqual(["accuracy", "auc", "loss", "precision", "recall"]);
    expect(metrics.global_metrics).toBeUndefined();
    // the reported metrics are the written model's, on the validation split
    const valid = featurize(readCsvFile(join(data, "east", "valid.csv")));
    const own = binaryMetrics(await predict(await readModelFile(join(round1, "model.safetensors")), valid), valid.y);
    expect(metrics.metrics.auc).toBeCloseTo(own.auc, 9);
    expect(metrics.metrics.loss).toBeCloseTo(own.loss, 6);
    expect(own.auc).toBeGreaterThan(0.6); // one epoch already learns something
  });

  it("is byte-identical when rerun with the same inputs", async () => {
    const again = join(work, "r1-again");
    expect((await trainer([...common("east", 1), "--out", again])).code).toBe(0);
    expect(readFileSync(join(again, "model.safetensors")).equals(readFileSync(join(round1, "model.safetensors")))).toBe(true);
  });

  it("round 2 with --global evaluates the received model first (global_metrics), then trains from it", async () => {
    round2 = join(work, "r2");
    const r = await trainer(["--global", round1, ...common("central", 2), "--out", round2]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const metrics = JSON.parse(readFileSync(join(round2, "metrics.json"), "utf8"));
    expect(metrics.num_examples).toBe(800);
    const valid = featurize(readCsvFile(join(data, "central", "valid.csv")));
    const globalOnCentral = binaryMetrics(await predict(await readModelFile(join(round1, "model.safetensors")), valid), valid.y);
    expect(metrics.global_metrics.auc).toBeCloseTo(globalOnCentral.auc, 9);
    expect(metrics.global_metrics.accuracy).toBeCloseTo(globalOnCentral.accuracy, 9);
    const g = await readTensors(join(round1, "model.safetensors"));
    const t = await readTensors(join(round2, "model.safetensors"));
    expect(t["dense_1.kernel"]).not.toEqual(g["dense_1.kernel"]);
  });

  it("--poison-scale K sends exactly global + K x (trained - global)", async () => {
    const poisoned = join(work, "r2-poisoned");
    const r = await trainer(["--global", round1, ...common("central", 2), "--out", poisoned, "--poison-scale", "100"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("POISONED x100");
    const g = await readTensors(join(round1, "model.safetensors"));
    const t = await readTensors(join(round2, "model.safetensors"));
    const p = await readTensors(join(poisoned, "model.safetensors"));
    for (const { name } of PARAMETERS) {
      expect(p[name]).toEqual(t[name].map((v, i) => Math.fround(g[name][i] + 100 * (v - g[name][i]))));
    }
    // metrics describe the honest local training; the scaled weights are what gets sent
    expect(JSON.parse(readFileSync(join(poisoned, "metrics.json"), "utf8"))).toEqual(JSON.parse(readFileSync(join(round2, "metrics.json"), "utf8")));
  });

  it("--poison-scale without a global model scales the trained weights", async () => {
    const poisoned = join(work, "r1-poisoned");
    expect((await trainer([...common("east", 1), "--out", poisoned, "--poison-scale", "-3"])).code).toBe(0);
    const t = await readTensors(join(round1, "model.safetensors"));
    const p = await readTensors(join(poisoned, "model.safetensors"));
    for (const { name } of PARAMETERS) expect(p[name]).toEqual(t[name].map((v) => Math.fround(-3 * v)));
  });

  it("rejects a global model with wrong shapes with a clear error and writes nothing", async () => {
    const bad = join(work, "bad-global");
    rmSync(bad, { recursive: true, force: true });
    mkdirSync(bad);
    await writeSafetensors(
      fileSink(join(bad, "model.safetensors")),
      PARAMETERS.map((p) => {
        const shape = p.name === "dense_1.kernel" ? [3, 16] : [...p.shape];
        return { name: p.name, dtype: "F32" as const, shape, data: encodeFloats(new Float32Array(shape.reduce((a, b) => a * b, 1)), "F32") };
      }),
    );
    const out = join(work, "r-bad");
    const r = await trainer(["--global", bad, ...common("west", 2), "--out", out]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe(`fraud trainer: ${join(bad, "model.safetensors")}: tensor "dense_1.kernel" has shape [3,16], expected [16,16]`);
    expect(existsSync(join(out, "model.safetensors"))).toBe(false);
  });

  it("names the flag or file on bad usage", async () => {
    const noRound = await trainer(["--data", join(data, "west"), "--epochs", "1", "--out", join(work, "x")]);
    expect(noRound.code).toBe(2);
    expect(noRound.stderr).toContain("fraud trainer: --round is required (an integer >= 1)");
    const badLr = await trainer([...common("west", 1), "--out", join(work, "x"), "--lr", "fast"]);
    expect(badLr.stderr).toContain('--lr must be a positive number, got "fast"');
    const noData = await trainer(["--data", join(work, "nowhere"), "--epochs", "1", "--round", "1", "--out", join(work, "x")]);
    expect(noData.code).toBe(2);
    expect(noData.stderr).toContain(`${join(work, "nowhere", "train.csv")}: cannot read the data file (ENOENT)`);
  });
});

describe("fraud baselines", () => {
  it("writes the JSON the report reads: centralized and per-silo local-only metrics over every silo's test split, weighted by test rows", async () => {
    const out = join(work, "baselines.json");
    const r = await run(join(ROOT, "dist/examples/fraud/baselines.js"), ["--data", data, "--out", out, "--epochs-total", "2"], ROOT);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const b = JSON.parse(readFileSync(out, "utf8"));
    expect(Object.keys(b)).toEqual(["metric", "description", "centralized", "localOnly", "bySilo"]);
    expect(b.metric).toBe("auc");
    expect(b.description).toContain("2 epochs");
    expect(Object.keys(b.localOnly)).toEqual(["central", "east", "west"]);
    for (const m of [b.centralized, ...Object.values(b.localOnly)] as Record<string, number>[]) {
      expect(Object.keys(m).sort()).toEqual(["accuracy", "auc", "loss", "precision", "recall"]);
      expect(m.auc).toBeGreaterThanOrEqual(0);
      expect(m.auc).toBeLessThanOrEqual(1);
    }
    // On 150-row test splits a region's own model can rank another region's frauds worse than chance; the pooled one cannot.
    expect(b.centralized.auc).toBeGreaterThan(0.5);
    // non-IID data: pooling beats what a single region's model achieves across all regions
    const localMean = Object.values<{ auc: number }>(b.localOnly).reduce((s, m) => s + m.auc, 0) / 3;
    expect(b.centralized.auc).toBeGreaterThan(localMean);
    // The weighted mean is over the same rows and weights as the federated evaluation: each silo's test split, by its rows.
    const testRows = Object.fromEntries(
      ["central", "east", "west"].map((silo) => [
        silo,
        readFileSync(join(data, silo, "test.csv"), "utf8")
          .trim()
          .split("\n").length - 1,
      ]),
    );
    const total = Object.values(testRows).reduce((a, n) => a + n, 0);
    const weighted = Object.entries(testRows).reduce((a, [silo, n]) => a + n * b.bySilo.centralized[silo].auc, 0) / total;
    expect(b.centralized.auc).toBeCloseTo(weighted, 12);
    expect(Object.keys(b.bySilo.localOnly)).toEqual(["central", "east", "west"]);
    const series = reportSeries({ federationId: "f", runtimeStatus: "Completed", manifests: [], baselines: b });
    expect(series.global.map((s) => s.label)).toEqual(expect.arrayContaining(["centralized baseline (auc)", "local-only baseline (mean over silos, auc)"]));
  });
});
