/**
 * The fraud demo's pure parts: the data generator (deterministic, rare fraud, regional shift), the
 * AUC/metrics against hand-computed values, CSV validation, and the demo spec.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CATEGORIES, NUM_FEATURES, featurize, parseCsv, toCsv, FraudDataError, type Transaction } from "../examples/fraud/dataset";
import { generateFraudData, REGIONS } from "../examples/fraud/generate";
import { binaryMetrics, logLoss, rocAuc, weightedMean } from "../examples/fraud/metrics";
import { DEFAULT_EPOCHS_TOTAL } from "../examples/fraud/baselines";
import { FraudModelError, initialWeights, PARAMETERS, readModelFile, writeModelFile } from "../examples/fraud/model";
import { parseTrainerArgs, TrainerUsageError } from "../examples/fraud/trainer";
import { encodeFloats } from "../lib/models/dtypes";
import { fileSink } from "../lib/models/fileBytes";
import { writeSafetensors } from "../lib/models/safetensors";
import { loadSpecFile } from "../lib/spec";

const ROOT = join(__dirname, "..");
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const share = (rows: Transaction[], pred: (r: Transaction) => boolean) => rows.filter(pred).length / rows.length;

describe("fraud data generator", () => {
  const data = generateFraudData({ seed: 42 });
  const all = (silo: string) => [...data[silo].train, ...data[silo].valid];
  const frauds = (silo: string) => all(silo).filter((r) => r.is_fraud === 1);
  const legit = (silo: string) => all(silo).filter((r) => r.is_fraud === 0);

  it("is deterministic from the seed and differs across seeds", () => {
    const again = generateFraudData({ seed: 42 });
    for (const silo of Object.keys(data)) expect(toCsv(again[silo].train)).toBe(toCsv(data[silo].train));
    const other = generateFraudData({ seed: 43 });
    expect(toCsv(other.east.train)).not.toBe(toCsv(data.east.train));
  });

  it("writes three regional silos with different sizes and their own validation splits", () => {
    expect(Object.keys(data)).toEqual(["east", "central", "west"]);
    expect([data.east.train.length, data.central.train.length, data.west.train.length]).toEqual([6000, 4000, 2000]);
    expect([data.east.valid.length, data.central.valid.length, data.west.valid.length]).toEqual([1500, 1000, 750]);
    const small = generateFraudData({ seed: 42, scale: 0.1 });
    expect(small.west.train.length).toBe(200);
  });

  it("makes fraud rare: 1-3% overall, every silo has some", () => {
    const rows = Object.keys(data).flatMap(all);
    const rate = share(rows, (r) => r.is_fraud === 1);
    expect(rate).toBeGreaterThan(0.01);
    expect(rate).toBeLessThan(0.03);
    for (const silo of Object.keys(data)) expect(frauds(silo).length).toBeGreaterThan(30);
  });

  it("shifts everyday spending between regions (amounts, hours, merchant mix)", () => {
    const logAmount = (silo: string) => mean(legit(silo).map((r) => Math.log(r.amount)));
    expect(logAmount("west") - logAmount("central")).toBeGreaterThan(0.5);
    const meanHour = (silo: string) => mean(legit(silo).map((r) => r.hour));
    expect(meanHour("east") - meanHour("central")).toBeGreaterThan(3);
    const fuel = CATEGORIES.indexOf("fuel");
    expect(share(legit("central"), (r) => r.category === fuel)).toBeGreaterThan(2 * share(legit("east"), (r) => r.category === fuel));
  });

  it("gives each region its own dominant fraud scheme", () => {
    const online = CATEGORIES.indexOf("online");
    // east: card-not-present fraud
    expect(share(frauds("east"), (r) => r.card_present === 0)).toBeGreaterThan(0.6);
    expect(share(frauds("central"), (r) => r.card_present === 0)).toBeLessThan(0.3);
    expect(share(frauds("east"), (r) => r.category === online)).toBeGreaterThan(2 * share(frauds("west"), (r) => r.category === online));
    // central: skimmed cards used far from home
    expect(share(frauds("central"), (r) => r.distance_km > 100)).toBeGreaterThan(0.5);
    expect(share(frauds("east"), (r) => r.distance_km > 100)).toBeLessThan(0.2);
    // west: account takeover on new accounts
    expect(share(frauds("west"), (r) => r.account_age_days < 60)).toBeGreaterThan(0.5);
    expect(share(frauds("central"), (r) => r.account_age_days < 60)).toBeLessThan(0.1);
  });

  it("round-trips through CSV and featurizes into the fixed feature space", () => {
    const rows = data.west.valid.slice(0, 50);
    expect(parseCsv(toCsv(rows), "x.csv")).toEqual(rows);
    const f = featurize(rows);
    expect(f.rows).toBe(50);
    expect(f.x.length).toBe(50 * NUM_FEATURES);
    expect(Array.from(f.y)).toEqual(rows.map((r) => r.is_fraud));
    expect(f.x.every(Number.isFinite)).toBe(true);
    // one-hot merchant category: exactly one 1 among the 6 category columns
    for (let i = 0; i < 50; i++) expect(Array.from(f.x.subarray(i * NUM_FEATURES + 3, i * NUM_FEATURES + 9)).reduce((a, b) => a + b, 0)).toBe(1);
  });

  it("rejects malformed CSV naming file, line and column", () => {
    expect(() => parseCsv("amount,hour\n1,2\n", "d/train.csv")).toThrow(
      new FraudDataError(
        'd/train.csv: header lacks column "category" (expected columns amount,hour,category,distance_km,txn_1h,txn_24h,card_present,foreign,account_age_days,amount_ratio,is_fraud, got amount,hour)',
      ),
    );
    const good = toCsv(data.east.train.slice(0, 2));
    const bad = good.replace(/\n([^,\n]*),/, "\nabc,");
    expect(() => parseCsv(bad, "d/train.csv")).toThrow('d/train.csv:2: column "amount" must be a finite number, got "abc"');
    expect(() => parseCsv(good.replace(/,0\n/, ",2\n"), "d/valid.csv")).toThrow('d/valid.csv:2: column "is_fraud" must be 0 or 1, got 2');
    expect(() => parseCsv("", "e.csv")).toThrow("e.csv: empty file");
  });
});

describe("fraud metrics", () => {
  it("computes AUC by ranks with ties averaged (hand-computed values)", () => {
    // positives 0.35, 0.8 vs negatives 0.1, 0.4: pairs won 1, 0, 1, 1 -> 3/4
    expect(rocAuc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBeCloseTo(0.75, 12);
    // positives 0.5, 0.9 vs negatives 0.5, 0.2: 0.5 (tie), 1, 1, 1 -> 3.5/4
    expect(rocAuc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1])).toBeCloseTo(0.875, 12);
    // three-way tie across classes: positive 0.3 vs negatives 0.3, 0.3, 0.1 -> (0.5 + 0.5 + 1) / 3
    expect(rocAuc([0.3, 0.3, 0.3, 0.1], [1, 0, 0, 0])).toBeCloseTo(2 / 3, 12);
    expect(rocAuc([0.2, 0.9], [0, 1])).toBe(1);
    expect(rocAuc([0.2, 0.9], [1, 0])).toBe(0);
    expect(rocAuc([0.4, 0.4, 0.4], [1, 0, 1])).toBe(0.5);
    expect(rocAuc([0.1, 0.7], [0, 0])).toBe(0.5); // one class only: undefined, reported as 0.5
    expect(() => rocAuc([0.1], [0, 1])).toThrow("rocAuc: 1 scores but 2 labels");
  });

  it("matches the pairwise definition on random scores with ties", () => {
    let s = 7;
    const rand = () => (s = (s * 16807) % 2147483647) / 2147483647;
    const scores = Array.from({ length: 300 }, () => Math.round(rand() * 20) / 20);
    const labels = scores.map((x) => (rand() < 0.2 + 0.5 * x ? 1 : 0));
    let won = 0;
    let pairs = 0;
    for (let i = 0; i < scores.length; i++) {
      if (labels[i] !== 1) continue;
      for (let j = 0; j < scores.length; j++) {
        if (labels[j] !== 0) continue;
        pairs++;
        won += scores[i] > scores[j] ? 1 : scores[i] === scores[j] ? 0.5 : 0;
      }
    }
    expect(rocAuc(scores, labels)).toBeCloseTo(won / pairs, 12);
  });

  it("computes log loss, accuracy, precision and recall at the threshold", () => {
    expect(logLoss([0.9, 0.2], [1, 0])).toBeCloseTo(-(Math.log(0.9) + Math.log(0.8)) / 2, 12);
    const m = binaryMetrics([0.9, 0.6, 0.3, 0.2, 0.7], [1, 0, 1, 0, 1]);
    // flagged: 0.9 (tp), 0.6 (fp), 0.7 (tp); missed: 0.3 (fn); 0.2 correct negative
    expect(m.accuracy).toBeCloseTo(3 / 5, 12);
    expect(m.precision).toBeCloseTo(2 / 3, 12);
    expect(m.recall).toBeCloseTo(2 / 3, 12);
    expect(m.auc).toBeCloseTo(5 / 6, 12); // positives .9,.3,.7 vs negatives .6,.2: 1+1, 0+1, 1+1
    expect(binaryMetrics([0.1, 0.2], [1, 0]).precision).toBe(0);
  });

  it("averages metrics weighted by examples", () => {
    expect(
      weightedMean([
        { weight: 3, metrics: { auc: 0.9 } },
        { weight: 1, metrics: { auc: 0.5 } },
      ]).auc,
    ).toBeCloseTo(0.8, 12);
  });
});

describe("fraud demo spec", () => {
  const specFile = join(ROOT, "examples/fraud/federation.yaml");

  it("parses with flo's spec parser and runs the trainer on the three regional silos", async () => {
    expect(readFileSync(specFile, "utf8").split("\n")[0]).toBe("# yaml-language-server: $schema=../../schema/federation.schema.json");
    const spec = await loadSpecFile(specFile);
    expect(spec.name).toBe("fraud-demo");
    expect(spec.silos.map((s) => s.name)).toEqual(REGIONS.map((r) => r.name));
    expect(spec.silos.map((s) => s.inputs.data)).toEqual(REGIONS.map((r) => `examples/fraud/data/${r.name}`));
    expect(spec.training.code).toBe("examples/fraud");
    expect(spec.training.command).toContain("node train.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}} --data ${{inputs.data}}");
    expect(spec.aggregation.strategy).toBe("fedavg");
    expect(spec.policy).toMatchObject({ minSilos: 2, roundTimeout: "PT5M", jobRetries: 1 });
  });

  it("has a poisoned variant where only west passes --poison-scale 100", async () => {
    const spec = await loadSpecFile(join(ROOT, "examples/fraud/federation-poisoned.yaml"));
    expect(spec.aggregation.strategy).toBe("median");
    expect(spec.silos.map((s) => [s.name, s.inputs.poison_scale])).toEqual([
      ["east", undefined],
      ["central", undefined],
      ["west", 100],
    ]);
    expect(spec.training.command).toContain("$[[--poison-scale ${{inputs.poison_scale}}]]");
  });

  it("keeps the baselines' default epochs equal to rounds x epochs", async () => {
    const spec = await loadSpecFile(specFile);
    expect(spec.rounds * Number(spec.training.parameters.epochs)).toBe(DEFAULT_EPOCHS_TOTAL);
  });
});

describe("fraud trainer flags and model files", () => {
  const base = ["--out", "o", "--data", "d", "--epochs", "2", "--round", "3"];

  it("parses the contract's flags with defaults, including negative values", () => {
    expect(parseTrainerArgs(base)).toEqual({ global: undefined, out: "o", data: "d", epochs: 2, round: 3, lr: 0.01, seed: 1, batchSize: 128, posWeight: 10, poisonScale: 1 });
    expect(parseTrainerArgs([...base, "--poison-scale", "-3", "--global", "g"])).toMatchObject({ poisonScale: -3, global: "g" });
    expect(parseTrainerArgs([...base, "--poison-scale=-0.5"]).poisonScale).toBe(-0.5);
  });

  it("names the offending flag", () => {
    expect(() => parseTrainerArgs([...base, "--epochs", "1.5"])).toThrow(new TrainerUsageError('--epochs must be a non-negative integer, got "1.5"'));
    expect(() => parseTrainerArgs([...base, "--round", "0"])).toThrow('--round must be an integer >= 1, got "0"');
    expect(() => parseTrainerArgs([...base, "--learning-rate", "0.1"])).toThrow(TrainerUsageError);
    expect(() => parseTrainerArgs([...base, "--learning-rate", "0.1"])).toThrow("--learning-rate");
    expect(() => parseTrainerArgs(["--data", "d", "--epochs", "1", "--round", "1"])).toThrow("--out <dir> is required");
  });

  describe("model files", () => {
    let dir: string;
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), "flo-fraud-model-"));
    });
    afterAll(() => rmSync(dir, { recursive: true, force: true }));

    it("round-trips weights exactly and rejects missing, extra or non-finite tensors", async () => {
      const w = initialWeights(5);
      const file = join(dir, "ok.safetensors");
      await writeModelFile(file, w);
      const back = await readModelFile(file);
      for (const p of PARAMETERS) expect(Array.from(back[p.name])).toEqual(Array.from(w[p.name]));
      expect(Array.from(w["dense_1.bias"])).toEqual(new Array(16).fill(0));

      const write = (name: string, tensors: { name: string; shape: number[]; values: number[] }[]) =>
        writeSafetensors(
          fileSink(join(dir, name)),
          tensors.map((t) => ({ name: t.name, dtype: "F32" as const, shape: t.shape, data: encodeFloats(t.values, "F32") })),
        );
      const all = PARAMETERS.map((p) => ({ name: p.name, shape: [...p.shape], values: Array.from(w[p.name]) }));

      await write(
        "missing.safetensors",
        all.filter((t) => t.name !== "dense_2.bias"),
      );
      await expect(readModelFile(join(dir, "missing.safetensors"))).rejects.toThrow(new FraudModelError(`${join(dir, "missing.safetensors")}: missing tensor "dense_2.bias" (expected shape [1])`));
      await write("extra.safetensors", [...all, { name: "dense_3.kernel", shape: [1], values: [0] }]);
      await expect(readModelFile(join(dir, "extra.safetensors"))).rejects.toThrow('unexpected tensor(s) "dense_3.kernel"');
      await write(
        "nan.safetensors",
        all.map((t) => (t.name === "dense_2.bias" ? { ...t, values: [NaN] } : t)),
      );
      await expect(readModelFile(join(dir, "nan.safetensors"))).rejects.toThrow('tensor "dense_2.bias" holds a non-finite value (NaN) at index 0');
      await expect(writeModelFile(join(dir, "out.safetensors"), { ...w, "dense_2.bias": new Float32Array([Infinity]) })).rejects.toThrow(FraudModelError);
    });
  });
});
