/**
 * Federated evaluation, the pure parts: the spec's evaluation and registration sections (defaults,
 * field-path errors), which round outputs are evaluated, the choice of the delivered model, the
 * model card, the model version's record, and the report's final-model comparison.
 */
import { SpecError, validateSpec, type SpecIssue } from "../lib/spec";
import { selectModel, type EvaluationManifest, type EvaluationSummary } from "../lib/federation/evaluation";
import { buildModelCard, modelCardMarkdown } from "../lib/federation/modelCard";
import { modelVersionRecord } from "../lib/federation/registration";
import { evaluationDue, siloGroupInstanceId, siloInstanceId } from "../lib/federation/decisions";
import { floJobName, jobEventName, parseFloJobName } from "../lib/compute/siloCompute";
import { finalModelComparison } from "../lib/report/html";
import type { RoundManifest } from "../lib/federation/manifest";
import type { FederationStatus, ModelRef } from "../lib/federation/types";
import { durablePayloadBytes, fitCustomStatus, MAX_CUSTOM_STATUS_BYTES } from "../lib/federation/payloads";

function spec(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    name: "evalspec",
    rounds: 4,
    silos: ["a", "b", "c"].map((name) => ({ name, compute: { type: "local" }, inputs: { data: `data/${name}` } })),
    training: { command: "node t.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}} --data ${{inputs.data}}" },
    policy: { minSilos: 2, roundTimeout: "PT5M" },
    ...extra,
  };
}

function issuesOf(value: unknown): [string, string, string][] {
  try {
    validateSpec(value);
  } catch (err) {
    if (err instanceof SpecError) return err.issues.map((i: SpecIssue) => [i.path, i.expected, i.got]);
    throw err;
  }
  return [];
}

const EVALUATE = "python3 eval.py --model ${{inputs.global_model}} --data ${{inputs.data}} --out ${{outputs.evaluation}}";

describe("the evaluation and registration sections", () => {
  test("defaults: every 0, the quorum of policy.minSilos, no select", () => {
    const parsed = validateSpec(spec({ evaluation: { command: EVALUATE } }));
    expect(parsed.evaluation).toEqual({ command: EVALUATE, parameters: {}, every: 0, minSilos: 2 });
    expect(validateSpec(spec()).evaluation).toBeUndefined();
  });

  test.each([
    [
      "an output other than evaluation",
      { command: "python3 eval.py --out ${{outputs.model_update}} --o ${{outputs.evaluation}}" },
      ["evaluation.command", "${{outputs.evaluation}} (the only output of an evaluation job)", "${{outputs.model_update}}"],
    ],
    ["no output", { command: "python3 eval.py --model ${{inputs.global_model}}" }, ["evaluation.command", "a reference to ${{outputs.evaluation}} (where the job writes metrics.json)", "none"]],
    [
      "an undefined input",
      { command: `${EVALUATE} --k \${{inputs.k}}` },
      ["evaluation.command", expect.stringContaining('input "k" defined in evaluation.parameters'), "${{inputs.k}}, defined nowhere"],
    ],
    ["a quorum above the silos", { command: EVALUATE, minSilos: 4 }, ["evaluation.minSilos", "<= 3 (the number of silos; every silo evaluates)", "4"]],
    ["a negative every", { command: EVALUATE, every: -1 }, ["evaluation.every", expect.stringContaining(">= 0"), "-1"]],
    ["an unknown select mode", { command: EVALUATE, select: { metric: "auc", mode: "best" } }, ["evaluation.select.mode", "one of max|min", '"best"']],
    ["an unknown field", { command: EVALUATE, evry: 2 }, [expect.stringMatching(/^evaluation/), expect.any(String), expect.stringContaining("evry")]],
  ])("%s is refused with its field path", (_name, evaluation, expected) => {
    expect(issuesOf(spec({ evaluation }))).toEqual([expected]);
  });

  test("with an azureml silo, the evaluation's code must be a registered asset or a URI: flo submit uploads only training.code", () => {
    const azureml = { type: "azureml", subscriptionId: "00000000-0000-4000-8000-0000000000aa", resourceGroup: "rg-a", workspace: "mlw-a", computeName: "cpu", exchangeDatastore: "flo_exchange" };
    const mixed = (code: string) => {
      const base = spec();
      const silos = base.silos as Record<string, unknown>[];
      return spec({
        silos: [{ ...silos[0], compute: azureml }, ...silos.slice(1)],
        training: { ...(base.training as object), code: "azureml:flo-train:1", environment: "azureml:flo-env:1" },
        evaluation: { command: EVALUATE, code, environment: "azureml:flo-env:1" },
      });
    };
    expect(issuesOf(mixed("examples/fraud"))).toEqual([
      ["evaluation.code", "a registered Azure ML code asset (azureml:<name>:<version>) or a URI (silos[0] uses azureml compute, and flo submit uploads only training.code)", '"examples/fraud"'],
    ]);
    expect(issuesOf(mixed("azureml:flo-eval:2"))).toEqual([]);
    expect(issuesOf(spec({ evaluation: { command: EVALUATE, code: "examples/fraud" } }))).toEqual([]);
  });

  test("registration needs the owner's workspace coordinates and a model name", () => {
    const workspace = { subscriptionId: "00000000-0000-4000-8000-0000000000aa", resourceGroup: "rg-owner", workspace: "mlw-owner" };
    expect(validateSpec(spec({ registration: { workspace, name: "fraud.model-1" } })).registration).toEqual({ workspace, name: "fraud.model-1" });
    const issues = issuesOf(spec({ registration: { workspace: { ...workspace, subscriptionId: "nope" }, name: "-bad" } }));
    expect(issues.map(([path]) => path)).toEqual(["registration.workspace.subscriptionId", "registration.name"]);
  });
});

describe("job kinds", () => {
  test("evaluation jobs, events and instances are told apart from training by their kind", () => {
    expect(floJobName({ federationId: "f", round: 5, silo: "east", kind: "evaluate", attempt: 2 })).toBe("flo-f-r5-east-a2_evaluate");
    expect(parseFloJobName("flo-f-r5-east-a2_evaluate")).toEqual({ federationId: "f", round: 5, silo: "east", attempt: 2, kind: "evaluate" });
    expect(jobEventName({ round: 5, silo: "east", kind: "evaluate" })).toBe("silo-evaluated:5:east");
    expect(siloInstanceId("f", 5, "east", "evaluate")).toBe("f:r5:east:evaluate");
    expect(siloGroupInstanceId("f", 5, 0, "evaluate")).toBe("f:r5:group.0:evaluate");
    expect(siloInstanceId("f", 5, "east")).toBe("f:r5:east");
  });

  test("which round outputs are evaluated: every k-th and the last", () => {
    const due = (every: number, rounds: number) => Array.from({ length: rounds }, (_, i) => i + 1).filter((r) => evaluationDue({ rounds, evaluation: { every } }, r));
    expect(due(2, 5)).toEqual([2, 4, 5]);
    expect(due(0, 5)).toEqual([5]);
    expect(due(1, 3)).toEqual([1, 2, 3]);
    expect(evaluationDue({ rounds: 5 }, 5)).toBe(false);
  });
});

const model = (round: number): ModelRef => ({ uri: `https://a.blob.core.windows.net/flo/federations/f/rounds/${round + 1}/global/model.safetensors`, sha256: String(round).repeat(64).slice(0, 64) });
const summary = (round: number, metrics: Record<string, number>, ok = true): EvaluationSummary => ({
  round,
  final: round === 5,
  ok,
  model: model(round),
  manifestUri: `m${round}`,
  metrics,
  totalExamples: 10,
  included: ["a"],
  excluded: [],
});

test("the custom status stays under 16 KB whatever metric names an evaluator reports", () => {
  const longNames = Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`${"m".repeat(3000)}${i}`, i]));
  const status: FederationStatus = {
    round: 5,
    rounds: 5,
    phase: "evaluating",
    roundStartedAt: "2026-01-01T00:00:00Z",
    counts: { sampled: 3 },
    recent: [],
    links: {},
    evaluation: { round: 5, final: true, ok: true, modelSha256: "a".repeat(64), manifestUri: "m", evaluated: 3, failed: 0, metrics: longNames },
  };
  expect(durablePayloadBytes(status)).toBeGreaterThan(MAX_CUSTOM_STATUS_BYTES);
  const fitted = fitCustomStatus(status);
  expect(durablePayloadBytes(fitted)).toBeLessThanOrEqual(MAX_CUSTOM_STATUS_BYTES);
  expect(fitted.evaluation).toEqual({ ...status.evaluation, metrics: {} });
});

describe("selectModel", () => {
  const last = { round: 5, model: model(5) };
  test("max picks the best weighted mean; a failed evaluation does not count; the last is kept", () => {
    const evaluations = [summary(2, { auc: 0.91 }), summary(3, { auc: 0.99 }, false), summary(4, { auc: 0.93 }), summary(5, { auc: 0.92 })];
    const chosen = selectModel({ evaluations, select: { metric: "auc", mode: "max" }, last });
    expect(chosen).toMatchObject({ round: 4, last: false, metric: "auc", mode: "max", value: 0.93, model: model(4) });
    expect(chosen.reason).toBe(
      "best highest weighted auc among the evaluated models (round 2 0.9100, round 4 0.9300, round 5 0.9200): round 4's model; the last round's model (round 5) is kept as model-last",
    );
  });
  test("min picks the lowest; a tie goes to the later round", () => {
    const evaluations = [summary(2, { loss: 0.3 }), summary(4, { loss: 0.2 }), summary(5, { loss: 0.2 })];
    expect(selectModel({ evaluations, select: { metric: "loss", mode: "min" }, last })).toMatchObject({ round: 5, last: true, value: 0.2 });
  });
  test("without select, or without the metric, the last model", () => {
    expect(selectModel({ evaluations: [summary(2, { auc: 0.99 })], last })).toMatchObject({ round: 5, last: true, reason: "the last round's model (no evaluation.select)" });
    expect(selectModel({ evaluations: [summary(2, { auc: 0.99 })], select: { metric: "f1", mode: "max" }, last })).toMatchObject({ round: 5, last: true, model: model(5) });
  });
});

describe("the model card and the model version", () => {
  const parsed = validateSpec(spec({ evaluation: { command: EVALUATE, select: { metric: "val_auc", mode: "max" } } }));
  const roundManifest = (round: number, privacy?: unknown): RoundManifest => ({
    schema: "flo.round-manifest/1",
    federationId: "f",
    round,
    status: "aggregated",
    spec: { uri: "spec", sha256: "ab".repeat(32) },
    sampled: ["a", "b", "c"],
    silos: [
      { silo: "a", outcome: "succeeded", attempts: [], included: true, numExamples: 100 },
      { silo: "b", outcome: "succeeded", attempts: [], included: true, numExamples: 300 },
      { silo: "c", outcome: "failed", attempts: [], included: false, reason: "job failed" },
    ],
    strategy: { name: "fedavg", options: {}, ...(privacy ? { report: { privacy } } : {}) },
    metrics: {},
    globalMetrics: {},
    totalExamples: 400,
    timings: { roundStartedAt: "t" },
  });
  const history = [1, 2].map((round) => ({
    round,
    model: model(round),
    manifestUri: `r${round}`,
    included: ["a", "b"],
    excluded: [{ silo: "c", reason: "job failed" }],
    metrics: {},
    globalMetrics: {},
    startedAt: "t",
    aggregatedAt: "t",
  }));

  test("is written from the manifests: silos and counts, DP spent, secure aggregation, evaluation, exclusions", () => {
    const card = buildModelCard({
      federationId: "f",
      spec: parsed,
      specRef: { uri: "spec", sha256: "ab".repeat(32) },
      history,
      deliveredManifest: roundManifest(2, { epsilon: 1.2375, delta: 1e-5, rounds: 2 }),
      lastManifest: roundManifest(2),
      model: model(2),
      selection: { round: 2, last: true, metric: "val_auc", mode: "max", value: 0.9, reason: "best" },
      evaluation: summary(2, { auc: 0.88, val_auc: 0.9 }),
      secureAggregation: { threshold: 2 },
      excludedFromEvaluation: [{ silo: "c", reason: "evaluation job failed" }],
    });
    expect(card.silos).toEqual([
      { silo: "a", numExamples: 100, roundsIncluded: 2 },
      { silo: "b", numExamples: 300, roundsIncluded: 2 },
      { silo: "c", roundsIncluded: 0 },
    ]);
    expect(card.differentialPrivacy).toEqual({ epsilon: 1.2375, delta: 1e-5, rounds: 2 });
    expect(card.spec.digest).toBe("abababababab");
    expect(card.exclusions).toEqual([
      { round: 1, silo: "c", reason: "job failed" },
      { round: 2, silo: "c", reason: "job failed" },
      { round: "final evaluation", silo: "c", reason: "evaluation job failed" },
    ]);
    const markdown = modelCardMarkdown(card);
    expect(markdown).toContain("differential privacy: epsilon 1.238, delta 0.00001 after 2 round(s)");
    expect(markdown).toContain('secure aggregation: {"threshold":2}');
    expect(markdown).toContain("| val_auc (selection metric) | 0.9000 |");
    expect(markdown).toContain("- round 2: c: job failed");
  });

  test("the model version carries the federation, round and sha256 as tags and the final metrics as properties", () => {
    const record = modelVersionRecord({
      federationId: "f",
      spec: { uri: "spec", sha256: "cd".repeat(32) },
      model: model(4),
      selection: { round: 4, last: false, metric: "val_auc", mode: "max", value: 0.9, reason: "best of 2, 4, 5" },
      finalEvaluation: { round: 5, final: true, ok: true, modelSha256: model(5).sha256, manifestUri: "m", evaluated: 3, failed: 0, metrics: { auc: 0.91 } },
    });
    expect(record.tags).toEqual({ floFederation: "f", floRound: "4", floModelSha256: model(4).sha256, floSpecSha256: "cd".repeat(32) });
    expect(record.properties).toEqual({ "floEvaluation.auc": "0.91", floSelectionMetric: "val_auc" });
  });
});

describe("the report's final model", () => {
  test("per silo and weighted, beside the baselines on the same rows with the same weights", () => {
    const evaluation: EvaluationManifest = {
      schema: "flo.evaluation-manifest/1",
      federationId: "f",
      round: 3,
      final: true,
      status: "evaluated",
      spec: { uri: "s", sha256: "s" },
      model: model(3),
      minSilos: 1,
      silos: [
        { silo: "a", outcome: "succeeded", attempts: [], included: true, numExamples: 100, metrics: { auc: 0.8 } },
        { silo: "b", outcome: "succeeded", attempts: [], included: true, numExamples: 300, metrics: { auc: 0.9 } },
      ],
      metrics: { auc: 0.875 },
      totalExamples: 400,
      timings: { startedAt: "t", recordedAt: "t" },
    };
    const table = finalModelComparison({
      federationId: "f",
      runtimeStatus: "Completed",
      manifests: [],
      evaluations: [evaluation],
      baselines: { metric: "auc", bySilo: { centralized: { a: { auc: 0.7 }, b: { auc: 0.95 } }, localOnly: { a: { auc: 0.6 }, b: { auc: 0.99 } } } },
    });
    expect(table?.rows).toEqual([
      { silo: "a", numExamples: 100, federated: 0.8, centralized: 0.7, localOnly: 0.6 },
      { silo: "b", numExamples: 300, federated: 0.9, centralized: 0.95, localOnly: 0.99 },
      { silo: "weighted mean", numExamples: 400, federated: 0.875, centralized: (100 * 0.7 + 300 * 0.95) / 400, localOnly: (100 * 0.6 + 300 * 0.99) / 400 },
    ]);
  });
});
