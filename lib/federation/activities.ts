/**
 * The federation's activities: the I/O the orchestrations delegate (submit/poll/cancel silo jobs,
 * aggregate a round, record a failed round, notify partners). Registered by
 * functions/activities.ts; each takes and returns small JSON.
 */
import { jobName as deterministicJobName, siloJobInputs } from "../spec";
import type { FederationSpec, SiloSpec } from "../spec";
import type { JobInput, SiloJobStatus } from "../compute/siloCompute";
import { floJobTags } from "../compute/local";
import { blobUri, jobLogPath, roundGlobalPath, roundManifestPath, roundStatePath, siloUpdateFolder } from "../models/storeLayout";
import type { ByteSource } from "../models/bytes";
import { aggregateUpdates, AggregationError, createStrategy } from "../aggregation";
import type { Json } from "../aggregation/strategy";
import { checkpointPath } from "./lifecycle";
import { MANIFEST_SCHEMA, weightedMeans, type FederationCheckpoint, type RoundManifest, type SiloManifestEntry } from "./manifest";
import type { FederationServices } from "./services";
import type {
  AggregateRoundInput,
  AggregateRoundOutput,
  JobRefInput,
  ModelRef,
  RecordRoundFailureInput,
  RoundSummary,
  SiloRoundResult,
  SubmitJobInput,
} from "./types";

function siloOf(spec: FederationSpec, name: string): SiloSpec {
  const silo = spec.silos.find((s) => s.name === name);
  if (!silo) throw new Error(`federation ${spec.name} has no silo ${JSON.stringify(name)}`);
  return silo;
}

const folderOf = (modelUri: string) => modelUri.slice(0, modelUri.lastIndexOf("/") + 1);

export async function submitSiloJob(services: FederationServices, input: SubmitJobInput): Promise<SiloJobStatus> {
  const spec = await services.loadSpec(input.spec);
  const silo = siloOf(spec, input.silo);
  const name = deterministicJobName(input.federationId, input.round, input.silo, input.attempt);
  const literals = siloJobInputs(spec, input.silo, { federationId: input.federationId, round: input.round });
  const inputs: Record<string, JobInput> = {};
  for (const [k, v] of Object.entries(literals)) inputs[k] = { kind: "literal", value: v };
  if (input.global) inputs.global_model = { kind: "folder", uri: folderOf(input.global.uri) };
  const store = services.store;
  return services.computeFor(silo).submit({
    federationId: input.federationId,
    round: input.round,
    silo: input.silo,
    jobName: name,
    command: spec.training.command,
    inputs,
    outputUri: blobUri(store.containerUrl, siloUpdateFolder(input.federationId, input.round, input.silo)),
    logUri: store.uri(jobLogPath(input.federationId, input.round, input.silo, `${name}.log`)),
    code: spec.training.code,
    environment: spec.training.environment,
    timeoutSeconds: spec.policy.roundTimeoutSeconds,
    tags: floJobTags(input.federationId, input.round, input.silo),
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

/** The spec's aggregation block as strategy options (everything but the strategy name). */
function strategyOptions(spec: FederationSpec): Json {
  const { strategy: _name, ...options } = spec.aggregation as Record<string, unknown>;
  return JSON.parse(JSON.stringify(options)) as Json;
}

interface StoredStrategyState {
  json: Json;
  tensors: Record<string, ModelRef>;
}

interface OpenedUpdate {
  silo: string;
  model?: ByteSource;
  metrics?: unknown;
  globalMetrics?: Record<string, number>;
  reason?: string;
  uri: string;
}

async function openUpdate(services: FederationServices, spec: FederationSpec, result: SiloRoundResult): Promise<OpenedUpdate> {
  const uri = result.outputUri!;
  try {
    const output = await services.computeFor(siloOf(spec, result.silo)).openOutput(uri);
    let metrics: unknown = output.metrics;
    if (isByteSource(output.metrics)) {
      const size = await output.metrics.size();
      try {
        metrics = JSON.parse((await output.metrics.read(0, Math.min(size, 1_000_000))).toString("utf8"));
      } catch {
        metrics = output.metrics; // the engine re-reads it and records why it is unusable
      }
    }
    const globalMetrics = numericRecord((metrics as { global_metrics?: unknown } | undefined)?.global_metrics);
    return { silo: result.silo, model: output.model, metrics, globalMetrics, uri };
  } catch (err) {
    return { silo: result.silo, reason: `cannot open the update at ${uri}: ${(err as Error).message}`, uri };
  }
}

export async function aggregateRound(services: FederationServices, input: AggregateRoundInput): Promise<AggregateRoundOutput> {
  const spec = await services.loadSpec(input.spec);
  const store = services.store;
  const aggregationStartedAt = new Date();
  const succeeded = input.results.filter((r) => r.outcome === "succeeded" && r.outputUri);
  const opened = await Promise.all(succeeded.map((r) => openUpdate(services, spec, r)));
  const readable = opened.filter((o) => o.model);

  const strategy = createStrategy(spec.aggregation.strategy, strategyOptions(spec));
  let stateIn: StoredStrategyState | undefined;
  if (input.strategyState) stateIn = await store.getJson<StoredStrategyState>(store.pathFromUri(input.strategyState.uri));
  const base = {
    federationId: input.federationId,
    round: input.round,
    spec: input.spec,
    sampled: input.sampled,
    globalIn: input.global,
    roundStartedAt: input.roundStartedAt,
    strategy: { name: strategy.name, options: strategy.options, stateIn: input.strategyState },
  };

  let result;
  try {
    result = await aggregateUpdates({
      updates: readable.map((o) => ({ id: o.silo, model: o.model!, metrics: o.metrics })),
      output: () => store.sink(roundGlobalPath(input.federationId, input.round + 1)),
      strategy,
      state: stateIn ? { json: stateIn.json, tensors: Object.fromEntries(Object.entries(stateIn.tensors).map(([k, ref]) => [k, store.source(store.pathFromUri(ref.uri))])) } : undefined,
      stateOutput: (name) => store.sink(roundStatePath(input.federationId, input.round, `${name}.safetensors`)),
      global: input.global ? store.source(store.pathFromUri(input.global.uri)) : undefined,
      minUpdates: input.minSilos,
    });
  } catch (err) {
    if (!(err instanceof AggregationError) || err.code !== "TOO_FEW_UPDATES") throw err;
    const excluded = new Map(err.excluded.map((e) => [e.id, e.reason]));
    for (const o of opened) if (o.reason) excluded.set(o.silo, o.reason);
    const reason = `quorum not reached after validating updates: ${readable.length - err.excluded.length} valid update(s), policy.minSilos is ${input.minSilos}`;
    const manifest = failedManifest({ ...base, results: input.results, reason, excluded });
    const written = await store.putJson(roundManifestPath(input.federationId, input.round), manifest);
    return { ok: false, reason, manifestUri: written.uri };
  }
  const aggregatedAt = new Date();

  const includedById = new Map(result.included.map((u) => [u.id, u]));
  const excludedById = new Map(result.excluded.map((e) => [e.id, e.reason]));
  for (const o of opened) if (o.reason) excludedById.set(o.silo, o.reason);
  const openedById = new Map(opened.map((o) => [o.silo, o]));
  const silos: SiloManifestEntry[] = input.results.map((r) => {
    const included = includedById.get(r.silo);
    const o = openedById.get(r.silo);
    const metrics = numericRecord((o?.metrics as { metrics?: unknown } | undefined)?.metrics);
    return {
      silo: r.silo,
      outcome: r.outcome,
      attempts: r.attempts,
      included: Boolean(included),
      reason: included ? undefined : (excludedById.get(r.silo) ?? r.reason),
      update: o ? { uri: o.uri, sha256: included?.sha256 } : undefined,
      numExamples: included?.numExamples,
      metrics,
      globalMetrics: o?.globalMetrics,
    };
  });
  const globalMetrics = weightedMeans(silos.filter((s) => s.included).map((s) => ({ numExamples: s.numExamples ?? 0, values: s.globalMetrics })));

  const stateTensors: Record<string, ModelRef> = {};
  for (const [name, w] of Object.entries(result.state.tensors)) stateTensors[name] = { uri: w.uri, sha256: w.sha256, size: w.size };
  const stateWritten = await store.putJson(roundStatePath(input.federationId, input.round, "strategy.json"), { json: result.state.json, tensors: stateTensors } satisfies StoredStrategyState);
  const strategyState: ModelRef = { uri: stateWritten.uri, sha256: stateWritten.sha256 };
  const model: ModelRef = { uri: result.output.uri, sha256: result.output.sha256, size: result.output.size };

  const manifest: RoundManifest = {
    schema: MANIFEST_SCHEMA,
    federationId: input.federationId,
    round: input.round,
    status: "aggregated",
    spec: input.spec,
    sampled: input.sampled,
    silos,
    globalIn: input.global,
    globalOut: model,
    strategy: { ...base.strategy, stateOut: strategyState, report: result.state.report },
    metrics: result.metrics,
    globalMetrics,
    totalExamples: result.totalExamples,
    timings: {
      roundStartedAt: input.roundStartedAt,
      aggregationStartedAt: aggregationStartedAt.toISOString(),
      aggregatedAt: aggregatedAt.toISOString(),
      aggregationSeconds: (aggregatedAt.getTime() - aggregationStartedAt.getTime()) / 1000,
    },
  };
  const manifestWritten = await store.putJson(roundManifestPath(input.federationId, input.round), manifest);
  const summary: RoundSummary = {
    round: input.round,
    model,
    manifestUri: manifestWritten.uri,
    included: silos.filter((s) => s.included).map((s) => s.silo),
    excluded: silos.filter((s) => !s.included).map((s) => ({ silo: s.silo, reason: s.reason ?? s.outcome })),
    metrics: result.metrics,
    globalMetrics,
    startedAt: input.roundStartedAt,
    aggregatedAt: aggregatedAt.toISOString(),
  };
  const previous = await readHistory(services, input.federationId, input.round);
  const checkpoint: FederationCheckpoint = {
    schema: "flo.checkpoint/1",
    federationId: input.federationId,
    round: input.round,
    model,
    strategyState,
    history: [...previous, summary],
    manifestUri: manifestWritten.uri,
  };
  await store.putJson(checkpointPath(input.federationId), checkpoint);
  return { ok: true, summary, strategyState };
}

/** The history of rounds before `round`, from the checkpoint (empty before the first). */
async function readHistory(services: FederationServices, federationId: string, round: number): Promise<RoundSummary[]> {
  try {
    const cp = await services.store.getJson<FederationCheckpoint>(checkpointPath(federationId));
    return cp.history.filter((h) => h.round < round);
  } catch {
    return [];
  }
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
}): RoundManifest {
  return {
    schema: MANIFEST_SCHEMA,
    federationId: args.federationId,
    round: args.round,
    status: "failed",
    reason: args.reason,
    spec: args.spec,
    sampled: args.sampled,
    silos: args.results.map((r) => ({
      silo: r.silo,
      outcome: r.outcome,
      attempts: r.attempts,
      included: false,
      reason: args.excluded?.get(r.silo) ?? r.reason,
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

function numericRecord(value: unknown): Record<string, number> | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(value)) if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
  return out;
}

function isByteSource(value: unknown): value is ByteSource {
  return typeof value === "object" && value !== null && typeof (value as ByteSource).read === "function" && typeof (value as ByteSource).size === "function";
}

