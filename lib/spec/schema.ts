/**
 * The federation spec's structure, in zod: the single source of the TypeScript input types, the
 * runtime validation of each field, and the JSON Schema editors use (`npm run schema`).
 * Rules that relate several fields (unique names, quorum vs silo count, command placeholders vs
 * defined inputs, secrets) live in checks.ts, as plain functions.
 */
import { CronExpressionParser } from "cron-parser";
import { z } from "zod";
import { ISO_DURATION_PATTERN, parseIsoDuration } from "./duration";
import { acceptsClipping, type StrategyDefinition } from "../aggregation/definition";
import { clippingSchema, dpSchema, type ClippingConfig, type DpConfig } from "../aggregation/privacy/wrappers";
import { strategyDefinitions } from "../aggregation/registry";
import { secretValueReason } from "./secrets";
import { computeSpecSchema } from "../compute/backends";
import { DATA_INPUT_MODES, DATA_INPUT_TYPES } from "../compute/siloCompute";
import { UPLOADED_CODE_URI } from "../compute/azureml/code";
import { RESOURCE_GROUP_NAME, WORKSPACE_NAME } from "../compute/azureml/backend";

/** Field-local rule failure with an explicit expected/got, read back by the issue mapper. */
function fail(ctx: z.core.$RefinementCtx<unknown>, expected: string, got: string, hint?: string): void {
  ctx.addIssue({ code: "custom", message: hint ?? `expected ${expected}`, params: { expected, got, hint } });
}
const quote = (s: string) => JSON.stringify(s.length > 80 ? `${s.slice(0, 77)}...` : s);

export const FEDERATION_NAME = /^[a-z0-9-]{1,40}$/;
/** A partner's name (FLO_PARTNER_ALLOWLIST): its command queue is `partner-<name>` (infra/names.bicep). */
export const PARTNER_NAME = /^[A-Za-z0-9][A-Za-z0-9-]{0,49}$/;
/** Silo names never contain "_" or ":": job names and event names use them as separators. */
export const SILO_NAME = /^[a-z0-9-]{1,32}$/;
/** Azure ML input names are identifiers; the same rule makes `${{inputs.X}}` parseable. */
export const INPUT_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,254}$/;
/** `azureml:<name>:<version>`, `azureml:<name>@latest`, a registry URI, or an ARM id. */
export const ENVIRONMENT_REF = /^(azureml:[A-Za-z0-9_.-]+(:[A-Za-z0-9_.-]+|@latest)|azureml:\/\/registries\/\S+|(azureml:)?\/subscriptions\/\S+)$/;
/** How a pattern is shown in errors when its regex would not help a reader (default: the regex). */
export const PATTERN_DESCRIPTIONS: Record<string, string> = {
  [ENVIRONMENT_REF.source]: "azureml:<name>:<version>, azureml:<name>@latest, azureml://registries/..., or an ARM id /subscriptions/... (optionally azureml:/subscriptions/...)",
  [UPLOADED_CODE_URI.source]: "the URL of a folder `flo submit` uploaded: https://<account>.blob.core.windows.net/<container>/code/<sha256>/",
};
export const MAX_ROUND_TIMEOUT_SECONDS = 30 * 86400;

const literalValue = z.union([z.string(), z.number(), z.boolean()]).meta({ description: "A literal input value; numbers and booleans are passed to the job as text." });
const literalInputs = (description: string) => z.record(z.string().regex(INPUT_NAME), literalValue).default({}).meta({ description });

/**
 * A data input the silo's job reads, as Azure ML YAML writes one. On azureml compute `path` is a
 * datastore URI, a data asset (`azureml:<name>:<version>`, `@latest`, the long form) or an https URL;
 * on local compute it is a local file or folder (relative to the spec's folder).
 */
export const typedInputSchema = z
  .strictObject({
    type: z.enum(DATA_INPUT_TYPES).meta({ description: "Azure ML input type (REST jobInputType)." }),
    path: z.string().min(1).meta({ description: "azureml://datastores/<ds>/paths/<p>, azureml:<data asset>:<version>, https://..., or a local path (local compute)." }),
    mode: z.enum(DATA_INPUT_MODES).default("ro_mount").meta({ description: "ro_mount (default), download or direct (the job gets the URI)." }),
  })
  .meta({ description: "A typed data input mounted or downloaded for the job." });

export const siloSchema = z.strictObject({
  name: z.string().regex(SILO_NAME).meta({ description: "Unique silo name, part of job names and blob paths." }),
  compute: computeSpecSchema,
  inputs: z
    .record(z.string().regex(INPUT_NAME), z.union([literalValue, typedInputSchema]))
    .default({})
    .meta({ description: "Silo-specific inputs: literals, or typed data inputs {type, path, mode}." }),
  maxExamples: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER).optional().meta({
    description:
      "Most examples this silo can have: an update claiming more num_examples is excluded (its weight would be a lie). Required with secure aggregation (the silo clamps its weight to it; it sizes the ring).",
  }),
  publicKey: z
    .string()
    .optional()
    .meta({ description: "The silo's X25519 public key for secure aggregation (base64 of 32 bytes, the last line `flo silo keygen` prints). Required with aggregation.secureAggregation." }),
});

export const trainingSchema = z.strictObject({
  command: z.string().min(1).meta({ description: "Job command with Azure ML placeholders ${{inputs.X}}, ${{outputs.model_update}}, optional parts $[[ ... ]]." }),
  code: z.string().min(1).optional().meta({ description: "Folder uploaded as the job's code (azureml) / working directory (local), or a registered Azure ML code asset." }),
  uploadedCode: z.string().regex(UPLOADED_CODE_URI).optional().meta({
    description: "Set by `flo submit`: URL of the `code` folder uploaded to the orchestrator's store (<container>/code/<sha256>/). Azure ML silos run it; local silos keep running `code`.",
  }),
  environment: z.string().regex(ENVIRONMENT_REF).optional().meta({ description: "Azure ML environment, e.g. azureml:flo-node:1; required when any silo uses azureml compute." }),
  parameters: literalInputs("Literal inputs, the same for every silo."),
});

/**
 * The optional `evaluation` section: one evaluation job per silo (every silo, not a round's sample)
 * on the model the last round produced, and on the output of every `every`-th round.
 */
export const evaluationSchema = z
  .strictObject({
    command: z
      .string()
      .min(1)
      .meta({ description: "Evaluation command with placeholders ${{inputs.global_model}} (the evaluated model), ${{inputs.X}}, ${{outputs.evaluation}} (metrics.json goes there)." }),
    code: z.string().min(1).optional().meta({ description: "Folder uploaded as the job's code (azureml) / working directory (local), like training.code." }),
    environment: z.string().regex(ENVIRONMENT_REF).optional().meta({ description: "Azure ML environment; required when any silo uses azureml compute." }),
    parameters: literalInputs("Literal inputs of the evaluation job, the same for every silo."),
    every: z.number().int().min(0).max(10000).default(0).meta({ description: "Also evaluate the output of rounds k, 2k, ... (0: only the final model)." }),
    minSilos: z.number().int().min(1).optional().meta({ description: "Silos whose evaluation must succeed (default: policy.minSilos); a final evaluation below it fails the federation." }),
    select: z
      .strictObject({
        metric: z.string().min(1).max(128).meta({ description: "A metric name of the evaluator's metrics.json (its num_examples-weighted mean decides)." }),
        mode: z.enum(["max", "min"]).meta({ description: "max: higher is better (auc, accuracy); min: lower is better (loss)." }),
      })
      .optional()
      .meta({ description: "Deliver the best evaluated model by this metric instead of the last one (the last is kept as model-last)." }),
  })
  .meta({ description: "Federated evaluation of the models the federation produces, on every silo's held-out data." });

/** Azure ML model names: letters, digits, '-', '_' and '.', starting with a letter or digit. */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

/** The optional `registration` section: the delivered model becomes a model version in the owner's workspace. */
export const registrationSchema = z
  .strictObject({
    workspace: z.strictObject({
      subscriptionId: z.guid().meta({ description: "Azure subscription id (GUID) of the federation owner's workspace." }),
      resourceGroup: z.string().regex(RESOURCE_GROUP_NAME).meta({ description: "Resource group of the owner's workspace." }),
      workspace: z.string().regex(WORKSPACE_NAME).meta({ description: "The owner's Azure ML workspace (never a silo's)." }),
    }),
    name: z.string().regex(MODEL_NAME).meta({ description: "Model name; each federation registers one custom_model version of it." }),
  })
  .meta({ description: "Registers the delivered model in the federation owner's Azure ML workspace." });

/** Applies to every rule (the engine caps the weights it hands any strategy), so it is not a strategy option. */
export const maxWeightShareSchema = z.number().gt(0).max(1).optional().meta({
  description:
    "Largest normalized weight any one update may get in a round (0 < x <= 1); the excess goes to the others in proportion to their num_examples. Below 1/m for m updates, all weigh the same.",
});

/**
 * Secure aggregation: the orchestrator learns only the sum of the silos' clipped, weighted updates.
 * Offered with every strategy so that checks.ts can refuse the ones that need individual updates
 * with the reason (from the definition's capabilities) instead of an "unknown key".
 */
export const secureAggregationSchema = z
  .strictObject({
    threshold: z
      .number()
      .int()
      .optional()
      .meta({ description: "Shamir threshold t: at least t silos must survive a round for anything to be unmasked. Default ceil(2K/3) of the K silos sampled per round; 2 <= t <= policy.minSilos." }),
    bits: z
      .number()
      .int()
      .min(2)
      .max(32)
      .default(16)
      .meta({ description: "Quantization bits b of one example's coordinate (error per coordinate of the mean < n (1 + 1/32) C / ((2^(b-1) - 1) sum of weights))." }),
    rounding: z.enum(["stochastic", "nearest"]).default("stochastic").meta({ description: "How silos round quantized coordinates: stochastic (unbiased, default) or nearest." }),
    publishSiloMetrics: z
      .boolean()
      .default(false)
      .meta({ description: "Publish each silo's metrics (other than counts) in the manifests; off by default: per-silo metrics say something about one silo's data." }),
  })
  .meta({
    description:
      "Secure aggregation (pairwise masking with self masks): flo sees only the sum of the clipped, weighted updates. Needs clipping {mode: fixed}, silos[].publicKey, silos[].maxExamples and a key input per compute.",
  });

export type SecureAggregationConfig = z.output<typeof secureAggregationSchema>;

/**
 * The `aggregation` section: a union over the strategy REGISTRY's definitions (each one's options
 * schema plus the clipping/dp wrappers it accepts), rebuilt when a strategy is registered, so that a
 * name added with `registerStrategy` is checked at parse time like a built-in one.
 */
let aggregationUnionCache: { definitions: readonly StrategyDefinition[]; union: z.ZodType } | undefined;

export function aggregationUnion(): z.ZodType {
  const definitions = strategyDefinitions();
  const cached = aggregationUnionCache;
  if (cached && cached.definitions.length === definitions.length && cached.definitions.every((d, i) => d === definitions[i])) return cached.union;
  const options = definitions.map((definition) =>
    z
      .strictObject({
        strategy: z.literal(definition.name),
        ...(definition.options.shape as z.ZodRawShape),
        ...(acceptsClipping(definition) ? { clipping: clippingSchema.optional() } : {}),
        dp: dpSchema.optional(),
        maxWeightShare: maxWeightShareSchema,
        secureAggregation: secureAggregationSchema.optional(),
      })
      .meta({ description: definition.summary }),
  );
  const union = z.discriminatedUnion("strategy", options as unknown as [z.ZodObject, ...z.ZodObject[]]);
  aggregationUnionCache = { definitions, union };
  return union;
}

/** Schemas whose shape is only known at parse time, with the getter of that shape (parse.ts follows it for "did you mean"). */
export const DYNAMIC_SCHEMAS = new WeakMap<object, () => z.ZodType>();

export const aggregationSchema = z.unknown().transform((value, ctx) => {
  const result = aggregationUnion().safeParse(value, { reportInput: true });
  if (result.success) return result.data as AggregationSection;
  for (const issue of result.error.issues) ctx.addIssue({ ...issue });
  return z.NEVER;
});
DYNAMIC_SCHEMAS.set(aggregationSchema, aggregationUnion);

/** A parsed `aggregation` section: the strategy name, its options with defaults, the wrappers. */
export interface AggregationSection {
  strategy: string;
  maxWeightShare?: number;
  clipping?: ClippingConfig;
  dp?: DpConfig;
  secureAggregation?: SecureAggregationConfig;
  [option: string]: unknown;
}

export const roundTimeoutSchema = z
  .string()
  .superRefine((text, ctx) => {
    let seconds: number;
    try {
      seconds = parseIsoDuration(text);
    } catch (error) {
      const yearsOrMonths = /years and months/.test((error as Error).message);
      fail(ctx, "an ISO-8601 duration such as PT30M or P1DT2H", quote(text), yearsOrMonths ? "years and months have no fixed length: use days" : undefined);
      return;
    }
    if (seconds <= 0) fail(ctx, "a duration > 0", quote(text));
    else if (seconds > MAX_ROUND_TIMEOUT_SECONDS) fail(ctx, "a duration <= P30D", quote(text));
  })
  // The JSON Schema keeps the syntax; the runtime rule above also checks the range.
  .meta({ pattern: ISO_DURATION_PATTERN.source });

export const policySchema = z
  .strictObject({
    minSilos: z.number().int().min(1).optional().meta({ description: "Successful silos needed to aggregate a round. Default: every sampled silo." }),
    roundTimeout: roundTimeoutSchema.default("PT1H").meta({ description: "ISO-8601 deadline of each round, e.g. PT30M." }),
    jobRetries: z.number().int().min(0).max(10).default(1).meta({ description: "Resubmissions of a failed silo job within a round." }),
    sampleFraction: z.number().gt(0).max(1).default(1).meta({ description: "Fraction of silos sampled each round (ceil(fraction * silos))." }),
  })
  .prefault({});

/**
 * Checks the syntax the Functions timer trigger accepts: {second} {minute} {hour} {day} {month}
 * {day-of-week}. Returns what was expected when the expression is not valid, undefined when it is.
 */
export function checkNcrontab(expression: string): string | undefined {
  const fields = expression.trim().split(/\s+/);
  if (fields.length !== 6) return `six fields {second} {minute} {hour} {day} {month} {day-of-week}, found ${fields.length}`;
  const withoutNames = expression.replace(/\b(JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC|SUN|MON|TUE|WED|THU|FRI|SAT)\b/gi, "0");
  if (/[?LW#@]/i.test(withoutNames)) return "only numbers, names, * , - / (NCRONTAB has no ? L W # or @macros)";
  try {
    CronExpressionParser.parse(expression);
  } catch (error) {
    return `a valid six-field NCRONTAB (${(error as Error).message})`;
  }
  return undefined;
}

export const scheduleSchema = z
  .string()
  .superRefine((text, ctx) => {
    const problem = checkNcrontab(text);
    if (problem) fail(ctx, `six-field NCRONTAB "{second} {minute} {hour} {day} {month} {day-of-week}"`, quote(text), problem);
  })
  .meta({ description: 'Six-field NCRONTAB for scheduled retraining, e.g. "0 0 2 * * 0" (Sundays 02:00).' });

/** Where an initial model may come from; a SAS token or other credential in the URI is rejected in checks.ts. */
export function checkModelLocation(text: string): string | undefined {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(text)?.[1]?.toLowerCase();
  if (scheme && !["https", "http", "azureml"].includes(scheme)) return `scheme ${scheme}:// is not supported`;
  if (scheme === "http" && !/^http:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?\//i.test(text)) {
    return "plain http is only allowed on loopback (Azurite)";
  }
  const path = text.split(/[?#]/)[0];
  if (!path.endsWith(".safetensors")) {
    if (/\.(pt|pth|bin|pkl|pickle|ckpt)$/i.test(path)) return "pickled checkpoints are not loaded (they can execute code); convert to safetensors";
    return "the location must name a .safetensors file";
  }
  return undefined;
}

export const initialModelSchema = z
  .string()
  .min(1)
  .superRefine((text, ctx) => {
    if (text.length === 0) return; // reported by min(1)
    const secret = secretValueReason(text);
    if (secret) {
      fail(ctx, "a location without credentials (flo reads models with its managed identity)", `${secret} (value not shown)`);
      return;
    }
    const problem = checkModelLocation(text);
    if (problem) fail(ctx, "a path, https://, azureml:// or loopback http:// location of a .safetensors file", quote(text), problem);
  })
  .nullable()
  .optional()
  .meta({ description: "Round 1's global model: a path or URI of a model.safetensors. Null/absent: trainers initialize." });

export const federationSpecSchema = z
  .strictObject({
    $schema: z.string().optional().meta({ description: "Editor hint; ignored by flo." }),
    name: z.string().regex(FEDERATION_NAME).meta({ description: "Federation name, [a-z0-9-]{1,40}; part of every id." }),
    description: z.string().max(2000).optional(),
    rounds: z.number().int().min(1).max(10000).meta({ description: "Number of rounds, numbered 1..rounds." }),
    initialModel: initialModelSchema,
    silos: z.array(siloSchema).min(1).max(10000),
    training: trainingSchema,
    evaluation: evaluationSchema.optional(),
    aggregation: aggregationSchema.prefault({ strategy: "fedavg" }),
    policy: policySchema,
    registration: registrationSchema.optional(),
    schedule: scheduleSchema.optional(),
    owners: z
      .array(z.string().regex(PARTNER_NAME))
      .max(100)
      .optional()
      .meta({ description: "Partners (FLO_PARTNER_ALLOWLIST names) that may cancel this spec's federations besides the partner that started one." }),
  })
  .meta({ title: "flo federation spec", description: "A federated-learning run: silos, training job, aggregation, policy." });

/** The spec as written (defaults not yet applied). */
export type FederationSpecInput = z.input<typeof federationSpecSchema>;
/** The spec after schema parsing (field defaults applied; policy.minSilos may still be absent). */
export type ParsedFederationSpec = z.output<typeof federationSpecSchema>;
