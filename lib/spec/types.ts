/** The validated federation spec, as the rest of flo consumes it (see docs/spec.md). */
import type { AggregationSection, ParsedFederationSpec } from "./schema";

/** A name in the strategy registry (lib/aggregation/registry.ts). */
export type StrategyName = string;
export type LiteralValue = string | number | boolean;
export type SiloSpec = ParsedFederationSpec["silos"][number];
export type ComputeSpec = SiloSpec["compute"];
export type LocalComputeSpec = Extract<ComputeSpec, { type: "local" }>;
export type AzureMLComputeSpec = Extract<ComputeSpec, { type: "azureml" }>;
export type TrainingSpec = ParsedFederationSpec["training"];
/** The evaluation section with its quorum resolved (policy.minSilos when not written). */
export type EvaluationSpec = NonNullable<ParsedFederationSpec["evaluation"]> & { minSilos: number };
export type RegistrationSpec = NonNullable<ParsedFederationSpec["registration"]>;
/** The strategy name, its options with their defaults applied, and the wrappers. */
export type AggregationSpec = AggregationSection;
export type ClippingSpec = NonNullable<AggregationSpec["clipping"]>;
export type DpSpec = NonNullable<AggregationSpec["dp"]>;

export interface PolicySpec {
  /** Successful silos a round needs to aggregate; defaults to `silosPerRound` (every sampled silo). */
  minSilos: number;
  /** As written, e.g. "PT30M". */
  roundTimeout: string;
  /** `roundTimeout` in seconds. */
  roundTimeoutSeconds: number;
  /** Resubmissions of a failed job within a round (attempts = jobRetries + 1). */
  jobRetries: number;
  sampleFraction: number;
  /** Silos sampled each round: max(1, ceil(sampleFraction x silos)). Derived, not written in specs. */
  silosPerRound: number;
}

export interface FederationSpec {
  name: string;
  description?: string;
  rounds: number;
  /** null when round 1 starts without a global model. */
  initialModel: string | null;
  silos: SiloSpec[];
  training: TrainingSpec;
  /** Absent: the federation evaluates nothing after training. */
  evaluation?: EvaluationSpec;
  aggregation: AggregationSpec;
  policy: PolicySpec;
  /** Absent: the delivered model is not registered in Azure ML. */
  registration?: RegistrationSpec;
  schedule?: string;
  /** Partners that may cancel this spec's federations, besides the one that started a federation. */
  owners?: string[];
}
