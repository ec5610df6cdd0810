/**
 * The model card of a federation's delivered model, built from the manifests only (the spec as
 * stored, the round manifests, the checkpoint's history and evaluations): never written by hand,
 * so it cannot claim what the run did not record. `model-card.json` is the card, `model-card.md`
 * its rendering.
 */
import type { FederationSpec } from "../spec";
import type { EvaluationSummary } from "./evaluation";
import type { RoundManifest } from "./manifest";
import type { ModelRef, ModelSelection, RoundSummary } from "./types";

export const MODEL_CARD_JSON = "model-card.json";
export const MODEL_CARD_MARKDOWN = "model-card.md";
export const MODEL_CARD_SCHEMA = "flo.model-card/1";

export interface ModelCard {
  schema: typeof MODEL_CARD_SCHEMA;
  federationId: string;
  name: string;
  description?: string;
  model: ModelRef;
  spec: { uri: string; sha256: string; digest: string };
  rounds: { planned: number; completed: number };
  selection: ModelSelection;
  /** Each silo and the examples it reported in the last round it was aggregated in. */
  silos: { silo: string; numExamples?: number; roundsIncluded: number }[];
  strategy: { name: string; options: unknown };
  /** Central differential privacy spent up to the delivered model's round, when the spec used it. */
  differentialPrivacy?: { epsilon: number; delta: number; rounds: number };
  /** The spec's aggregation.secureAggregation block, when it has one. */
  secureAggregation?: unknown;
  /** The delivered model's evaluation on every silo, when the spec has an evaluation section. */
  evaluation?: { round: number; metrics: Record<string, number>; totalExamples: number; perSilo: string; manifestUri: string };
  /** Silos left out of a round's aggregate or of the final evaluation, with the reason. */
  exclusions: { round: number | "final evaluation"; silo: string; reason: string }[];
}

export interface ModelCardSources {
  federationId: string;
  spec: FederationSpec;
  specRef: ModelRef;
  history: readonly RoundSummary[];
  /** The manifest of the round whose output is delivered, and of the last round. */
  deliveredManifest: RoundManifest;
  lastManifest: RoundManifest;
  /** The delivered model (its copy in the final folder). */
  model: ModelRef;
  selection: ModelSelection;
  /** The evaluation of the delivered model, when there was one. */
  evaluation?: EvaluationSummary;
  /** The spec's aggregation.secureAggregation block, when the spec has one. */
  secureAggregation?: unknown;
  excludedFromEvaluation: readonly { silo: string; reason: string }[];
}

/** A short, stable digest of the spec's content: the first 12 hex of its sha256. */
function specDigest(sha256: string): string {
  return sha256.slice(0, 12);
}

interface PrivacyReport {
  epsilon?: unknown;
  delta?: unknown;
  rounds?: unknown;
}

export function buildModelCard(sources: ModelCardSources): ModelCard {
  const { spec, history, deliveredManifest } = sources;
  const silos = spec.silos.map(({ name }) => {
    const included = history.filter((h) => h.included.includes(name));
    // The latest aggregated round of this silo that the delivered model's manifest chain knows of.
    const lastEntry = [deliveredManifest, sources.lastManifest].flatMap((m) => m.silos).find((s) => s.silo === name && s.included);
    return { silo: name, ...(lastEntry?.numExamples !== undefined ? { numExamples: lastEntry.numExamples } : {}), roundsIncluded: included.length };
  });
  const privacy = (deliveredManifest.strategy.report as { privacy?: PrivacyReport } | undefined)?.privacy;
  const differentialPrivacy =
    privacy && typeof privacy.epsilon === "number" && typeof privacy.delta === "number"
      ? { epsilon: privacy.epsilon, delta: privacy.delta, rounds: typeof privacy.rounds === "number" ? privacy.rounds : deliveredManifest.round }
      : undefined;
  const evaluation = sources.evaluation;
  return {
    schema: MODEL_CARD_SCHEMA,
    federationId: sources.federationId,
    name: spec.name,
    ...(spec.description ? { description: spec.description } : {}),
    model: sources.model,
    spec: { uri: sources.specRef.uri, sha256: sources.specRef.sha256, digest: specDigest(sources.specRef.sha256) },
    rounds: { planned: spec.rounds, completed: history.length },
    selection: sources.selection,
    silos,
    strategy: { name: deliveredManifest.strategy.name, options: deliveredManifest.strategy.options },
    ...(differentialPrivacy ? { differentialPrivacy } : {}),
    ...(sources.secureAggregation !== undefined ? { secureAggregation: sources.secureAggregation } : {}),
    ...(evaluation
      ? {
          evaluation: {
            round: evaluation.round,
            metrics: evaluation.metrics,
            totalExamples: evaluation.totalExamples,
            perSilo: `${evaluation.included.length} silo(s) evaluated: ${evaluation.included.join(", ")}`,
            manifestUri: evaluation.manifestUri,
          },
        }
      : {}),
    exclusions: [
      ...history.flatMap((h) => h.excluded.map((e) => ({ round: h.round, silo: e.silo, reason: e.reason }))),
      ...sources.excludedFromEvaluation.map((e) => ({ round: "final evaluation" as const, silo: e.silo, reason: e.reason })),
    ],
  };
}

const number = (value: number) => (Number.isInteger(value) ? String(value) : value.toPrecision(4));

/** The card as Markdown (every figure comes from the card's JSON). */
export function modelCardMarkdown(card: ModelCard): string {
  const lines = [
    `# Model card: ${card.name} (federation ${card.federationId})`,
    "",
    ...(card.description ? [card.description, ""] : []),
    `Generated by flo from the federation's manifests (spec sha256 ${card.spec.sha256}).`,
    "",
    "## Model",
    "",
    `- file: model.safetensors, sha256 \`${card.model.sha256}\`${card.model.size !== undefined ? `, ${card.model.size} bytes` : ""}`,
    `- delivered: round ${card.selection.round}'s model${card.selection.last ? " (the last round)" : ""}: ${card.selection.reason}`,
    `- rounds: ${card.rounds.completed} of ${card.rounds.planned}`,
    `- strategy: ${card.strategy.name} ${JSON.stringify(card.strategy.options)}`,
    `- differential privacy: ${card.differentialPrivacy ? `epsilon ${number(card.differentialPrivacy.epsilon)}, delta ${card.differentialPrivacy.delta} after ${card.differentialPrivacy.rounds} round(s)` : "not used"}`,
    `- secure aggregation: ${card.secureAggregation !== undefined ? JSON.stringify(card.secureAggregation) : "not used"}`,
    `- spec: ${card.spec.uri} (digest ${card.spec.digest})`,
    "",
    "## Silos",
    "",
    "| silo | examples (last aggregated round) | rounds included |",
    "|---|---|---|",
    ...card.silos.map((s) => `| ${s.silo} | ${s.numExamples ?? "-"} | ${s.roundsIncluded} |`),
    "",
    "## Evaluation",
    "",
  ];
  if (card.evaluation) {
    lines.push(`Evaluated on every silo's held-out data (round ${card.evaluation.round}'s model, ${card.evaluation.totalExamples} examples; ${card.evaluation.perSilo}).`, "");
    lines.push("| metric | num_examples-weighted mean |", "|---|---|");
    for (const [name, value] of Object.entries(card.evaluation.metrics)) lines.push(`| ${name}${name === card.selection.metric ? " (selection metric)" : ""} | ${value.toFixed(4)} |`);
    if (card.selection.metric) lines.push("", `${card.selection.metric} chose the delivered model, so it is biased upward; judge the model on the other held-out metrics.`);
  } else {
    lines.push("The spec has no evaluation section: the delivered model was not evaluated.");
  }
  lines.push("", "## Exclusions", "");
  if (card.exclusions.length === 0) lines.push("None: every sampled silo contributed to every round and to the final evaluation.");
  for (const e of card.exclusions) lines.push(`- ${typeof e.round === "number" ? `round ${e.round}` : e.round}: ${e.silo}: ${e.reason}`);
  return lines.join("\n") + "\n";
}
