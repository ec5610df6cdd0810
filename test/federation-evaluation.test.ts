/**
 * Federated evaluation end to end on `flo host`: evaluation jobs (kind `evaluate`) on every silo
 * after the last round and every `every` rounds, run by a Python evaluator that is not flo's
 * (standard library + numpy, test/fixtures/trainers/toy-evaluate.py), the evaluation manifests,
 * best-round selection, the model card, exclusions, a final evaluation without quorum failing the
 * federation and its resume, and a host SIGKILLed during the evaluation.
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ModelStore } from "../lib/models/store";
import type { EvaluationManifest, EvaluationSummary } from "../lib/federation/evaluation";
import type { FederationCheckpoint } from "../lib/federation/manifest";
import type { ModelCard } from "../lib/federation/modelCard";
import { finished, readToyModel, startFloHost, toySpec, TOY_TRAINER_DIR, writeToyData, type FloHost, type ToySilo } from "./helpers/flo";

/** Toy silos plus the evaluation target their held-out data stands for. */
interface EvalSilo extends ToySilo {
  evalTarget?: number[];
}

const EVALUATE = "/usr/bin/python3 toy-evaluate.py --model ${{inputs.global_model}} --data ${{inputs.data}} --out ${{outputs.evaluation}}";

function writeEvalData(dir: string, silos: readonly EvalSilo[]): void {
  writeToyData(dir, silos);
  for (const s of silos) {
    writeFileSync(join(dir, "data", s.name, "target.json"), JSON.stringify({ target: s.target, n: s.n, behavior: s.behavior, ...(s.evalTarget ? { evalTarget: s.evalTarget } : {}) }));
  }
}

function evalSpec(name: string, silos: readonly EvalSilo[], evaluation: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return toySpec(name, silos, { evaluation: { command: EVALUATE, code: TOY_TRAINER_DIR, ...evaluation }, ...extra });
}

const meanSquared = (w: number[], target: number[]) => w.reduce((s, v, i) => s + (v - target[i]) ** 2, 0) / w.length;

let flo: FloHost;
let store: ModelStore;

beforeAll(async () => {
  flo = await startFloHost();
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
});
afterAll(async () => {
  await flo?.stop();
});

async function evaluationManifest(id: string, round: number): Promise<EvaluationManifest> {
  return store.getJson<EvaluationManifest>(`federations/${id}/evaluations/${round}/manifest.json`);
}

async function modelValues(uri: string): Promise<number[]> {
  return readToyModel(await store.getBytes(store.pathFromUri(uri)));
}

/** Each silo's metrics as the evaluator must report them for a model, and their num_examples-weighted means. */
function expectedEvaluation(w: number[], silos: readonly EvalSilo[]): { perSilo: Record<string, { val_loss: number; test_loss: number }>; means: { val_loss: number; test_loss: number } } {
  const perSilo = Object.fromEntries(silos.map((s) => [s.name, { val_loss: meanSquared(w, s.evalTarget ?? s.target), test_loss: meanSquared(w, s.target) }]));
  const total = silos.reduce((a, s) => a + s.n, 0);
  const mean = (key: "val_loss" | "test_loss") => silos.reduce((a, s) => a + s.n * perSilo[s.name][key], 0) / total;
  return { perSilo, means: { val_loss: mean("val_loss"), test_loss: mean("test_loss") } };
}

describe("final evaluation on every silo, with a sampled training", () => {
  const silos: EvalSilo[] = [
    { name: "east", target: [1, 1, 1, 1], n: 100 },
    { name: "west", target: [3, 3, 3, 3], n: 300 },
    { name: "north", target: [2, 0, 2, 0], n: 100, evalTarget: [2, 1, 2, 1] },
  ];
  let status: any;
  beforeAll(async () => {
    writeEvalData(flo.dir, silos);
    // Two of three silos train each round; all three evaluate.
    const spec = evalSpec("evalfinal", silos, {}, { rounds: 2, policy: { minSilos: 2, sampleFraction: 0.6, roundTimeout: "PT1M" } });
    expect((await flo.start(spec)).status).toBe(202);
    status = await flo.waitFor("evalfinal", finished, 90_000);
  }, 120_000);

  test("every silo evaluates the last model; the manifest has each silo's metrics and the weighted means", async () => {
    expect(status.runtimeStatus).toBe("Completed");
    const manifest = await evaluationManifest("evalfinal", 2);
    const lastModel = status.output.lastModel;
    expect(manifest).toMatchObject({ schema: "flo.evaluation-manifest/1", round: 2, final: true, status: "evaluated", minSilos: 2, model: { sha256: lastModel.sha256 } });
    expect(manifest.silos.map((s) => [s.silo, s.included, s.numExamples])).toEqual([
      ["east", true, 100],
      ["west", true, 300],
      ["north", true, 100],
    ]);
    const expected = expectedEvaluation(await modelValues(lastModel.uri), silos);
    for (const entry of manifest.silos) {
      expect(entry.metrics!.val_loss).toBeCloseTo(expected.perSilo[entry.silo].val_loss, 9);
      expect(entry.metrics!.test_loss).toBeCloseTo(expected.perSilo[entry.silo].test_loss, 9);
      expect(entry.attempts[0].jobName).toMatch(new RegExp(`^flo-evalfinal-r2-${entry.silo}_evaluate$`));
    }
    expect(manifest.metrics.val_loss).toBeCloseTo(expected.means.val_loss, 9);
    expect(manifest.metrics.test_loss).toBeCloseTo(expected.means.test_loss, 9);
    expect(manifest.totalExamples).toBe(500);
    // Only the final model: no intermediate evaluation.
    expect(await store.exists("federations/evalfinal/evaluations/1/manifest.json")).toBe(false);
  });

  test("without select the last model is delivered; the output, the API and the model card say so", async () => {
    const output = status.output;
    expect(output.finalModel.sha256).toBe(output.lastModel.sha256);
    expect(output.finalModel.uri).toMatch(/\/federations\/evalfinal\/final\/model\.safetensors$/);
    expect(output.selection).toMatchObject({ round: 2, last: true });
    expect(output.finalEvaluation).toMatchObject({ round: 2, final: true, ok: true, evaluated: 3, failed: 0, modelSha256: output.lastModel.sha256 });
    const api = (await flo.json("federations/evalfinal")).body;
    expect(api.finalEvaluation.metrics.val_loss).toBeCloseTo(output.finalEvaluation.metrics.val_loss, 12);
    expect(api.finalEvaluation.silos.map((s: { silo: string }) => s.silo)).toEqual(["east", "west", "north"]);
    const card = await store.getJson<ModelCard>("federations/evalfinal/final/model-card.json");
    expect(card).toMatchObject({ federationId: "evalfinal", model: { sha256: output.finalModel.sha256 }, rounds: { planned: 2, completed: 2 }, strategy: { name: "fedavg" } });
    const roundManifest = await store.getJson<{ spec: { sha256: string } }>("federations/evalfinal/rounds/2/manifest.json");
    expect(card.spec.sha256).toBe(roundManifest.spec.sha256);
    expect(card.evaluation?.metrics.val_loss).toBeCloseTo(output.finalEvaluation.metrics.val_loss, 12);
    // Two of three silos trained in each round: not sampled is not excluded.
    expect(card.silos.reduce((sum, s) => sum + s.roundsIncluded, 0)).toBe(4);
    expect(card.exclusions).toEqual([]);
    const markdown = (await store.getBytes("federations/evalfinal/final/model-card.md")).toString("utf8");
    expect(markdown).toContain(output.finalModel.sha256);
    expect(markdown).toContain("differential privacy: not used");
    expect(markdown).toContain("secure aggregation: not used");
  });
});

describe("every: 2 over 5 rounds with select", () => {
  // The held-out targets sit between the start and the training targets: the model of round 2 is
  // closer to them than the later (more fitted) ones.
  const silos: EvalSilo[] = [
    { name: "east", target: [1, 1, 1, 1], n: 100, evalTarget: [0.6, 0.6, 0.6, 0.6] },
    { name: "west", target: [3, 3, 3, 3], n: 300, evalTarget: [1.7, 1.7, 1.7, 1.7] },
  ];
  let status: any;
  let checkpoint: FederationCheckpoint;
  beforeAll(async () => {
    writeEvalData(flo.dir, silos);
    const spec = evalSpec("evalevery", silos, { every: 2, select: { metric: "val_loss", mode: "min" } }, { rounds: 5 });
    expect((await flo.start(spec)).status).toBe(202);
    status = await flo.waitFor("evalevery", finished, 120_000);
    checkpoint = await store.getJson<FederationCheckpoint>("federations/evalevery/checkpoint.json");
  }, 150_000);

  test("the outputs of rounds 2 and 4 and the final model are evaluated, nothing else", async () => {
    expect(status.runtimeStatus).toBe("Completed");
    expect((checkpoint.evaluations ?? []).map((e: EvaluationSummary) => [e.round, e.final, e.ok])).toEqual([
      [2, false, true],
      [4, false, true],
      [5, true, true],
    ]);
    for (const round of [1, 3]) expect(await store.exists(`federations/evalevery/evaluations/${round}/manifest.json`)).toBe(false);
    for (const evaluation of checkpoint.evaluations!) {
      const produced = checkpoint.history.find((h) => h.round === evaluation.round)!;
      expect(evaluation.model.sha256).toBe(produced.model.sha256);
      const expected = expectedEvaluation(await modelValues(produced.model.uri), silos);
      expect(evaluation.metrics.val_loss).toBeCloseTo(expected.means.val_loss, 9);
    }
  });

  test("select delivers round 2's model, keeps the last and says why", async () => {
    const losses = checkpoint.evaluations!.map((e) => e.metrics.val_loss);
    expect(losses[0]).toBeLessThan(Math.min(losses[1], losses[2]));
    const round2 = checkpoint.history.find((h) => h.round === 2)!.model;
    const round5 = checkpoint.history.find((h) => h.round === 5)!.model;
    expect(round2.sha256).not.toBe(round5.sha256);
    expect(status.output.selection).toMatchObject({ round: 2, last: false, metric: "val_loss", mode: "min" });
    expect(status.output.selection.value).toBeCloseTo(losses[0], 12);
    expect(status.output.selection.reason).toContain("round 5) is kept as model-last");
    expect(status.output.finalModel.sha256).toBe(round2.sha256);
    expect(status.output.lastModel.sha256).toBe(round5.sha256);
    // The final evaluation is the last model's; the card reports the delivered model's.
    expect(status.output.finalEvaluation.modelSha256).toBe(round5.sha256);
    const card = await store.getJson<ModelCard>("federations/evalevery/final/model-card.json");
    expect(card.selection).toMatchObject({ round: 2, metric: "val_loss" });
    expect(card.evaluation?.round).toBe(2);
    const markdown = (await store.getBytes("federations/evalevery/final/model-card.md")).toString("utf8");
    expect(markdown).toContain("val_loss (selection metric)");
  });
});

describe("a failing evaluation job", () => {
  test("is excluded with its reason and the federation completes", async () => {
    const silos: EvalSilo[] = [
      { name: "east", target: [1, 1, 1, 1], n: 100 },
      { name: "west", target: [3, 3, 3, 3], n: 300 },
      { name: "broken", target: [2, 2, 2, 2], n: 50, behavior: "eval-fail" },
    ];
    writeEvalData(flo.dir, silos);
    const spec = evalSpec("evalexclude", silos, { minSilos: 2 }, { rounds: 1, policy: { minSilos: 3, roundTimeout: "PT1M", jobRetries: 0 } });
    expect((await flo.start(spec)).status).toBe(202);
    const status = await flo.waitFor("evalexclude", finished, 90_000);
    expect(status.runtimeStatus).toBe("Completed");
    const manifest = await evaluationManifest("evalexclude", 1);
    const broken = manifest.silos.find((s) => s.silo === "broken")!;
    expect(broken).toMatchObject({ outcome: "failed", included: false });
    expect(broken.reason).toContain("flo-evalexclude-r1-broken_evaluate failed");
    expect(broken.reason).toContain("toy evaluator: failing on purpose");
    expect(manifest.totalExamples).toBe(400);
    expect(status.output.finalEvaluation).toMatchObject({ ok: true, evaluated: 2, failed: 1 });
    const card = await store.getJson<ModelCard>("federations/evalexclude/final/model-card.json");
    expect(card.exclusions).toEqual([{ round: "final evaluation", silo: "broken", reason: broken.reason }]);
  }, 120_000);
});

describe("a final evaluation without quorum", () => {
  test("fails the federation with the reason; resume re-runs the evaluation and completes", async () => {
    const silos: EvalSilo[] = [
      { name: "east", target: [1, 1, 1, 1], n: 100 },
      { name: "west", target: [3, 3, 3, 3], n: 300, behavior: "eval-fail" },
    ];
    writeEvalData(flo.dir, silos);
    const spec = evalSpec("evalquorum", silos, {}, { rounds: 2, policy: { minSilos: 2, roundTimeout: "PT1M", jobRetries: 0 } });
    expect((await flo.start(spec)).status).toBe(202);
    const failed = await flo.waitFor("evalquorum", finished, 90_000);
    expect(failed.runtimeStatus).toBe("Failed");
    expect(JSON.stringify(failed.failure)).toContain("final evaluation: evaluation quorum not reached: 1 of 2 silos evaluated the model of round 2, evaluation.minSilos is 2");
    const first = await evaluationManifest("evalquorum", 2);
    expect(first.status).toBe("failed");

    // The silo's evaluation works again: resume evaluates the same model, without training again.
    writeEvalData(flo.dir, [silos[0], { ...silos[1], behavior: undefined }]);
    const resumed = await flo.json("federations/evalquorum/resume", { method: "POST" });
    expect(resumed.status).toBe(202);
    expect(resumed.body).toMatchObject({ resumedFromRound: 2, round: 3 });
    const done = await flo.waitFor("evalquorum", (s) => finished(s) && s.output?.federationId === "evalquorum", 90_000);
    expect(done.runtimeStatus).toBe("Completed");
    const second = await evaluationManifest("evalquorum", 2);
    expect(second).toMatchObject({ status: "evaluated", model: { sha256: first.model.sha256 } });
    expect(second.silos.map((s) => [s.silo, s.included])).toEqual([
      ["east", true],
      ["west", true],
    ]);
    // The resumed run's attempts are numbered after the first run's.
    expect(second.silos[0].attempts[0].jobName).toBe("flo-evalquorum-r2-east-a2_evaluate");
    expect(done.output.finalModel.sha256).toBe(first.model.sha256);
    const checkpoint = await store.getJson<FederationCheckpoint>("federations/evalquorum/checkpoint.json");
    expect(checkpoint.history.map((h) => h.round)).toEqual([1, 2]);
  }, 200_000);
});

describe("a host SIGKILLed during the final evaluation", () => {
  test("completes after its restart with the evaluation manifest of an uninterrupted run", async () => {
    const silos: EvalSilo[] = [
      { name: "east", target: [1, 1, 1, 1], n: 100, behavior: "eval-sleep:1500" },
      { name: "west", target: [3, 3, 3, 3], n: 300, behavior: "eval-sleep:1500" },
    ];
    writeEvalData(flo.dir, silos);
    expect((await flo.start(evalSpec("evalsteady", silos, {}, { rounds: 2 }))).status).toBe(202);
    const steady = await flo.waitFor("evalsteady", finished, 90_000);
    expect(steady.runtimeStatus).toBe("Completed");

    expect((await flo.start(evalSpec("evalkilled", silos, {}, { rounds: 2 }))).status).toBe(202);
    await flo.waitFor("evalkilled", (s) => s?.phase === "evaluating" || finished(s), 90_000);
    await flo.kill();
    await flo.restart();
    const killed = await flo.waitFor("evalkilled", finished, 120_000);
    expect(killed.runtimeStatus).toBe("Completed");

    const [a, b] = [await evaluationManifest("evalsteady", 2), await evaluationManifest("evalkilled", 2)];
    const comparable = (m: EvaluationManifest) => ({
      status: m.status,
      model: m.model.sha256,
      metrics: m.metrics,
      totalExamples: m.totalExamples,
      silos: m.silos.map((s) => ({ silo: s.silo, included: s.included, numExamples: s.numExamples, metrics: s.metrics })),
    });
    expect(comparable(b)).toEqual(comparable(a));
    expect(killed.output.finalModel.sha256).toBe(steady.output.finalModel.sha256);
  }, 300_000);
});

describe("cancel during the evaluation", () => {
  test("terminates the evaluation's instances and cancels its running evaluation jobs", async () => {
    const silos: EvalSilo[] = [
      { name: "east", target: [1, 1, 1, 1], n: 100, behavior: "eval-sleep:20000" },
      { name: "west", target: [3, 3, 3, 3], n: 300, behavior: "eval-sleep:20000" },
    ];
    writeEvalData(flo.dir, silos);
    expect((await flo.start(evalSpec("evalcancel", silos, {}, { rounds: 1 }))).status).toBe(202);
    await flo.waitFor("evalcancel", (s) => s?.phase === "evaluating" && s.silos?.length === 2 && s.silos.every((x: { state?: string }) => x.state === "running"), 90_000);
    const canceled = await flo.json("federations/evalcancel/cancel", { method: "POST" });
    expect(canceled.status).toBe(202);
    expect(canceled.body.canceledJobs).toEqual(["flo-evalcancel-r1-east_evaluate", "flo-evalcancel-r1-west_evaluate"]);
    const status = await flo.waitFor("evalcancel", finished, 30_000);
    expect(status.runtimeStatus).toBe("Terminated");
  }, 120_000);
});

afterAll(() => {
  rmSync(join(flo?.dir ?? "/nonexistent", "data"), { recursive: true, force: true });
});
