/**
 * The federation's activities: the I/O the orchestrations delegate (submit/poll/cancel silo jobs,
 * aggregate a round, record a failed round, notify partners). Registered by
 * functions/activities.ts; each takes and returns small JSON.
 */
import { siloDataInputs, siloJobInputs } from "../spec";
import type { FederationSpec, SiloSpec } from "../spec";
import { DEFAULT_JOB_KIND, floJobName, floJobTags, type JobInput, type SiloJobStatus, type TrainingOutput } from "../compute/siloCompute";
import { blobUri, jobLogPath, roundGlobalPath, roundManifestPath, roundStatePath } from "../models/storeLayout";
import { jobRecipe } from "./jobKinds";
import { STORE_AGGREGATION_READS } from "./storeAggregationReads";
import { publishedMetrics, secureJobAdditions, unmaskSession } from "./secure";
import { SecAggError } from "../secagg/errors";

export { fixSecureSplit } from "./secure";
import { aggregateUpdates, AggregationError, createStrategy, type AggregationResult, type RoundWeighting, type StrategyStateInput } from "../aggregation";
import type { Json } from "../aggregation/strategy";
import { azureMlCodeOf, uploadedCodeDigest } from "../compute/azureml/code";
import { checkpointPath, readCheckpoint } from "./lifecycle";
import { MANIFEST_SCHEMA, weightedMeans, type FederationCheckpoint, type RoundManifest, type RoundWeightingRecord, type SiloManifestEntry } from "./manifest";
import type { FederationServices } from "./services";
import type { AggregateSecureRoundInput, SecureAggregateRoundOutput } from "./types";
import type { AggregateRoundInput, AggregateRoundOutput, JobRefInput, ModelRef, RecordRoundFailureInput, RoundSummary, SiloRoundResult, SubmitJobInput } from "./types";

function siloOf(spec: FederationSpec, name: string): SiloSpec {
  const silo = spec.silos.find((s) => s.name === name);
  if (!silo) throw new Error(`federation ${spec.name} has no silo ${JSON.stringify(name)}`);
  return silo;
}

const folderOf = (modelUri: string) => modelUri.slice(0, modelUri.lastIndexOf("/") + 1);

export async function submitSiloJob(services: FederationServices, input: SubmitJobInput): Promise<SiloJobStatus> {
  const spec = await services.loadSpec(input.spec);
  const silo = siloOf(spec, input.silo);
  const kind = input.kind ?? DEFAULT_JOB_KIND;
  const recipe = jobRecipe(kind);
  const section = recipe.section(spec);
  const job = { federationId: input.federationId, round: input.round, silo: input.silo, kind, ...(input.secure?.rerun ? { rerun: input.secure.rerun } : {}) };
  const name = floJobName({ ...job, attempt: input.attempt });
  const literals = siloJobInputs(spec, input.silo, { federationId: input.federationId, round: input.round, parameters: { ...section.parameters, ...input.parameters } });
  const inputs: Record<string, JobInput> = {};
  for (const [k, v] of Object.entries(literals)) inputs[k] = { kind: "literal", value: v };
  for (const [k, v] of Object.entries(siloDataInputs(spec, input.silo))) inputs[k] = { kind: "asset", ...v };
  Object.assign(inputs, recipe.extraInputs?.(spec, input));
  if (input.global) inputs.global_model = { kind: "folder", uri: folderOf(input.global.uri) };
  const store = services.store;
  const secure = input.secure ? await secureJobAdditions(services, spec, { ...job, secure: input.secure }) : undefined;
  return services.computeFor(silo).submit({
    ...job,
    jobName: name,
    command: section.command,
    inputs: { ...inputs, ...secure?.inputs },
    outputUri: blobUri(store.containerUrl, recipe.outputFolder(input)),
    logUri: store.uri(jobLogPath(input.federationId, input.round, input.silo, `${name}.log`)),
    // Mixed specs: azureml silos run the uploaded copy of the folder, local silos the folder itself.
    code: silo.compute.type === "azureml" ? azureMlCodeOf(section) : section.code,
    environment: section.environment,
    ...secure?.request,
    timeoutSeconds: spec.policy.roundTimeoutSeconds,
    tags: floJobTags(job),
  });
}

export async function getSiloJobStatus(services: FederationServices, input: JobRefInput): Promise<SiloJobStatus> {
  const spec = await services.loadSpec(input.spec);
  return services.computeFor(siloOf(spec, input.silo)).status(input.jobName);
}

export async function cancelSiloJob(services: FederationServices, input: JobRefInput): Promise<void> {
  const spec = await services.loadSpec(input.spec);
  await services.computeFor(siloOf(spec, input.silo)).cancel(input.jobName);
}

/** The spec's aggregation block as strategy options (everything but the strategy name and the engine's weight cap). */
function strategyOptions(spec: FederationSpec): Json {
  const { strategy: _name, maxWeightShare: _cap, secureAggregation: _secure, ...options } = spec.aggregation as Record<string, unknown>;
  return JSON.parse(JSON.stringify(options)) as Json;
}

interface StoredStrategyState {
  json: Json;
  tensors: Record<string, ModelRef>;
}

/** A succeeded silo's output, opened and validated, or why it cannot be used. */
interface OpenedUpdate {
  silo: string;
  uri: string;
  output?: TrainingOutput;
  reason?: string;
}

async function openUpdate(services: FederationServices, spec: FederationSpec, result: SiloRoundResult): Promise<OpenedUpdate> {
  const uri = result.outputUri!;
  try {
    const output = await services.computeFor(siloOf(spec, result.silo)).openOutput(uri, { kind: "train" });
    if (output.kind !== "train") throw new Error(`expected a training output, got a ${output.kind} output`);
    return { silo: result.silo, uri, output };
  } catch (err) {
    return { silo: result.silo, uri, reason: `cannot open the update at ${uri}: ${(err as Error).message}` };
  }
}

/** What every manifest of the round records, aggregated or not. */
type RoundRecordBase = Pick<RoundManifest, "federationId" | "round" | "spec" | "sampled" | "globalIn" | "strategy" | "code"> & { roundStartedAt: string };

/** The record base of a round aggregated (or failed) by `strategy`. */
function roundRecordBase(spec: FederationSpec, input: AggregateRoundInput, strategy: { name: string; options: Json }): RoundRecordBase {
  return {
    federationId: input.federationId,
    round: input.round,
    spec: input.spec,
    sampled: input.sampled,
    ...codeRecord(spec),
    globalIn: input.global,
    roundStartedAt: input.roundStartedAt,
    strategy: { name: strategy.name, options: strategy.options, stateIn: input.strategyState },
  };
}

/** The manifest's record of the job code, when it is an uploaded folder. */
function codeRecord(spec: FederationSpec): Pick<RoundManifest, "code"> {
  const code = azureMlCodeOf(spec.training);
  const sha256 = code === undefined ? undefined : uploadedCodeDigest(code);
  return code !== undefined && sha256 ? { code: { uri: code, sha256 } } : {};
}

/** Step 1: the succeeded silos' outputs, opened concurrently. */
function openRoundUpdates(services: FederationServices, spec: FederationSpec, results: SiloRoundResult[]): Promise<OpenedUpdate[]> {
  return Promise.all(results.filter((r) => r.outcome === "succeeded" && r.outputUri).map((r) => openUpdate(services, spec, r)));
}

/**
 * Step 1b: an update claiming more examples than its silo's `maxExamples` is excluded with the
 * reason: its weight would be a lie, and capping it silently would still reward the lie.
 */
function admitUpdates(spec: FederationSpec, opened: OpenedUpdate[]): OpenedUpdate[] {
  return opened.map((o) => {
    const index = spec.silos.findIndex((s) => s.name === o.silo);
    const max = spec.silos[index]?.maxExamples;
    const claimed = o.output?.metrics.numExamples;
    if (max === undefined || claimed === undefined || claimed <= max) return o;
    return { silo: o.silo, uri: o.uri, reason: `num_examples ${claimed} exceeds silos[${index}].maxExamples ${max}: update excluded` };
  });
}

/** Step 2: the previous round's strategy state, if any, as engine input. */
async function loadStrategyState(services: FederationServices, ref: ModelRef | undefined): Promise<StrategyStateInput | undefined> {
  if (!ref) return undefined;
  const store = services.store;
  const stored = await store.getJson<StoredStrategyState>(store.pathFromUri(ref.uri));
  return { json: stored.json, tensors: Object.fromEntries(Object.entries(stored.tensors).map(([k, t]) => [k, store.source(store.pathFromUri(t.uri))])) };
}

/** Step 3 when too few updates are valid: the failed round's manifest, naming every exclusion. */
async function recordQuorumFailure(
  services: FederationServices,
  args: { input: AggregateRoundInput; base: RoundRecordBase; opened: OpenedUpdate[]; error: AggregationError },
): Promise<AggregateRoundOutput> {
  const { input, base, opened, error } = args;
  const excluded = new Map(error.excluded.map((e) => [e.id, e.reason]));
  for (const o of opened) if (o.reason) excluded.set(o.silo, o.reason);
  const readable = opened.filter((o) => o.output).length;
  const reason = `quorum not reached after validating updates: ${readable - error.excluded.length} valid update(s), policy.minSilos is ${input.minSilos}`;
  const manifest = failedManifest({ ...base, results: input.results, reason, excluded });
  const written = await services.store.putJson(roundManifestPath(input.federationId, input.round), manifest);
  return { ok: false, reason, manifestUri: written.uri };
}

/** Step 4: one manifest entry per sampled silo: included or why not, with its reported metrics. */
function siloEntries(results: SiloRoundResult[], opened: OpenedUpdate[], aggregation: AggregationResult): SiloManifestEntry[] {
  const includedById = new Map(aggregation.included.map((u) => [u.id, u]));
  const excludedById = new Map(aggregation.excluded.map((e) => [e.id, e.reason]));
  for (const o of opened) if (o.reason) excludedById.set(o.silo, o.reason);
  const openedById = new Map(opened.map((o) => [o.silo, o]));
  return results.map((r) => {
    const included = includedById.get(r.silo);
    const o = openedById.get(r.silo);
    return {
      silo: r.silo,
      outcome: r.outcome,
      attempts: r.attempts,
      included: Boolean(included),
      reason: included ? undefined : (excludedById.get(r.silo) ?? r.reason),
      update: o ? { uri: o.uri, sha256: included?.sha256 } : undefined,
      numExamples: included?.numExamples,
      weightShare: included?.weightShare,
      metrics: o?.output?.metrics.metrics,
      globalMetrics: o?.output?.metrics.globalMetrics,
    };
  });
}

/** Step 5: the strategy state the next round starts from. */
async function saveStrategyState(services: FederationServices, input: AggregateRoundInput, state: AggregationResult["state"]): Promise<ModelRef> {
  const tensors: Record<string, ModelRef> = {};
  for (const [name, w] of Object.entries(state.tensors)) tensors[name] = { uri: w.uri, sha256: w.sha256, size: w.size };
  const written = await services.store.putJson(roundStatePath(input.federationId, input.round, "strategy.json"), { json: state.json, tensors } satisfies StoredStrategyState);
  return { uri: written.uri, sha256: written.sha256 };
}

/** Step 6: the checkpoint a resumed federation starts from, with the history of rounds (the only copy of it). */
async function saveCheckpoint(services: FederationServices, args: { input: AggregateRoundInput; summary: RoundSummary; model: ModelRef; strategyState: ModelRef }): Promise<string> {
  const { input, summary, model, strategyState } = args;
  const previous = await readCheckpoint(services, input.federationId).catch(() => undefined);
  // Evaluations of later rounds belong to a run this one replaces (a resumed federation).
  const evaluations = (previous?.evaluations ?? []).filter((e) => e.round < input.round);
  const checkpoint: FederationCheckpoint = {
    schema: "flo.checkpoint/1",
    federationId: input.federationId,
    round: input.round,
    model,
    strategyState,
    history: [...(previous?.history ?? []).filter((h) => h.round < input.round), summary],
    manifestUri: summary.manifestUri,
    ...(evaluations.length > 0 ? { evaluations } : {}),
  };
  const written = await services.store.putJson(checkpointPath(input.federationId), checkpoint);
  return written.uri;
}

/**
 * Aggregates a round: opens the succeeded silos' updates, runs the strategy over them into the next
 * round's global model, and records the round's manifest, the strategy state and the checkpoint.
 */
export async function aggregateRound(services: FederationServices, input: AggregateRoundInput): Promise<AggregateRoundOutput> {
  const spec = await services.loadSpec(input.spec);
  const store = services.store;
  const aggregationStartedAt = new Date();
  const opened = admitUpdates(spec, await openRoundUpdates(services, spec, input.results));
  const strategy = createStrategy(spec.aggregation.strategy, strategyOptions(spec));
  const base = roundRecordBase(spec, input, strategy);

  let aggregation: AggregationResult;
  try {
    aggregation = await aggregateUpdates({
      updates: opened.flatMap((o) => (o.output ? [{ id: o.silo, model: o.output.model, metrics: o.output.metrics }] : [])),
      output: () => store.sink(roundGlobalPath(input.federationId, input.round + 1)),
      strategy,
      state: await loadStrategyState(services, input.strategyState),
      stateOutput: (name) => store.sink(roundStatePath(input.federationId, input.round, `${name}.safetensors`)),
      global: input.global ? store.source(store.pathFromUri(input.global.uri)) : undefined,
      minUpdates: input.minSilos,
      maxWeightShare: spec.aggregation.maxWeightShare,
      ...STORE_AGGREGATION_READS,
    });
  } catch (err) {
    if (!(err instanceof AggregationError) || err.code !== "TOO_FEW_UPDATES") throw err;
    return recordQuorumFailure(services, { input, base, opened, error: err });
  }
  const aggregatedAt = new Date();

  const silos = siloEntries(input.results, opened, aggregation);
  // Weighted like the model: by the (capped) shares the engine used.
  const globalMetrics = weightedMeans(silos.filter((s) => s.included).map((s) => ({ numExamples: s.weightShare ?? 0, values: s.globalMetrics })));
  return completeRound(services, {
    input,
    base,
    aggregation,
    aggregationStartedAt,
    aggregatedAt,
    outcome: { silos, metrics: aggregation.metrics, globalMetrics, totalExamples: aggregation.totalExamples, weighting: manifestWeighting(aggregation.weighting) },
  });
}

function aggregationTimings(roundStartedAt: string, aggregationStartedAt: Date, aggregatedAt: Date): RoundManifest["timings"] {
  return {
    roundStartedAt,
    aggregationStartedAt: aggregationStartedAt.toISOString(),
    aggregatedAt: aggregatedAt.toISOString(),
    aggregationSeconds: (aggregatedAt.getTime() - aggregationStartedAt.getTime()) / 1000,
  };
}

/**
 * Step 6, for plain and secure rounds alike: saves the strategy state, writes the aggregated
 * round's manifest (the round's record, the new global model, what `outcome` says of the silos)
 * and the checkpoint; returns the round's summary.
 */
async function completeRound(
  services: FederationServices,
  args: {
    input: AggregateRoundInput;
    base: RoundRecordBase;
    aggregation: AggregationResult;
    aggregationStartedAt: Date;
    aggregatedAt: Date;
    outcome: Pick<RoundManifest, "silos" | "metrics" | "globalMetrics" | "totalExamples" | "weighting" | "secureAggregation">;
  },
): Promise<Extract<AggregateRoundOutput, { ok: true }>> {
  const { input, base, aggregation } = args;
  const strategyState = await saveStrategyState(services, input, aggregation.state);
  const model: ModelRef = { uri: aggregation.output.uri, sha256: aggregation.output.sha256, size: aggregation.output.size };
  const { roundStartedAt, ...record } = base;
  const { silos, ...figures } = args.outcome;
  const manifest: RoundManifest = {
    schema: MANIFEST_SCHEMA,
    ...record,
    status: "aggregated",
    silos,
    globalOut: model,
    strategy: { ...record.strategy, stateOut: strategyState, report: aggregation.state.report },
    ...figures,
    timings: aggregationTimings(roundStartedAt, args.aggregationStartedAt, args.aggregatedAt),
  };
  const manifestWritten = await services.store.putJson(roundManifestPath(input.federationId, input.round), manifest);
  const summary: RoundSummary = {
    round: input.round,
    model,
    manifestUri: manifestWritten.uri,
    included: manifest.silos.filter((s) => s.included).map((s) => s.silo),
    excluded: manifest.silos.filter((s) => !s.included).map((s) => ({ silo: s.silo, reason: s.reason ?? s.outcome })),
    metrics: manifest.metrics,
    globalMetrics: manifest.globalMetrics,
    startedAt: input.roundStartedAt,
    aggregatedAt: args.aggregatedAt.toISOString(),
  };
  const checkpointUri = await saveCheckpoint(services, { input, summary, model, strategyState });
  return { ok: true, summary, strategyState, checkpointUri };
}

/**
 * A secure round: unmasks the session's sum into the global model plus the weighted mean update,
 * then runs the strategy on it as one update (fedavg and the server optimizers step from a mean),
 * or with central DP as |S| identical updates of weight 1, so DP sees m = |S| for its sensitivity
 * C/m (their mean is the same model). The clipping
 * wrapper finds every delta within C already (the silos clipped). Integer tensors come from the
 * global model. Nothing of one silo (count, update, sha256 of a plain update) is recorded.
 */
export async function aggregateSecureRound(services: FederationServices, input: AggregateSecureRoundInput): Promise<SecureAggregateRoundOutput> {
  const spec = await services.loadSpec(input.spec);
  const store = services.store;
  const secure = input.secure;
  const aggregationStartedAt = new Date();
  let unmasked: Awaited<ReturnType<typeof unmaskSession>>;
  try {
    unmasked = await unmaskSession(services, { spec, federationId: input.federationId, round: input.round, global: input.global, secure });
  } catch (err) {
    if (err instanceof SecAggError) return { ok: false, rerun: true, reason: err.message, session: secure.split.session };
    throw err;
  }
  const survivors = secure.split.survivors;
  const strategy = createStrategy(spec.aggregation.strategy, strategyOptions(spec));
  const aggregation = await aggregateUpdates({
    updates: (spec.aggregation.dp ? survivors : ["sum"]).map((id) => ({ id, model: store.source(store.pathFromUri(unmasked.model.uri)), metrics: { numExamples: 1, metrics: {} } })),
    output: () => store.sink(roundGlobalPath(input.federationId, input.round + 1)),
    strategy,
    state: await loadStrategyState(services, input.strategyState),
    stateOutput: (name) => store.sink(roundStatePath(input.federationId, input.round, `${name}.safetensors`)),
    global: input.global ? store.source(store.pathFromUri(input.global.uri)) : undefined,
    minUpdates: spec.aggregation.dp ? survivors.length : 1,
  });
  const aggregatedAt = new Date();
  const dropped = new Map(secure.split.droppedReasons.map((d) => [d.silo, d.reason]));
  const silos: SiloManifestEntry[] = [];
  for (const r of input.results) {
    const included = survivors.includes(r.silo);
    const published = included ? await publishedMetrics(services, spec, r) : {};
    silos.push({
      silo: r.silo,
      outcome: r.outcome,
      attempts: [...r.attempts, ...(secure.unmask.find((u) => u.silo === r.silo)?.attempts ?? [])],
      included,
      reason: included ? undefined : (dropped.get(r.silo) ?? r.reason),
      update: r.outputUri ? { uri: r.outputUri } : undefined,
      ...published,
    });
  }
  const globalMetrics = weightedMeans(silos.filter((s) => s.included).map((s) => ({ numExamples: 1, values: s.globalMetrics })));
  const metrics = weightedMeans(silos.filter((s) => s.included).map((s) => ({ numExamples: 1, values: s.metrics })));
  return completeRound(services, {
    input,
    base: roundRecordBase(spec, input, strategy),
    aggregation,
    aggregationStartedAt,
    aggregatedAt,
    outcome: { silos, metrics, globalMetrics, totalExamples: unmasked.record.weightSum, secureAggregation: unmasked.record },
  });
}

/** The round's weighting as the manifest records it, with a sentence saying what happened. */
function manifestWeighting(weighting: RoundWeighting): RoundWeightingRecord {
  const notes: string[] = [];
  if (weighting.equalized) notes.push(`maxWeightShare ${weighting.maxWeightShare} is below 1/m for the round's updates: every update weighed the same`);
  else if (weighting.capped.length > 0) notes.push(`capped at maxWeightShare ${weighting.maxWeightShare}: ${weighting.capped.join(", ")}; the excess went to the others in proportion to num_examples`);
  if (weighting.dominant.length > 0) {
    notes.push(
      `no maxWeightShare set and ${weighting.dominant.join(", ")} weighed more than half of the round: one silo's num_examples claim steered the model (set aggregation.maxWeightShare or silos[].maxExamples)`,
    );
  }
  return { ...weighting, ...(notes.length > 0 ? { note: notes.join("; ") } : {}) };
}

function failedManifest(args: {
  federationId: string;
  round: number;
  spec: ModelRef;
  sampled: string[];
  results: SiloRoundResult[];
  globalIn?: ModelRef;
  roundStartedAt: string;
  strategy: RoundManifest["strategy"];
  reason: string;
  excluded?: Map<string, string>;
  code?: RoundManifest["code"];
}): RoundManifest {
  return {
    schema: MANIFEST_SCHEMA,
    federationId: args.federationId,
    round: args.round,
    status: "failed",
    reason: args.reason,
    spec: args.spec,
    sampled: args.sampled,
    ...(args.code ? { code: args.code } : {}),
    silos: args.results.map((r) => ({
      silo: r.silo,
      outcome: r.outcome,
      attempts: r.attempts,
      included: false,
      // A silo whose update was fine is left out because the round was not aggregated: say so.
      reason: args.excluded?.get(r.silo) ?? r.reason ?? `the round was not aggregated: ${args.reason}`,
      update: r.outputUri ? { uri: r.outputUri } : undefined,
    })),
    globalIn: args.globalIn,
    strategy: args.strategy,
    metrics: {},
    globalMetrics: {},
    totalExamples: 0,
    timings: { roundStartedAt: args.roundStartedAt },
  };
}

export async function recordRoundFailure(services: FederationServices, input: RecordRoundFailureInput): Promise<{ manifestUri: string }> {
  const spec = await services.loadSpec(input.spec);
  const manifest = failedManifest({
    ...codeRecord(spec),
    federationId: input.federationId,
    round: input.round,
    spec: input.spec,
    sampled: input.sampled,
    results: input.results,
    globalIn: input.global,
    roundStartedAt: input.roundStartedAt,
    strategy: { name: spec.aggregation.strategy, options: strategyOptions(spec) },
    reason: input.reason,
  });
  const written = await services.store.putJson(roundManifestPath(input.federationId, input.round), manifest);
  return { manifestUri: written.uri };
}
