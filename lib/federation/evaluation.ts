/**
 * Federated evaluation: the evaluation manifest of one model (every silo's metrics of it, their
 * num_examples-weighted means, the failures with their reasons), the choice of the delivered model
 * (`evaluation.select`), and the activities that record both. Each evaluation is also summarized in
 * the checkpoint blob, the one place `flo run`, the API and the model card read them from.
 */
import type { EvaluationOutput } from "../compute/siloCompute";
import { evaluationManifestPath, finalFilePath, MODEL_FILE, roundManifestPath } from "../models/storeLayout";
import type { EvaluationSpec, FederationSpec } from "../spec";
import { checkpointPath, readCheckpoint } from "./lifecycle";
import { weightedMeans, type FederationCheckpoint, type RoundManifest } from "./manifest";
import { buildModelCard, MODEL_CARD_JSON, MODEL_CARD_MARKDOWN, modelCardMarkdown } from "./modelCard";
import { MAX_DIGEST_METRICS } from "./payloads";
import type { FederationServices } from "./services";
import type { EvaluationDigest, FinalizeInput, FinalizeOutput, JobAttempt, ModelRef, ModelSelection, RecordEvaluationInput, SiloRoundResult } from "./types";
import type { SiloOutcomeKind } from "./decisions";

export const EVALUATION_MANIFEST_SCHEMA = "flo.evaluation-manifest/1";

export interface EvaluationSiloEntry {
  silo: string;
  outcome: SiloOutcomeKind;
  attempts: JobAttempt[];
  /** Whether the silo's metrics count in the means. */
  included: boolean;
  /** Why they do not (job failed or late, metrics.json invalid). */
  reason?: string;
  /** The job's output folder. */
  output?: string;
  numExamples?: number;
  metrics?: Record<string, number>;
}

/** Everything one evaluation of one model decided; written next to the silos' metrics.json files. */
export interface EvaluationManifest {
  schema: typeof EVALUATION_MANIFEST_SCHEMA;
  federationId: string;
  /** The round whose output was evaluated. */
  round: number;
  final: boolean;
  status: "evaluated" | "failed";
  reason?: string;
  spec: ModelRef;
  /** The evaluated model, pinned by its digest. */
  model: ModelRef;
  minSilos: number;
  silos: EvaluationSiloEntry[];
  /** num_examples-weighted means over the included silos. */
  metrics: Record<string, number>;
  totalExamples: number;
  timings: { startedAt: string; recordedAt: string };
}

/** An evaluation as the checkpoint keeps it (the manifest has the attempts and per-silo metrics). */
export interface EvaluationSummary {
  round: number;
  final: boolean;
  ok: boolean;
  reason?: string;
  model: ModelRef;
  manifestUri: string;
  metrics: Record<string, number>;
  totalExamples: number;
  included: string[];
  excluded: { silo: string; reason: string }[];
}

async function openEvaluation(services: FederationServices, spec: FederationSpec, result: SiloRoundResult): Promise<{ output?: EvaluationOutput; reason?: string }> {
  const silo = spec.silos.find((s) => s.name === result.silo);
  if (!silo) return { reason: `federation ${spec.name} has no silo ${JSON.stringify(result.silo)}` };
  try {
    const output = await services.computeFor(silo).openOutput(result.outputUri!, { kind: "evaluate" });
    if (output.kind !== "evaluate") return { reason: `expected an evaluation output at ${result.outputUri}, got a ${output.kind} output` };
    return { output };
  } catch (err) {
    return { reason: `cannot open the evaluation at ${result.outputUri}: ${(err as Error).message}` };
  }
}

/** One manifest entry per silo: its evaluation, or why it has none. */
async function evaluationEntries(services: FederationServices, spec: FederationSpec, results: SiloRoundResult[]): Promise<EvaluationSiloEntry[]> {
  return Promise.all(
    results.map(async (result): Promise<EvaluationSiloEntry> => {
      const base = { silo: result.silo, outcome: result.outcome, attempts: result.attempts };
      if (result.outcome !== "succeeded" || !result.outputUri) return { ...base, included: false, reason: result.reason ?? result.outcome };
      const opened = await openEvaluation(services, spec, result);
      if (!opened.output) return { ...base, included: false, output: result.outputUri, reason: opened.reason };
      const { numExamples, metrics } = opened.output.metrics;
      return { ...base, included: true, output: result.outputUri, numExamples, metrics };
    }),
  );
}

/** The first metric means by name, so the digest stays small whatever an evaluator reports. */
function firstMetrics(metrics: Record<string, number>, keep?: string): Record<string, number> {
  const names = Object.keys(metrics).sort((a, b) => a.localeCompare(b));
  const chosen = new Set(names.slice(0, MAX_DIGEST_METRICS));
  if (keep !== undefined && keep in metrics) chosen.add(keep);
  return Object.fromEntries(names.filter((n) => chosen.has(n)).map((n) => [n, metrics[n]]));
}

export function evaluationDigest(summary: EvaluationSummary, selectMetric?: string): EvaluationDigest {
  return {
    round: summary.round,
    final: summary.final,
    ok: summary.ok,
    ...(summary.reason ? { reason: summary.reason } : {}),
    modelSha256: summary.model.sha256,
    manifestUri: summary.manifestUri,
    evaluated: summary.included.length,
    failed: summary.excluded.length,
    metrics: firstMetrics(summary.metrics, selectMetric),
  };
}

/**
 * Records one evaluation of one model: opens every silo's metrics.json, writes the evaluation
 * manifest, and adds its summary to the checkpoint (replacing an earlier evaluation of the same
 * round, e.g. the one a resumed federation re-runs).
 */
export async function recordEvaluation(services: FederationServices, input: RecordEvaluationInput): Promise<EvaluationDigest> {
  const spec = await services.loadSpec(input.spec);
  const silos = await evaluationEntries(services, spec, input.results);
  const included = silos.filter((s) => s.included);
  const metrics = weightedMeans(included.map((s) => ({ numExamples: s.numExamples ?? 0, values: s.metrics })));
  const ok = included.length >= input.minSilos;
  const failures = silos.filter((s) => !s.included).map((s) => `${s.silo} (${s.reason ?? s.outcome})`);
  const reason = ok
    ? undefined
    : `evaluation quorum not reached: ${included.length} of ${silos.length} silos evaluated the model of round ${input.round}, evaluation.minSilos is ${input.minSilos}${failures.length ? `; failed: ${failures.join("; ")}` : ""}`;
  const manifest: EvaluationManifest = {
    schema: EVALUATION_MANIFEST_SCHEMA,
    federationId: input.federationId,
    round: input.round,
    final: input.final,
    status: ok ? "evaluated" : "failed",
    ...(reason ? { reason } : {}),
    spec: input.spec,
    model: input.model,
    minSilos: input.minSilos,
    silos,
    metrics,
    totalExamples: included.reduce((sum, s) => sum + (s.numExamples ?? 0), 0),
    timings: { startedAt: input.startedAt, recordedAt: new Date().toISOString() },
  };
  const written = await services.store.putJson(evaluationManifestPath(input.federationId, input.round), manifest);
  const summary: EvaluationSummary = {
    round: input.round,
    final: input.final,
    ok,
    ...(reason ? { reason } : {}),
    model: input.model,
    manifestUri: written.uri,
    metrics,
    totalExamples: manifest.totalExamples,
    included: included.map((s) => s.silo),
    excluded: silos.filter((s) => !s.included).map((s) => ({ silo: s.silo, reason: s.reason ?? s.outcome })),
  };
  const checkpoint = await readCheckpoint(services, input.federationId);
  if (checkpoint) {
    const evaluations = [...(checkpoint.evaluations ?? []).filter((e) => e.round !== input.round), summary].sort((a, b) => a.round - b.round);
    await services.store.putJson(checkpointPath(input.federationId), { ...checkpoint, evaluations } satisfies FederationCheckpoint);
  }
  return evaluationDigest(summary, spec.evaluation?.select?.metric);
}

/**
 * The model the federation delivers. Without `select`, the last round's. With it, the evaluated
 * model whose weighted mean of the metric is best; ties go to the later round (the last model
 * unless strictly beaten). Only evaluations that reached their quorum count.
 */
export function selectModel(args: { evaluations: readonly EvaluationSummary[]; select?: EvaluationSpec["select"]; last: { round: number; model: ModelRef } }): ModelSelection & { model: ModelRef } {
  const { evaluations, select, last } = args;
  const lastChoice = (reason: string) => ({ round: last.round, last: true, model: last.model, reason });
  if (!select) return lastChoice("the last round's model (no evaluation.select)");
  const candidates = evaluations.filter((e) => e.ok && e.round <= last.round && typeof e.metrics[select.metric] === "number");
  if (candidates.length === 0) return lastChoice(`no evaluation that reached its quorum reported ${select.metric}: the last round's model is delivered`);
  const better = (a: number, b: number) => (select.mode === "max" ? a >= b : a <= b);
  const best = [...candidates].sort((a, b) => a.round - b.round).reduce((chosen, e) => (better(e.metrics[select.metric], chosen.metrics[select.metric]) ? e : chosen));
  const value = best.metrics[select.metric];
  const compared = candidates.map((e) => `round ${e.round} ${e.metrics[select.metric].toFixed(4)}`).join(", ");
  const isLast = best.round === last.round;
  const reason =
    `best ${select.mode === "max" ? "highest" : "lowest"} weighted ${select.metric} among the evaluated models (${compared}): round ${best.round}'s model` +
    (isLast ? ", the last round's" : `; the last round's model (round ${last.round}) is kept as model-last`);
  return { round: best.round, last: isLast, model: best.model, metric: select.metric, mode: select.mode, value, reason };
}

/** Streams one blob into another (bounded memory, whatever the model's size) and returns the copy. */
async function copyModel(services: FederationServices, from: ModelRef, toPath: string): Promise<ModelRef> {
  const store = services.store;
  const sink = store.sink(toPath);
  for await (const chunk of store.readChunks(store.pathFromUri(from.uri))) await sink.write(chunk);
  const written = await sink.commit();
  if (written.sha256 !== from.sha256) throw new Error(`copy of ${from.uri} to ${toPath}: sha256 ${written.sha256}, expected ${from.sha256} (the model changed since it was recorded)`);
  return { uri: written.uri, sha256: written.sha256, size: written.size };
}

/**
 * After the last round (and its evaluation): chooses the delivered model, copies it to the
 * federation's final folder and writes the model card beside it, from the manifests only.
 */
export async function finalizeFederation(services: FederationServices, input: FinalizeInput): Promise<FinalizeOutput> {
  const spec = await services.loadSpec(input.spec);
  const checkpoint = await readCheckpoint(services, input.federationId);
  if (!checkpoint) throw new Error(`federation ${input.federationId} has no checkpoint to finalize`);
  const evaluations = checkpoint.evaluations ?? [];
  const selection = selectModel({ evaluations, select: spec.evaluation?.select, last: { round: input.lastRound, model: input.lastModel } });
  const { model: selected, ...choice } = selection;
  const finalModel = await copyModel(services, selected, finalFilePath(input.federationId, MODEL_FILE));
  const store = services.store;
  const roundManifest = await store.getJson<RoundManifest>(roundManifestPath(input.federationId, choice.round));
  const lastManifest = choice.round === input.lastRound ? roundManifest : await store.getJson<RoundManifest>(roundManifestPath(input.federationId, input.lastRound));
  const finalEvaluation = evaluations.find((e) => e.round === input.lastRound && e.final);
  const delivered = evaluations.find((e) => e.round === choice.round);
  const card = buildModelCard({
    federationId: input.federationId,
    spec,
    specRef: input.spec,
    history: checkpoint.history,
    deliveredManifest: roundManifest,
    lastManifest,
    model: finalModel,
    selection: choice,
    evaluation: delivered,
    secureAggregation: (spec.aggregation as { secureAggregation?: unknown }).secureAggregation,
    excludedFromEvaluation: finalEvaluation?.excluded ?? [],
  });
  await store.putJson(finalFilePath(input.federationId, MODEL_CARD_JSON), card);
  const markdown = await store.putBytes(finalFilePath(input.federationId, MODEL_CARD_MARKDOWN), Buffer.from(modelCardMarkdown(card)), { contentType: "text/markdown; charset=utf-8" });
  return {
    finalModel,
    lastModel: input.lastModel,
    selection: choice,
    modelCardUri: markdown.uri,
    ...(finalEvaluation ? { finalEvaluation: evaluationDigest(finalEvaluation, spec.evaluation?.select?.metric) } : {}),
  };
}
