/**
 * Rules that relate several fields of a spec. They read the raw document defensively (a field of
 * the wrong type is simply skipped: the schema reports it), so that one run reports structural and
 * cross-field problems together.
 */
import { BUILTIN_INPUTS, CommandTemplateError, GLOBAL_MODEL_INPUT, MODEL_UPDATE_OUTPUT, parseCommandTemplate, renderCommand } from "./command";
import { formatPath, SpecIssue, specIssue } from "./errors";
import { acceptsDp } from "../aggregation/definition";
import { findStrategy, strategyDefinitions } from "../aggregation/registry";
import { SecAggError } from "../secagg/errors";
import { parsePublicKey } from "../secagg/keys";
import { defaultThreshold } from "../secagg/session";
import { secretInCommandReason, secretKeyReason, secretValueReason } from "./secrets";
import { isCodeReference } from "../compute/azureml/code";

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === "object" && v !== null && !Array.isArray(v);
const obj = (v: unknown): Obj => (isObj(v) ? v : {});
const isCount = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/** Silos sampled per round: at least one, and `ceil` so a fraction never rounds a silo away. */
export function silosPerRound(siloCount: number, sampleFraction: number): number {
  // The epsilon keeps float noise (0.3 x 10 = 3.0000000000000004) from adding a silo.
  return Math.min(siloCount, Math.max(1, Math.ceil(sampleFraction * siloCount - 1e-9)));
}

/** The quorum a spec effectively asks for: `policy.minSilos`, else every sampled silo. */
export function effectiveMinSilos(minSilos: number | undefined, perRound: number): number {
  return minSilos ?? perRound;
}

const NO_SECRETS = "no secrets in a spec (silos read their own secrets inside their boundary; flo uses managed identity)";

export function crossFieldIssues(raw: unknown): SpecIssue[] {
  if (!isObj(raw)) return [];
  const issues: SpecIssue[] = [];
  const silos = Array.isArray(raw.silos) ? raw.silos.map(obj) : [];
  const training = obj(raw.training);
  const parameters = obj(training.parameters);
  const policy = obj(raw.policy);

  // Unique silo names.
  const firstIndex = new Map<string, number>();
  silos.forEach((silo, i) => {
    if (typeof silo.name !== "string") return;
    const first = firstIndex.get(silo.name);
    if (first === undefined) firstIndex.set(silo.name, i);
    else issues.push(specIssue(`silos[${i}].name`, "a name no other silo uses", `${JSON.stringify(silo.name)} (already silos[${first}].name)`));
  });

  // Input names: not built-ins, not both a parameter and a silo input, nothing secret.
  const checkInputs = (record: Obj, path: (string | number)[], isSilo: boolean) => {
    for (const [key, value] of Object.entries(record)) {
      const at = formatPath([...path, key]);
      if (key === "__proto__") {
        // Object spreading would silently drop it (or worse, set a prototype): refuse it by name.
        issues.push(specIssue(at, "an input name other than __proto__", JSON.stringify(key)));
      } else if (BUILTIN_INPUTS.includes(key)) {
        issues.push(specIssue(at, `a name other than the inputs flo provides (${BUILTIN_INPUTS.join(", ")})`, JSON.stringify(key)));
      } else if (isSilo && Object.prototype.hasOwnProperty.call(parameters, key)) {
        issues.push(specIssue(at, "a name not already in training.parameters (parameters are the same for every silo)", JSON.stringify(key)));
      }
      const keyReason = secretKeyReason(key);
      if (keyReason) issues.push(specIssue(at, NO_SECRETS, `a field named like a secret: ${keyReason}`));
      else if (typeof value === "string" || typeof obj(value).path === "string") {
        const valueReason = secretValueReason(typeof value === "string" ? value : (obj(value).path as string));
        if (valueReason) issues.push(specIssue(at, NO_SECRETS, `${valueReason} (value not shown)`));
      }
    }
  };
  checkInputs(parameters, ["training", "parameters"], false);
  silos.forEach((silo, i) => checkInputs(obj(silo.inputs), ["silos", i, "inputs"], true));
  const commandSecret = typeof training.command === "string" ? secretInCommandReason(training.command) : undefined;
  if (commandSecret) issues.push(specIssue("training.command", NO_SECRETS, `${commandSecret} (value not shown)`));
  for (const [path, value] of [
    ["training.code", training.code],
    ["description", raw.description],
  ] as const) {
    const reason = typeof value === "string" ? secretValueReason(value) : undefined;
    if (reason) issues.push(specIssue(path, NO_SECRETS, `${reason} (value not shown)`));
  }

  // Azure ML silos need an environment.
  const firstAzureml = silos.findIndex((silo) => obj(silo.compute).type === "azureml");
  if (firstAzureml >= 0 && training.environment === undefined) {
    issues.push(specIssue("training.environment", `an Azure ML environment such as azureml:flo-node:1 (silos[${firstAzureml}] uses azureml compute)`, "missing"));
  }

  // Quorum versus silos.
  const siloCount = silos.length;
  const fraction = typeof policy.sampleFraction === "number" && policy.sampleFraction > 0 && policy.sampleFraction <= 1 ? policy.sampleFraction : 1;
  const perRound = silosPerRound(siloCount, fraction);
  const minSilos = isCount(policy.minSilos) && policy.minSilos >= 1 ? policy.minSilos : undefined;
  if (minSilos !== undefined && siloCount > 0) {
    if (minSilos > siloCount) {
      issues.push(specIssue("policy.minSilos", `<= ${siloCount} (the number of silos)`, String(minSilos)));
    } else if (minSilos > perRound) {
      issues.push(specIssue("policy.minSilos", `<= ${perRound} (silos sampled per round: ceil(sampleFraction ${fraction} x ${siloCount} silos))`, String(minSilos)));
    }
  }
  const quorum = effectiveMinSilos(minSilos, perRound);
  if (siloCount > 0) issues.push(...aggregationIssues(obj(raw.aggregation), quorum, perRound, minSilos !== undefined));
  if (isObj(obj(raw.aggregation).secureAggregation)) issues.push(...secureAggregationIssues(raw, { quorum, perRound, minSilosExplicit: minSilos !== undefined }));

  // A strategy stepping from the round's global model (server optimizers) needs one in round 1 too.
  const strategy = obj(raw.aggregation).strategy;
  const definition = typeof strategy === "string" ? findStrategy(strategy) : undefined;
  if (definition?.capabilities.needsGlobalModel && typeof raw.initialModel !== "string") {
    issues.push(
      specIssue(
        "initialModel",
        `a model.safetensors location: ${definition.name} steps from the global model every round, so round 1 needs one`,
        raw.initialModel === null ? "null" : "missing",
        "or use fedavg",
      ),
    );
  }

  // The command's placeholders against what each silo defines.
  if (typeof training.command === "string" && training.command.length > 0) {
    const hasInitialModel = typeof raw.initialModel === "string";
    issues.push(...commandIssues({ command: training.command, section: "training", output: MODEL_UPDATE_OUTPUT, parameters, silos, alwaysHasGlobalModel: hasInitialModel }));
  }
  if (isObj(raw.evaluation)) issues.push(...evaluationIssues(raw.evaluation, { silos, firstAzureml, parameters }));
  return issues;
}

/** Where an evaluation job writes metrics.json (`${{outputs.evaluation}}`). */
export const EVALUATION_OUTPUT = "evaluation";

/** The evaluation section against the silos and training.parameters (the schema checked its fields). */
function evaluationIssues(evaluation: Obj, context: { silos: Obj[]; firstAzureml: number; parameters: Obj }): SpecIssue[] {
  const { silos, firstAzureml } = context;
  const issues: SpecIssue[] = [];
  const parameters = obj(evaluation.parameters);
  for (const key of Object.keys(parameters)) {
    if (BUILTIN_INPUTS.includes(key))
      issues.push(specIssue(formatPath(["evaluation", "parameters", key]), `a name other than the inputs flo provides (${BUILTIN_INPUTS.join(", ")})`, JSON.stringify(key)));
    const keyReason = secretKeyReason(key);
    if (keyReason) issues.push(specIssue(formatPath(["evaluation", "parameters", key]), NO_SECRETS, `a field named like a secret: ${keyReason}`));
  }
  if (typeof evaluation.command === "string") {
    const secret = secretInCommandReason(evaluation.command);
    if (secret) issues.push(specIssue("evaluation.command", NO_SECRETS, `${secret} (value not shown)`));
    // The evaluated model always exists, so ${{inputs.global_model}} may stand outside $[[ ]].
    else if (evaluation.command.length > 0)
      issues.push(...commandIssues({ command: evaluation.command, section: "evaluation", output: EVALUATION_OUTPUT, parameters, silos, alwaysHasGlobalModel: true }));
  }
  // `flo submit` uploads training.code only: an Azure ML silo could not run a local evaluation folder.
  if (firstAzureml >= 0 && typeof evaluation.code === "string" && !isCodeReference(evaluation.code)) {
    issues.push(
      specIssue(
        "evaluation.code",
        `a registered Azure ML code asset (azureml:<name>:<version>) or a URI (silos[${firstAzureml}] uses azureml compute, and flo submit uploads only training.code)`,
        JSON.stringify(evaluation.code),
      ),
    );
  }
  if (firstAzureml >= 0 && evaluation.environment === undefined) {
    issues.push(specIssue("evaluation.environment", `an Azure ML environment such as azureml:flo-node:1 (silos[${firstAzureml}] uses azureml compute)`, "missing"));
  }
  if (isCount(evaluation.minSilos) && silos.length > 0 && evaluation.minSilos > silos.length) {
    issues.push(specIssue("evaluation.minSilos", `<= ${silos.length} (the number of silos; every silo evaluates)`, String(evaluation.minSilos)));
  }
  return issues;
}

const SECURE = "with aggregation.secureAggregation";

/**
 * Secure aggregation gives the orchestrator only the weighted sum of clipped updates: the strategy
 * must work on that sum (its definition says so), clipping must be fixed (an adaptive norm needs each
 * update's norm), nothing may need one silo's weight, and every silo needs a key pair, a bound on its
 * examples and a key input on its compute.
 */
function secureAggregationIssues(raw: Obj, round: { quorum: number; perRound: number; minSilosExplicit: boolean }): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const aggregation = obj(raw.aggregation);
  const secure = obj(aggregation.secureAggregation);
  const definition = typeof aggregation.strategy === "string" ? findStrategy(aggregation.strategy) : undefined;
  if (definition && (!definition.capabilities.worksOnWeightedSum || definition.capabilities.robust)) {
    const sumBased = strategyDefinitions()
      .filter((d) => d.capabilities.worksOnWeightedSum && !d.capabilities.robust)
      .map((d) => d.name);
    const why = definition.capabilities.robust ? "a robust rule needs the individual updates, which secure aggregation hides" : "it needs the individual updates, which secure aggregation hides";
    issues.push(specIssue("aggregation.strategy", `a strategy computed from the weighted sum ${SECURE} (${sumBased.join(", ")})`, `${definition.name}: ${why}`));
  }
  const clipping = aggregation.clipping;
  if (clipping === undefined) {
    issues.push(specIssue("aggregation.clipping", `{mode: fixed, norm: C} ${SECURE}: the norm bounds every quantized coordinate`, "missing"));
  } else if (isObj(clipping) && clipping.mode !== "fixed") {
    issues.push(specIssue("aggregation.clipping.mode", `fixed ${SECURE}: adaptive clipping needs each update's norm, which secure aggregation hides`, JSON.stringify(clipping.mode)));
  }
  if (aggregation.maxWeightShare !== undefined) {
    issues.push(
      specIssue(
        "aggregation.maxWeightShare",
        `no weight share cap ${SECURE}: capping needs each silo's num_examples, which never leaves the silo (bound weights with silos[].maxExamples)`,
        JSON.stringify(aggregation.maxWeightShare),
      ),
    );
  }
  const threshold = secure.threshold;
  if (typeof threshold === "number" && Number.isInteger(threshold)) {
    if (threshold < 2) {
      issues.push(specIssue("aggregation.secureAggregation.threshold", "an integer >= 2: with t = 1 one silo's self-mask seed could be rebuilt from its own share alone", String(threshold)));
    } else if (threshold > round.perRound) {
      issues.push(specIssue("aggregation.secureAggregation.threshold", `<= ${round.perRound} (the silos sampled per round)`, String(threshold)));
    } else if (round.quorum < threshold) {
      issues.push(
        specIssue(
          round.minSilosExplicit ? "policy.minSilos" : "aggregation.secureAggregation.threshold",
          `policy.minSilos >= the threshold ${threshold}: a round aggregating fewer than t silos could never be unmasked`,
          `minSilos ${round.quorum}`,
        ),
      );
    }
  } else if (threshold === undefined && round.perRound >= 2 && round.quorum < defaultThreshold(round.perRound)) {
    issues.push(
      specIssue(
        "policy.minSilos",
        `>= the default threshold ceil(2K/3) = ${defaultThreshold(round.perRound)} for K = ${round.perRound} silos per round (or set aggregation.secureAggregation.threshold)`,
        String(round.quorum),
      ),
    );
  }
  const training = obj(raw.training);
  const azureml = (Array.isArray(raw.silos) ? raw.silos.map(obj) : []).findIndex((silo) => obj(silo.compute).type === "azureml");
  if (azureml >= 0) {
    // flo ships the Python masking package inside the code folder it uploads (uploadSpecCode).
    const code = training.code;
    if (typeof code !== "string" || code.startsWith("azureml:") || code.startsWith("/subscriptions/")) {
      issues.push(
        specIssue(
          "training.code",
          `a local code folder ${SECURE} on Azure ML (silos[${azureml}]): flo adds its masking package flo_secagg to the folder it uploads`,
          typeof code === "string" ? JSON.stringify(code) : "missing",
        ),
      );
    }
  }
  if (typeof raw.initialModel !== "string") {
    issues.push(
      specIssue("initialModel", `a model.safetensors location ${SECURE}: silos mask their update trained - global, so round 1 needs a global model`, raw.initialModel === null ? "null" : "missing"),
    );
  }
  const silos = Array.isArray(raw.silos) ? raw.silos.map(obj) : [];
  if (silos.length < 2) issues.push(specIssue("silos", `at least 2 silos ${SECURE}`, String(silos.length)));
  silos.forEach((silo, i) => {
    if (silo.publicKey === undefined) issues.push(specIssue(`silos[${i}].publicKey`, `the silo's public key (the last line \`flo silo keygen\` prints) ${SECURE}`, "missing"));
    else {
      try {
        parsePublicKey(silo.publicKey, `silos[${i}].publicKey`);
      } catch (err) {
        if (!(err instanceof SecAggError)) throw err;
        issues.push(specIssue(`silos[${i}].publicKey`, "base64 of a 32-byte X25519 public key", err.detail));
      }
    }
    if (silo.maxExamples === undefined) issues.push(specIssue(`silos[${i}].maxExamples`, `the most examples this silo can have ${SECURE}: it bounds the silo's weight and sizes the ring`, "missing"));
    const compute = obj(silo.compute);
    if (compute.type === "azureml" && typeof compute.secretKey === "string" && typeof compute.exchangeDatastore === "string") {
      const keyDatastore = /^azureml:\/\/datastores\/([^/]+)\//.exec(compute.secretKey)?.[1];
      if (keyDatastore && keyDatastore.toLowerCase() === compute.exchangeDatastore.toLowerCase()) {
        issues.push(specIssue(`silos[${i}].compute.secretKey`, "a file in a datastore private to the silo, not the exchange datastore the orchestrator reads", compute.secretKey));
      }
    }
    const keyField = SECRET_KEY_FIELD[String(compute.type)];
    if (keyField && compute[keyField] === undefined) {
      issues.push(specIssue(`silos[${i}].compute.${keyField}`, `the silo's secret key input ${SECURE} (${String(compute.type)} compute: ${SECRET_KEY_HINT[String(compute.type)]})`, "missing"));
    }
  });
  return issues;
}

/** Where each compute type takes the silo's secret key for secure aggregation. */
const SECRET_KEY_FIELD: Record<string, string> = { local: "keyFile", azureml: "secretKey" };
const SECRET_KEY_HINT: Record<string, string> = { local: "a key file path", azureml: "azureml://datastores/<private datastore>/paths/<file>" };

function aggregationIssues(aggregation: Obj, quorum: number, perRound: number, quorumExplicit: boolean): SpecIssue[] {
  const issues: SpecIssue[] = [];
  const definition = typeof aggregation.strategy === "string" ? findStrategy(aggregation.strategy) : undefined;
  // Rule-specific checks against the round sizes (e.g. Krum's n >= 2f+3), from the definition.
  for (const issue of definition?.quorumIssues?.(aggregation, { minUpdates: quorum, explicit: quorumExplicit }) ?? []) {
    issues.push(specIssue(issue.path, issue.expected, issue.got, issue.hint));
  }
  if (isObj(aggregation.dp) && definition && !acceptsDp(definition)) {
    const meanBased = strategyDefinitions()
      .filter(acceptsDp)
      .map((d) => d.name);
    issues.push(
      specIssue(
        "aggregation.dp",
        `no dp with ${definition.name}: Gaussian noise of sigma = z x C / m is calibrated to the mean of clipped updates (strategies ${meanBased.join(", ")})`,
        "a dp setting",
        "use clipping alone for robustness, or a mean-based strategy for dp",
      ),
    );
  }
  if (isObj(aggregation.dp)) {
    const clipping = aggregation.clipping;
    if (clipping === undefined) {
      issues.push(specIssue("aggregation.clipping", "a clipping setting: dp noise is calibrated to the clipping norm", "missing"));
    } else if (isObj(clipping) && clipping.mode === "adaptive" && typeof aggregation.dp.noiseMultiplier === "number") {
      // Andrew et al.: the clipped-count noise takes part of the budget; z_delta is real only if z < 2 sigma_b.
      const explicit = typeof clipping.clippedCountStddev === "number" ? clipping.clippedCountStddev : undefined;
      const sigmaB = explicit ?? perRound / 20;
      const z = aggregation.dp.noiseMultiplier;
      if (z >= 2 * sigmaB) {
        const source = explicit !== undefined ? "aggregation.clipping.clippedCountStddev" : `silos per round ${perRound} / 20`;
        issues.push(
          specIssue(
            "aggregation.dp.noiseMultiplier",
            `< 2 x clippedCountStddev = ${Number((2 * sigmaB).toPrecision(12))} (clippedCountStddev from ${source})`,
            String(z),
            "or raise clippedCountStddev",
          ),
        );
      }
    }
  }
  return issues;
}

interface CommandCheck {
  command: string;
  /** The spec section holding the command and its parameters (`training`, `evaluation`). */
  section: string;
  /** The one output the job writes. */
  output: string;
  parameters: Obj;
  silos: Obj[];
  /** Whether every job of the section gets `inputs.global_model` (training without initialModel does not in round 1). */
  alwaysHasGlobalModel: boolean;
}

function commandIssues(check: CommandCheck): SpecIssue[] {
  const { command, section, output: expectedOutput, parameters, silos, alwaysHasGlobalModel } = check;
  const path = `${section}.command`;
  let template;
  try {
    template = parseCommandTemplate(command);
  } catch (error) {
    if (error instanceof CommandTemplateError) return [commandError(path, error)];
    throw error;
  }
  const issues: SpecIssue[] = [];
  for (const output of template.outputs) {
    if (output !== expectedOutput) {
      issues.push(specIssue(path, `\${{outputs.${expectedOutput}}} (the only output of ${section === "training" ? "a silo" : `an ${section}`} job)`, `\${{outputs.${output}}}`));
    }
  }
  if (!template.outputs.includes(expectedOutput)) {
    const writes = expectedOutput === MODEL_UPDATE_OUTPUT ? "the trainer writes model.safetensors and metrics.json" : "the job writes metrics.json";
    issues.push(specIssue(path, `a reference to \${{outputs.${expectedOutput}}} (where ${writes})`, "none"));
  }
  const defined = (silo: Obj, name: string) => Object.prototype.hasOwnProperty.call(parameters, name) || Object.prototype.hasOwnProperty.call(obj(silo.inputs), name);
  const siloLabel = (silo: Obj, i: number) => (typeof silo.name === "string" ? JSON.stringify(silo.name) : `silos[${i}]`);
  for (const { name, optional } of template.inputs) {
    const placeholder = `\${{inputs.${name}}}`;
    if (name === GLOBAL_MODEL_INPUT) {
      if (!optional && !alwaysHasGlobalModel) {
        issues.push(specIssue(path, `${placeholder} inside an optional part $[[ ... ]]: without initialModel round 1 has no global model`, `${placeholder} outside $[[ ]]`));
      }
      continue;
    }
    if (BUILTIN_INPUTS.includes(name)) continue;
    const missing = silos.map((silo, i) => (defined(silo, name) ? undefined : siloLabel(silo, i))).filter((s): s is string => s !== undefined);
    const where = `${section}.parameters, or silos[].inputs of every silo, or a built-in (${BUILTIN_INPUTS.join(", ")})`;
    if (!optional && missing.length > 0) {
      const got = missing.length === silos.length ? `${placeholder}, defined nowhere` : `${placeholder}, undefined for silo ${missing.join(", ")}`;
      issues.push(specIssue(path, `input "${name}" defined in ${where}`, got));
    } else if (optional && missing.length === silos.length) {
      // An optional part silently dropped for every silo is almost always a misspelt input name.
      issues.push(specIssue(path, `input "${name}" defined by some silo or in ${section}.parameters (or a built-in)`, `${placeholder}, defined nowhere`));
    }
  }
  // Quoting must balance whether optional parts are kept or dropped.
  const everything = Object.fromEntries(template.inputs.map(({ name }) => [name, "x"]));
  const requiredOnly = Object.fromEntries(template.inputs.filter((i) => !i.optional).map(({ name }) => [name, "x"]));
  const outputs = Object.fromEntries(template.outputs.map((name) => [name, "x"]));
  for (const inputs of [everything, requiredOnly]) {
    try {
      renderCommand(command, { inputs, outputs });
    } catch (error) {
      if (!(error instanceof CommandTemplateError)) throw error;
      issues.push(commandError(path, error));
      break;
    }
  }
  return issues;
}

function commandError(path: string, error: CommandTemplateError): SpecIssue {
  const at = error.details.index !== undefined ? ` at character ${error.details.index + 1}` : "";
  return specIssue(path, error.expected, `${error.got}${at}`);
}
