/**
 * Secure aggregation in a federation round (protocol: lib/secagg, docs/secure-aggregation.md).
 *
 * Per session (federation, round, attempt, roster): every sampled silo's training job gets its
 * session file; flo masks the trainer's output inside the silo, so only the masked update and the
 * encrypted shares are uploaded. After the deadline/quorum `fixSecureSplit` validates the uploads
 * and fixes survivors S and dropped D once for the session (a bad upload drops its silo with the
 * reason); an `unmask` job at each survivor reveals what removes the masks; `aggregateSecureRound`
 * rebuilds the self masks, removes every mask in one streaming pass and runs the strategy on the
 * decoded weighted mean. A session that cannot be unmasked is abandoned with nothing unmasked and
 * the orchestration re-runs the round under a new one.
 *
 * The orchestrator never holds one silo's update or example count: only masked vectors, encrypted
 * shares, reveals and the sum.
 *
 * Blob layout of a session: federations/<id>/rounds/<r>/secagg/s<attempt>/
 *   session/<silo>.json          the session file each silo's jobs read
 *   updates/<silo>/              a training job's output: masked.safetensors, shares.json
 *   split.json                   S and D, written once (create-only)
 *   unmask/split.json, unmask/shares-<index>.json   what the unmask jobs read
 *   reveals/<silo>/reveal.json   an unmask job's output
 *   sum/model.safetensors        the global model plus the unmasked weighted mean update
 */
import { azureMlCodeOf } from "../compute/azureml/code";
import * as path from "node:path";
import type { FederationSpec, SiloSpec } from "../spec";
import type { SecureAggregationConfig } from "../spec/schema";
import { blobUri, MODEL_FILE, roundFolder } from "../models/storeLayout";
import { BlobExistsError, BlobNotFoundError } from "../models/storeErrors";
import { readSafetensorsHeader, SafetensorsWriter, type SafetensorsHeader } from "../models/safetensors";
import { decodeFloats, dtypeSize, encodeFloats, isFloatDType, type FloatDType } from "../models/dtypes";
import type { ByteSource } from "../models/bytes";
import type { JobInput, JobKind, SecureMasking, SiloJobRequest } from "../compute/siloCompute";
import { SecAggError } from "../secagg/errors";
import { floatTensors } from "../secagg/mask";
import { streamLayout, validateMaskedUpload, type StreamTensor } from "../secagg/masked";
import { sumErrorBound } from "../secagg/quantize";
import type { Reveal } from "../secagg/reveal";
import { defaultThreshold } from "../secagg/session";
import { parseSharesFile } from "../secagg/shares";
import { loadSession, MASKED_FILE, PUBLISHED_METRICS_FILE, REVEAL_FILE, SHARES_FILE, SPLIT_FILE, type LoadedSession, type SessionDescription } from "../secagg/siloJob";
import { unmaskSum } from "../secagg/unmask";
import { sampleSilos } from "./decisions";
import { runPolicy } from "./lifecycle";
import type { FederationServices } from "./services";
import type { ModelRef, SecureAggregateInput, SecureJobRef, SecureSplitInput, SecureSplitOutput, SiloRoundResult } from "./types";

/** Job inputs of secure jobs. */
export const SECURE_INPUTS = { session: "secagg_session", key: "secagg_key", unmask: "secagg_unmask" } as const;

export function secureConfig(spec: FederationSpec): SecureAggregationConfig | undefined {
  return spec.aggregation.secureAggregation;
}

/** The round's roster: the silos sampled for it (deterministic, as the orchestration samples them). */
export function roundRoster(spec: FederationSpec, federationId: string, round: number): SiloSpec[] {
  const names = sampleSilos(
    federationId,
    round,
    spec.silos.map((s) => s.name),
    runPolicy(spec),
  );
  return names.map((name) => spec.silos.find((s) => s.name === name)!);
}

/** The session file's content (without `self`). With central DP every weight is 1 (flo's DP is equal-weight). */
export function sessionDescription(spec: FederationSpec, federationId: string, round: number, attempt: number): SessionDescription {
  const secure = secureConfig(spec);
  const clipping = spec.aggregation.clipping;
  if (!secure || clipping?.mode !== "fixed") throw new Error(`federation ${spec.name}: secure aggregation needs aggregation.secureAggregation and clipping {mode: fixed}`);
  const roster = roundRoster(spec, federationId, round);
  const equalWeights = spec.aggregation.dp !== undefined;
  return {
    federationId,
    round,
    attempt,
    threshold: secure.threshold ?? defaultThreshold(roster.length),
    quantization: { bits: secure.bits, clipNorm: clipping.norm, rounding: secure.rounding },
    silos: roster.map((s) => ({ id: s.name, publicKey: s.publicKey!, maxExamples: equalWeights ? 1 : s.maxExamples! })),
  };
}

/** Blob paths of one session. */
export function sessionPaths(federationId: string, round: number, attempt: number) {
  const folder = `${roundFolder(federationId, round)}secagg/s${attempt}/`;
  return {
    folder,
    sessionFolder: `${folder}session/`,
    sessionFileName: (silo: string) => `${silo}.json`,
    updateFolder: (silo: string) => `${folder}updates/${silo}/`,
    split: `${folder}${SPLIT_FILE}`,
    unmaskFolder: `${folder}unmask/`,
    revealFolder: (silo: string) => `${folder}reveals/${silo}/`,
    sum: `${folder}sum/${MODEL_FILE}`,
  };
}

/** Where a compute type takes the silo's secret key (checked by the spec). */
function keyLocation(silo: SiloSpec): string {
  const compute = silo.compute as { type: string; keyFile?: string; secretKey?: string };
  const location = compute.keyFile ?? compute.secretKey;
  if (!location) throw new Error(`silo ${silo.name}: secure aggregation needs a secret key input on its compute (keyFile or secretKey)`);
  return location;
}

function keyInput(silo: SiloSpec): JobInput {
  const location = keyLocation(silo);
  return silo.compute.type === "azureml" ? { kind: "asset", type: "uri_file", path: location, mode: "download" } : { kind: "literal", value: location };
}

/** Writes the silo's session file (idempotent: its content is deterministic). */
async function writeSessionFile(services: FederationServices, spec: FederationSpec, job: { federationId: string; round: number; silo: string; secure: SecureJobRef }): Promise<string> {
  const paths = sessionPaths(job.federationId, job.round, job.secure.attempt);
  const description: SessionDescription = { ...sessionDescription(spec, job.federationId, job.round, job.secure.attempt), self: job.silo };
  await services.store.putJson(`${paths.sessionFolder}${paths.sessionFileName(job.silo)}`, description);
  return blobUri(services.store.containerUrl, paths.sessionFolder);
}

/** The TypeScript silo entry point the unmask job of a local silo runs. */
const SILO_MAIN = path.join(__dirname, "..", "secagg", "siloMain.js");

/**
 * The unmask job's command (local silos): reveal for the session's fixed split, from the session
 * file, the split and the survivors' shares files flo put in the unmask folder.
 */
export const UNMASK_COMMAND =
  `node ${SILO_MAIN} reveal --session \${{inputs.${SECURE_INPUTS.session}}}/\${{inputs.silo}}.json --key \${{inputs.${SECURE_INPUTS.key}}}` +
  ` --split \${{inputs.${SECURE_INPUTS.unmask}}}/${SPLIT_FILE} --shares-dir \${{inputs.${SECURE_INPUTS.unmask}}} --out \${{outputs.reveal}}/${REVEAL_FILE}`;

/** Output of the Azure ML unmask job: its reveal records, in the silo's private datastore. */
export const SECURE_OUTPUTS = { records: "secagg_records" } as const;

/**
 * The unmask job's command on Azure ML silos: the Python package (shipped in the code folder)
 * reveals for the session's fixed split, recording what it revealed under `outputs.secagg_records`.
 */
export const AZUREML_UNMASK_COMMAND =
  `python -m flo_secagg reveal --session \${{inputs.${SECURE_INPUTS.session}}}/\${{inputs.silo}}.json --key \${{inputs.${SECURE_INPUTS.key}}}` +
  ` --split \${{inputs.${SECURE_INPUTS.unmask}}}/${SPLIT_FILE} --shares-dir \${{inputs.${SECURE_INPUTS.unmask}}}` +
  ` --record-dir \${{outputs.${SECURE_OUTPUTS.records}}} --out \${{outputs.reveal}}/${REVEAL_FILE}`;

/**
 * Where an Azure ML silo's unmask jobs keep their per-session reveal records: the datastore of the
 * silo's secret key (private to the silo: the orchestrator cannot read or reset them), under
 * `flo-secagg/<federation>/` (record files are named by session, so rounds never collide).
 */
export function revealRecordsUri(secretKey: string, federationId: string): string {
  const datastore = /^azureml:\/\/datastores\/([^/]+)\/paths\/./.exec(secretKey)?.[1];
  if (!datastore) throw new Error(`compute.secretKey: expected azureml://datastores/<private datastore>/paths/<file>, got ${JSON.stringify(secretKey)}`);
  return `azureml://datastores/${datastore}/paths/flo-secagg/${federationId}/`;
}

/**
 * What a secure job adds to its request: the session file (written now) and the silo's key input;
 * for training, the masking step and the masked output files; for unmasking, the unmask folder.
 */
export async function secureJobAdditions(
  services: FederationServices,
  spec: FederationSpec,
  job: { federationId: string; round: number; silo: string; kind: JobKind; secure: SecureJobRef },
): Promise<{ inputs: Record<string, JobInput>; request: Partial<Pick<SiloJobRequest, "command" | "code" | "environment" | "extraOutputs" | "outputFiles" | "secureAggregation">> }> {
  const silo = spec.silos.find((s) => s.name === job.silo)!;
  const paths = sessionPaths(job.federationId, job.round, job.secure.attempt);
  const sessionFolder = await writeSessionFile(services, spec, job);
  const inputs: Record<string, JobInput> = { [SECURE_INPUTS.session]: { kind: "folder", uri: sessionFolder }, [SECURE_INPUTS.key]: keyInput(silo) };
  if (job.kind === "unmask") {
    inputs[SECURE_INPUTS.unmask] = { kind: "folder", uri: blobUri(services.store.containerUrl, paths.unmaskFolder) };
    if (silo.compute.type !== "azureml") return { inputs, request: {} };
    // The Python package travels in the training code folder; the training environment has numpy and cryptography.
    return {
      inputs,
      request: {
        command: AZUREML_UNMASK_COMMAND,
        code: azureMlCodeOf(spec.training),
        environment: spec.training.environment,
        extraOutputs: { [SECURE_OUTPUTS.records]: revealRecordsUri(keyLocation(silo), job.federationId) },
      },
    };
  }
  const masking: SecureMasking = {
    sessionInput: SECURE_INPUTS.session,
    sessionFile: paths.sessionFileName(job.silo),
    keyInput: SECURE_INPUTS.key,
    publishMetrics: secureConfig(spec)!.publishSiloMetrics,
  };
  return { inputs, request: { outputFiles: [MASKED_FILE, SHARES_FILE], secureAggregation: masking } };
}

/** A job's output folder URI as a store path ending in "/". */
function folderPath(services: FederationServices, uri: string): string {
  return `${services.store.pathFromUri(uri).replace(/\/*$/, "")}/`;
}

/**
 * One file of a silo job's output folder: through the silo's compute when its outputs stay in the
 * silo's storage (Azure ML's exchange datastore), else from the model store.
 */
async function outputFile(services: FederationServices, spec: FederationSpec, job: { silo: string; outputUri: string }, file: string): Promise<ByteSource> {
  const silo = spec.silos.find((s) => s.name === job.silo);
  if (!silo) throw new Error(`federation ${spec.name} has no silo ${JSON.stringify(job.silo)}`);
  const compute = services.computeFor(silo);
  if (compute.openOutputFile) return compute.openOutputFile(job.outputUri, file);
  return services.store.source(`${folderPath(services, job.outputUri)}${file}`);
}

async function outputJson(services: FederationServices, spec: FederationSpec, job: { silo: string; outputUri: string }, file: string): Promise<unknown> {
  const source = await outputFile(services, spec, job, file);
  const bytes = await source.read(0, await source.size());
  try {
    return JSON.parse(bytes.toString("utf8")) as unknown;
  } catch {
    throw new SecAggError("BAD_UPLOAD", `${job.silo}/${file}`, "expected JSON, got text that does not parse");
  }
}

interface StoredSplit extends SecureSplitOutput {
  /** The same split as roster indexes (what silos and lib/secagg use). */
  indexes: { survivors: number[]; dropped: number[] };
  /** Each survivor's training output folder (a model store or Azure ML datastore URI). */
  uploads: Record<string, string>;
}

async function globalLayout(services: FederationServices, global: ModelRef | undefined): Promise<{ header: SafetensorsHeader; source: ByteSource; layout: StreamTensor[] }> {
  if (!global) throw new Error("secure aggregation needs the round's global model (the spec's initialModel)");
  const source = services.store.source(services.store.pathFromUri(global.uri));
  const header = await readSafetensorsHeader(source);
  return { header, source, layout: streamLayout(floatTensors(header)) };
}

/**
 * Validates the succeeded silos' uploads and fixes S and D for the session, once: a split already
 * recorded for the session is returned as it is (a later upload changes nothing), so no silo can be
 * shown two rosters by flo. Not ok (nothing will be unmasked) when |S| < t or |S| < minSilos.
 */
export async function fixSecureSplit(services: FederationServices, input: SecureSplitInput): Promise<SecureSplitOutput> {
  const store = services.store;
  const spec = await services.loadSpec(input.spec);
  const paths = sessionPaths(input.federationId, input.round, input.secure.attempt);
  try {
    return await store.getJson<StoredSplit>(paths.split);
  } catch (err) {
    if (!(err instanceof BlobNotFoundError)) throw err;
    // not fixed yet
  }
  const session = loadSession(sessionDescription(spec, input.federationId, input.round, input.secure.attempt));
  const { layout } = await globalLayout(services, input.global);
  const survivors: { silo: string; index: number; shares: unknown; outputUri: string }[] = [];
  const droppedReasons: { silo: string; reason: string }[] = [];
  for (const entry of session.roster.silos) {
    const index = session.roster.indexOf(entry.id);
    const result = input.results.find((r) => r.silo === entry.id);
    if (!result || result.outcome !== "succeeded" || !result.outputUri) {
      droppedReasons.push({ silo: entry.id, reason: `no upload: ${result?.reason ?? result?.outcome ?? "not run"}` });
      continue;
    }
    const upload = { silo: entry.id, outputUri: result.outputUri };
    try {
      await validateMaskedUpload(await outputFile(services, spec, upload, MASKED_FILE), { session: session.session, sender: index, ringBits: session.plan.ringBits, layout });
      const shares = await outputJson(services, spec, upload, SHARES_FILE);
      parseSharesFile(shares, { session: session.session, sender: index, rosterSize: session.roster.silos.length, file: `${entry.id}/${SHARES_FILE}` });
      survivors.push({ silo: entry.id, index, shares, outputUri: result.outputUri });
    } catch (err) {
      droppedReasons.push({ silo: entry.id, reason: `bad upload: ${(err as Error).message}` });
    }
  }
  const sessionHex = session.session.toString("hex");
  const split: StoredSplit = {
    ok: true,
    survivors: survivors.map((s) => s.silo),
    dropped: droppedReasons.map((d) => d.silo),
    droppedReasons,
    session: sessionHex,
    indexes: { survivors: survivors.map((s) => s.index).sort((a, b) => a - b), dropped: droppedReasons.map((d) => session.roster.indexOf(d.silo)).sort((a, b) => a - b) },
    uploads: Object.fromEntries(survivors.map((s) => [s.silo, s.outputUri])),
  };
  if (survivors.length < session.threshold) {
    Object.assign(split, { ok: false, reason: `TOO_FEW_SURVIVORS: ${survivors.length} valid upload(s), the threshold is t = ${session.threshold}: nothing is unmasked under this session` });
  } else if (survivors.length < input.minSilos) {
    Object.assign(split, { ok: false, reason: `quorum not reached after validating the masked uploads: ${survivors.length} valid, policy.minSilos is ${input.minSilos}` });
  }
  if (split.ok) {
    // The unmask jobs' input first: the split record below is what makes the session's split final.
    for (const s of survivors) await store.putJson(`${paths.unmaskFolder}shares-${s.index}.json`, s.shares);
    await store.putJson(`${paths.unmaskFolder}${SPLIT_FILE}`, split.indexes);
  }
  try {
    await store.putJson(paths.split, split, { overwrite: false });
  } catch (err) {
    if (!(err instanceof BlobExistsError)) throw err;
    // A retried activity raced its first run: the recorded split stands.
    return store.getJson<StoredSplit>(paths.split);
  }
  return split;
}

/** What the manifest records about a secure round (never one silo's count or update). */
export interface SecureAggregationRecord {
  session: string;
  attempt: number;
  threshold: number;
  survivors: string[];
  dropped: { silo: string; reason: string }[];
  failedSessions: SecureAggregateInput["failedSessions"];
  quantization: { bits: number; ringBits: number; clipNorm: number; rounding: string; scale: number; totalMaxExamples: number };
  /** Sum of the survivors' clamped weights (what the mean divides by). */
  weightSum: number;
  /** Bound on |secure - plain| per coordinate of the weighted mean update (same clipping and weights). */
  errorBound: number;
  /** Unmask jobs that failed (recovered from the other survivors' shares). */
  unmaskFailed: string[];
  /** Per-silo metrics are in the manifest only when the spec opted in. */
  siloMetricsPublished: boolean;
}

function parseReveal(value: unknown, expected: { session: string; revealer: number }): Reveal {
  const reveal = value as Reveal;
  if (
    typeof reveal !== "object" ||
    reveal === null ||
    reveal.session !== expected.session ||
    reveal.revealer !== expected.revealer ||
    !Array.isArray(reveal.pairwiseSeeds) ||
    !Array.isArray(reveal.selfShares)
  ) {
    throw new SecAggError("BAD_UPLOAD", REVEAL_FILE, `expected a reveal of silo ${expected.revealer} for session ${expected.session.slice(0, 16)}…`);
  }
  return reveal;
}

/**
 * Unmasks the session's sum into `sum/model.safetensors`: the global model's float tensors plus the
 * weighted mean update (sum / weight sum), its integer tensors copied from the global model (they
 * cannot come from one silo's update any more). Throws SecAggError (nothing unmasked) when the
 * reveals cannot remove the masks.
 */
export async function unmaskSession(
  services: FederationServices,
  options: { spec: FederationSpec; federationId: string; round: number; global?: ModelRef; secure: SecureAggregateInput },
): Promise<{ model: ModelRef; record: SecureAggregationRecord; session: LoadedSession }> {
  const store = services.store;
  const { secure, split } = { secure: options.secure.secure, split: options.secure.split as StoredSplit };
  const session = loadSession(sessionDescription(options.spec, options.federationId, options.round, secure.attempt));
  const sessionHex = session.session.toString("hex");
  if (split.session !== sessionHex) throw new SecAggError("BAD_UPLOAD", "split.session", `expected ${sessionHex}, got ${split.session}`);
  const paths = sessionPaths(options.federationId, options.round, secure.attempt);
  const { header, source: globalSource } = await globalLayout(services, options.global);

  const reveals: Reveal[] = [];
  const unmaskFailed: string[] = [];
  options.secure.unmask.forEach((r) => {
    if (r.outcome !== "succeeded" || !r.outputUri) unmaskFailed.push(r.silo);
  });
  for (const r of options.secure.unmask) {
    if (r.outcome !== "succeeded" || !r.outputUri) continue;
    if (!split.survivors.includes(r.silo)) throw new SecAggError("BAD_UPLOAD", `reveals[${r.silo}]`, "not a survivor of this session: nothing from it is used");
    try {
      reveals.push(parseReveal(await outputJson(services, options.spec, { silo: r.silo, outputUri: r.outputUri }, REVEAL_FILE), { session: sessionHex, revealer: session.roster.indexOf(r.silo) }));
    } catch (err) {
      if (err instanceof SecAggError) unmaskFailed.push(r.silo);
      else throw err;
    }
  }
  const masked = new Map<number, ByteSource>();
  for (const silo of split.survivors) {
    // Splits recorded before uploads were: every upload was in the model store at its session folder.
    const outputUri = split.uploads?.[silo] ?? blobUri(store.containerUrl, paths.updateFolder(silo));
    masked.set(session.roster.indexOf(silo), await outputFile(services, options.spec, { silo, outputUri }, MASKED_FILE));
  }

  // Output order is the writer's (sorted names); float tensors are unmasked in that order.
  const writer = new SafetensorsWriter(
    store.sink(paths.sum),
    header.tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
  );
  const streamByName = new Map(streamLayout(floatTensors(header)).map((t) => [t.name, t]));
  const writeOrder = writer.layout.tensors.map((t) => t.name);
  let next = 0;
  const copyIntegerTensorsUntil = async (name: string | undefined) => {
    while (next < writeOrder.length && writeOrder[next] !== name) {
      const entry = header.byName.get(writeOrder[next])!;
      if (isFloatDType(entry.dtype) && entry.end === entry.begin) {
        // An empty float tensor has no chunk to unmask.
        await writer.write(entry.name, new Uint8Array(0));
        next++;
        continue;
      }
      if (isFloatDType(entry.dtype)) throw new Error(`unmasking wrote tensor ${name ?? "(end)"} before float tensor ${entry.name}`);
      await writer.write(entry.name, await globalSource.read(header.dataStart + entry.begin, entry.end - entry.begin));
      next++;
    }
  };
  let result;
  try {
    result = await unmaskSum({
      roster: session.roster,
      session: session.session,
      threshold: session.threshold,
      plan: session.plan,
      split: split.indexes,
      masked,
      reveals,
      layout: writeOrder.filter((name) => streamByName.has(name)).map((name) => streamByName.get(name)!),
      onChunk: async ({ tensor, start, sum, weightSum }) => {
        if (start === 0) {
          await copyIntegerTensorsUntil(tensor.name);
          next++;
        }
        const entry = header.byName.get(tensor.name)!;
        const size = dtypeSize(entry.dtype);
        const global = decodeFloats(await globalSource.read(header.dataStart + entry.begin + start * size, sum.length * size), entry.dtype as FloatDType);
        const mean = new Float64Array(sum.length);
        for (let i = 0; i < sum.length; i++) mean[i] = global[i] + sum[i] / weightSum;
        await writer.write(tensor.name, encodeFloats(mean, entry.dtype as FloatDType));
      },
    });
    await copyIntegerTensorsUntil(undefined);
  } catch (err) {
    await writer.abort().catch(() => undefined);
    throw err;
  }
  const written = await writer.commit();
  const secureConfigOfSpec = secureConfig(options.spec)!;
  const record: SecureAggregationRecord = {
    session: sessionHex,
    attempt: secure.attempt,
    threshold: session.threshold,
    survivors: split.survivors,
    dropped: split.droppedReasons,
    failedSessions: options.secure.failedSessions,
    quantization: {
      bits: session.plan.bits,
      ringBits: session.plan.ringBits,
      clipNorm: session.plan.clipNorm,
      rounding: session.rounding,
      scale: session.plan.scale,
      totalMaxExamples: session.plan.totalMaxExamples,
    },
    weightSum: result.weightSum,
    errorBound: sumErrorBound(session.plan, result.survivors.length, session.rounding) / result.weightSum,
    unmaskFailed: [...new Set(unmaskFailed)].sort(),
    siloMetricsPublished: secureConfigOfSpec.publishSiloMetrics,
  };
  return { model: { uri: written.uri, sha256: written.sha256, size: written.size }, record, session };
}

/** The finite numbers of a silo-written metrics object (anything else is dropped). */
function finiteNumbers(value: unknown): Record<string, number> | undefined {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return undefined;
  return Object.fromEntries(Object.entries(value as Record<string, unknown>).filter((e): e is [string, number] => typeof e[1] === "number" && Number.isFinite(e[1])));
}

/** A survivor's published metrics (only when the spec opted in), else undefined. */
export async function publishedMetrics(
  services: FederationServices,
  spec: FederationSpec,
  result: SiloRoundResult | undefined,
): Promise<{ metrics?: Record<string, number>; globalMetrics?: Record<string, number> }> {
  if (!secureConfig(spec)?.publishSiloMetrics || !result?.outputUri) return {};
  try {
    const published = (await outputJson(services, spec, { silo: result.silo, outputUri: result.outputUri }, PUBLISHED_METRICS_FILE)) as { metrics?: unknown; global_metrics?: unknown };
    return { metrics: finiteNumbers(published.metrics), globalMetrics: finiteNumbers(published.global_metrics) };
  } catch {
    return {};
  }
}
