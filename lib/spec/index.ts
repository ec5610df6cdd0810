/** Federation spec: schema, parsing, validation, command templates and ids. See docs/spec.md. */
export { parseSpec, validateSpec, loadSpecFile, MAX_SPEC_BYTES, type ParseSpecOptions } from "./parse";
export { SpecError, type SpecIssue, type SpecErrorKind, formatPath } from "./errors";
export type {
  FederationSpec,
  SiloSpec,
  ComputeSpec,
  LocalComputeSpec,
  AzureMLComputeSpec,
  TrainingSpec,
  EvaluationSpec,
  RegistrationSpec,
  AggregationSpec,
  ClippingSpec,
  DpSpec,
  PolicySpec,
  LiteralValue,
  StrategyName,
} from "./types";
export { federationSpecSchema, checkNcrontab, type FederationSpecInput } from "./schema";
export { silosPerRound } from "./checks";
export { parseIsoDuration, DurationError } from "./duration";
export {
  renderCommand,
  commandInputNames,
  commandOutputNames,
  parseCommandTemplate,
  federationInstanceId,
  CommandTemplateError,
  RUN_SUFFIX,
  ALWAYS_PROVIDED_INPUTS,
  BUILTIN_INPUTS,
  GLOBAL_MODEL_INPUT,
  MODEL_UPDATE_OUTPUT,
  type RenderValues,
  type CommandTemplate,
} from "./command";
export { siloDataInputs, siloJobInputs, type SiloJobInputsOptions } from "./inputs";
export { federationJsonSchema } from "./jsonSchema";
