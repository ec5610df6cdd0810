/**
 * flo's HTTP API behaviour, independent of the trigger wiring: start, list, inspect, cancel,
 * resume and report federations. Functions in functions/federationsApi.ts are thin adapters.
 */
import { preflightSpec } from "./preflight";
import { requireReachableCode, uploadedCodeRows } from "./codeApi";
import type { DurableClient, DurableOrchestrationStatus } from "durable-functions";
import { ApiError, problem, type ApiResponse } from "./problem";
import { sampleSilos, siloGroupInstanceId, siloGroups, siloInstanceId } from "./decisions";
import { RECENT_ROUNDS, roundDigest } from "./payloads";
import { Orchestrations } from "./types";
import type { FederationRunInput, FederationStatus, FederationSummary, RoundSummary, SiloRoundResult, SiloStatus } from "./types";
import type { EvaluationManifest } from "./evaluation";
import type { JobKind } from "../compute/siloCompute";
import type { FederationServices } from "./services";
import { checkpointPath, prepareFederation, readCheckpoint, requireEnabledCompute } from "./lifecycle";
import { SpecError } from "../spec/errors";

const RUNNING = new Set(["Running", "Pending", "ContinuedAsNew", "Suspended"]);
const FEDERATION_ID = /^[a-z0-9][a-z0-9-]{0,63}$/;
export const MAX_SPEC_BYTES = 1024 * 1024;

export interface StartRequest {
  body: string;
  contentType?: string;
  /** Optional explicit federation id (`?id=`); defaults to the spec's name. */
  id?: string;
  /** Origin of the API, for links (e.g. http://localhost:7071). */
  origin: string;
  /** `?dryRun=true`: run the preflight (`flo check`) instead of starting; 200 with its rows, 422 when a check fails. */
  dryRun?: boolean;
}

/** Runs an API operation, turning typed errors into problem responses. */
/**
 * Error codes of a dependency that did not answer (Node's socket errors, which the Azure SDKs keep as
 * `RestError.code`, and the SDKs' own send failure and storage's throttling answers).
 */
const UNAVAILABLE_CODES = new Set(["ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "EPIPE", "EHOSTUNREACH", "ENOTFOUND", "EAI_AGAIN", "REQUEST_SEND_ERROR", "ServerBusy", "OperationTimedOut"]);
/** Seconds a client should wait before retrying a 503. */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

/** Whether an error says storage or another dependency was unreachable: the same request may succeed later. */
export function isDependencyUnavailable(err: unknown, depth = 0): boolean {
  if (typeof err !== "object" || err === null || depth > 3) return false;
  const { code, statusCode, cause } = err as { code?: unknown; statusCode?: unknown; cause?: unknown };
  if (typeof code === "string" && UNAVAILABLE_CODES.has(code)) return true;
  if (statusCode === 503) return true;
  return isDependencyUnavailable(cause, depth + 1);
}

export async function handleApi(operation: () => Promise<ApiResponse>, options: { log?: (line: string) => void } = {}): Promise<ApiResponse> {
  try {
    return await operation();
  } catch (err) {
    if (err instanceof ApiError) return problem(err.status, err.message, err.extra);
    if (isDependencyUnavailable(err)) {
      // Nothing was started (or it was, and a retry finds it: 409): the client may simply retry.
      // The cause goes to the host's log: its addresses are not the caller's business.
      options.log?.(`answered 503: a dependency did not answer: ${(err as Error).message}`);
      const response = problem(503, `flo's storage did not answer; retry after ${UNAVAILABLE_RETRY_AFTER_SECONDS} s`);
      return { ...response, headers: { ...response.headers, "retry-after": String(UNAVAILABLE_RETRY_AFTER_SECONDS) } };
    }
    if (err instanceof SpecError) {
      return problem(400, err.message, {
        type: "https://flo.dev/problems/invalid-spec",
        title: "Invalid federation spec",
        errors: err.issues.map((i) => ({ path: i.path, expected: i.expected, got: i.got, message: i.message })),
      });
    }
    throw err;
  }
}

export function federationLinks(origin: string, id: string): Record<string, string> {
  const base = `${origin}/api/federations/${encodeURIComponent(id)}`;
  return { status: base, cancel: `${base}/cancel`, resume: `${base}/resume`, report: `${base}/report` };
}

export async function startFederation(client: DurableClient, services: FederationServices, request: StartRequest, now: Date = new Date()): Promise<ApiResponse> {
  if (Buffer.byteLength(request.body) > MAX_SPEC_BYTES) throw new ApiError(413, `the spec is ${Buffer.byteLength(request.body)} bytes; at most ${MAX_SPEC_BYTES} are accepted`);
  if (!request.body.trim()) throw new ApiError(400, "the request body is empty: expected a federation spec as JSON or YAML");
  const spec = services.parseSpec(request.body, { format: specFormat(request.contentType), source: "request body" });
  if (request.dryRun) {
    const preflight = await preflightSpec(spec, { computeFor: (silo) => services.computeFor(silo) });
    const checks = [...(await uploadedCodeRows(services, spec)), ...preflight.rows];
    const ok = checks.every((row) => row.result !== "fail");
    return { status: ok ? 200 : 422, body: { name: spec.name, dryRun: true, ok, checks } };
  }
  await requireReachableCode(services, spec);
  const id = request.id ?? spec.name;
  if (!FEDERATION_ID.test(id)) throw new ApiError(400, `query parameter id: expected ${FEDERATION_ID.source}, got ${JSON.stringify(id)}`);
  const existing = await findInstance(client, id);
  if (existing) {
    const detail = RUNNING.has(existing.runtimeStatus)
      ? `federation ${id} is already running (${existing.runtimeStatus})`
      : `federation ${id} already ran (${existing.runtimeStatus}); resume it with POST /api/federations/${id}/resume, or start a new run with ?id=<another id>`;
    throw new ApiError(409, detail, { federationId: id, runtimeStatus: existing.runtimeStatus });
  }
  const input = await prepareFederation(services, id, spec, now);
  await client.startNew(Orchestrations.federation, { instanceId: id, input });
  const links = federationLinks(request.origin, id);
  return {
    status: 202,
    headers: { location: links.status, "retry-after": "10" },
    body: { id, name: spec.name, rounds: spec.rounds, silos: input.silos, links },
  };
}

export async function listFederations(client: DurableClient, origin: string): Promise<ApiResponse> {
  const all = await client.getStatusAll();
  const federations = all
    .filter((s) => s.name === Orchestrations.federation)
    .map((s) => {
      const custom = s.customStatus as FederationStatus | undefined;
      return {
        id: s.instanceId,
        runtimeStatus: s.runtimeStatus,
        round: custom?.round,
        rounds: custom?.rounds,
        phase: custom?.phase,
        createdTime: s.createdTime,
        lastUpdatedTime: s.lastUpdatedTime,
        links: federationLinks(origin, s.instanceId),
      };
    })
    .sort((a, b) => String(b.createdTime).localeCompare(String(a.createdTime)));
  return { status: 200, body: { federations } };
}

/** At most this many silos' live states are fetched for one status request. */
const MAX_SILO_DETAILS = 200;

export async function getFederation(client: DurableClient, services: FederationServices, id: string, origin: string): Promise<ApiResponse> {
  const status = await requireInstance(client, id, { showInput: true });
  const runtimeStatus: string = status.runtimeStatus; // durable-functions types it as an enum of these same names
  const custom = status.customStatus as FederationStatus | undefined;
  const running = RUNNING.has(status.runtimeStatus);
  // The custom status holds counts only (its size is bounded): the silos come from the input's spec silos.
  const sampled = custom ? roundSilos(id, custom.round, status.input as FederationRunInput) : undefined;
  // While evaluating, every silo runs an evaluation job: show those.
  const kind = phaseKind(custom);
  const active = kind === "evaluate" ? (status.input as FederationRunInput | undefined)?.silos : sampled;
  let silos: (SiloStatus | SiloRoundResult | { silo: string; state: string })[] | undefined;
  if (custom && active && running && active.length <= MAX_SILO_DETAILS) {
    silos = await Promise.all(
      active.map(async (silo) => {
        const sub = await findInstance(client, siloInstanceId(id, custom.round, silo, kind));
        if (!sub) return { silo, state: "pending" };
        if ((sub.runtimeStatus as string) === "Completed") return sub.output as SiloRoundResult;
        return (sub.customStatus as SiloStatus | undefined) ?? { silo, state: "submitting" };
      }),
    );
  }
  return {
    status: 200,
    body: {
      id,
      runtimeStatus: status.runtimeStatus,
      createdTime: status.createdTime,
      lastUpdatedTime: status.lastUpdatedTime,
      round: custom?.round,
      rounds: custom?.rounds,
      phase: runtimeStatus === "Failed" ? "failed" : runtimeStatus === "Terminated" ? "canceled" : custom?.phase,
      sampled,
      deadline: custom?.deadline,
      silos,
      history: await roundHistory(services, id, custom?.round),
      finalEvaluation: await finalEvaluation(services, runtimeStatus === "Completed" ? (status.output as FederationSummary | undefined) : undefined, custom),
      output: runtimeStatus === "Completed" ? status.output : undefined,
      failure: runtimeStatus === "Failed" || runtimeStatus === "Terminated" ? status.output : undefined,
      links: federationLinks(origin, id),
    },
  };
}

/**
 * The final evaluation with every silo's metrics, from its manifest: of the completed federation's
 * output, else of the custom status when the latest evaluation is the final one (a failed one too).
 */
async function finalEvaluation(services: FederationServices, output: FederationSummary | undefined, custom: FederationStatus | undefined): Promise<unknown> {
  const digest = output?.finalEvaluation ?? (custom?.evaluation?.final ? custom.evaluation : undefined);
  if (!digest) return undefined;
  const manifest = await services.store.getJson<EvaluationManifest>(services.store.pathFromUri(digest.manifestUri));
  return {
    ...digest,
    metrics: manifest.metrics,
    totalExamples: manifest.totalExamples,
    silos: manifest.silos.map(({ silo, included, reason, numExamples, metrics }) => ({ silo, included, ...(reason ? { reason } : {}), numExamples, metrics })),
  };
}

/** The kind of job the federation's phase runs: evaluation jobs while evaluating, else training. */
function phaseKind(custom: FederationStatus | undefined): JobKind {
  return custom?.phase === "evaluating" ? "evaluate" : "train";
}

/** The silos a round sampled, recomputed like the orchestrator does (undefined without the run's input). */
function roundSilos(id: string, round: number, run: FederationRunInput | null | undefined): string[] | undefined {
  return run?.silos && run.policy ? sampleSilos(id, round, run.silos, run.policy) : undefined;
}

/** Every completed round's summary up to `round`, from the checkpoint blob (empty before the first). */
async function roundHistory(services: FederationServices, id: string, round: number | undefined): Promise<RoundSummary[]> {
  const checkpoint = await readCheckpoint(services, id);
  return (checkpoint?.history ?? []).filter((h) => round === undefined || h.round <= round);
}

export async function cancelFederation(client: DurableClient, services: FederationServices, id: string, reason = "canceled by request"): Promise<ApiResponse> {
  const status = await requireInstance(client, id, { showInput: true });
  if (!RUNNING.has(status.runtimeStatus)) throw new ApiError(409, `federation ${id} is not running (${status.runtimeStatus})`, { runtimeStatus: status.runtimeStatus });
  const custom = status.customStatus as FederationStatus | undefined;
  const run = status.input as FederationRunInput;
  const canceledJobs: string[] = [];
  // The federation first: a terminated sub-orchestration would otherwise fail it before it is terminated.
  await client.terminate(id, reason);
  const kind = phaseKind(custom);
  const sampled = custom ? (kind === "evaluate" ? run.silos : roundSilos(id, custom.round, run)) : undefined;
  if (custom && sampled) {
    const spec = await services.loadSpec(run.spec);
    // Then the groups, so a terminated silo doesn't fail its group before the group is terminated.
    await Promise.all(
      siloGroups(sampled).map(async (_, group) => {
        const groupId = siloGroupInstanceId(id, custom.round, group, kind);
        const sub = await findInstance(client, groupId);
        if (sub && RUNNING.has(sub.runtimeStatus)) await client.terminate(groupId, reason);
      }),
    );
    await Promise.all(
      sampled.map(async (silo) => {
        const subId = siloInstanceId(id, custom.round, silo, kind);
        const sub = await findInstance(client, subId);
        if (!sub || !RUNNING.has(sub.runtimeStatus)) return;
        await client.terminate(subId, reason);
        const jobName = (sub.customStatus as SiloStatus | undefined)?.jobName;
        const siloSpec = spec.silos.find((s) => s.name === silo);
        if (jobName && siloSpec) {
          await services.computeFor(siloSpec).cancel(jobName);
          canceledJobs.push(jobName);
        }
      }),
    );
  }
  return { status: 202, body: { id, canceledJobs: canceledJobs.sort(), reason } };
}

export async function resumeFederation(client: DurableClient, services: FederationServices, id: string, origin: string, now: Date = new Date()): Promise<ApiResponse> {
  const status = await requireInstance(client, id, { showInput: true });
  if (RUNNING.has(status.runtimeStatus)) throw new ApiError(409, `federation ${id} is still running (${status.runtimeStatus}); nothing to resume`);
  if ((status.runtimeStatus as string) === "Completed") throw new ApiError(409, `federation ${id} completed; nothing to resume`);
  // Inputs of runs started before the history moved to the checkpoint still carry it: dropped.
  const { history: _carriedHistory, ...failed } = status.input as FederationRunInput & { history?: unknown };
  requireEnabledCompute(services, await services.loadSpec(failed.spec));
  const checkpoint = await readCheckpoint(services, id);
  if (!checkpoint && failed.round !== 1) throw new ApiError(409, `federation ${id} reached round ${failed.round} but has no checkpoint to resume from`);
  // Without a checkpoint the first round failed: its input is the start of the federation.
  const next: FederationRunInput = checkpoint
    ? {
        ...failed,
        round: checkpoint.round + 1,
        global: checkpoint.model,
        strategyState: checkpoint.strategyState,
        recent: checkpoint.history.slice(-RECENT_ROUNDS).map(roundDigest),
        checkpointUri: services.store.uri(checkpointPath(id)),
        resumedFromRound: checkpoint.round,
      }
    : { ...failed, recent: failed.recent ?? [] };
  // With every round checkpointed, the run failed after training (final evaluation, model card,
  // registration): the resumed run (round rounds + 1) does that part again.
  next.generation = (failed.generation ?? 0) + 1;
  next.startedAt = now.toISOString();
  await client.startNew(Orchestrations.federation, { instanceId: id, input: next });
  const links = federationLinks(origin, id);
  return { status: 202, headers: { location: links.status }, body: { id, resumedFromRound: checkpoint?.round ?? 0, round: next.round, links } };
}

function specFormat(contentType: string | undefined): "yaml" | "json" | "auto" {
  const type = (contentType ?? "").split(";")[0].trim().toLowerCase();
  if (type === "application/json") return "json";
  if (type.includes("yaml")) return "yaml";
  return "auto";
}

/** getStatus, with "no such instance" as undefined instead of an error. */
export async function findInstance(client: DurableClient, id: string, options: { showInput?: boolean } = {}): Promise<DurableOrchestrationStatus | undefined> {
  try {
    return await client.getStatus(id, { showInput: options.showInput ?? false });
  } catch (err) {
    if (/HTTP 404/.test((err as Error).message)) return undefined;
    throw err;
  }
}

async function requireInstance(client: DurableClient, id: string, options: { showInput?: boolean } = {}): Promise<DurableOrchestrationStatus> {
  const status = await findInstance(client, id, options);
  if (!status || status.name !== Orchestrations.federation) throw new ApiError(404, `no federation with id ${JSON.stringify(id)}`);
  return status;
}
