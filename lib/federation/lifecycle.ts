/** Starting a federation and finding its checkpoint: the I/O behind the HTTP API's start and resume. */
import { federationFolder, roundGlobalPath } from "../models/storeLayout";
import { FileBytesError, fileSource } from "../models/fileBytes";
import { readSafetensorsHeader, SafetensorsError } from "../models/safetensors";
import { BlobNotFoundError } from "../models/storeErrors";
import type { FederationSpec } from "../spec";
import { ApiError } from "./problem";
import type { FederationCheckpoint } from "./manifest";
import type { FederationRunInput, ModelRef, RunPolicy } from "./types";
import type { FederationServices } from "./services";
import { confineLocalPath, LocalPathError } from "../storage/localPaths";
import { ComputeDisabledError, computeNeedsOptIn } from "../compute/backends";

/** Default interval at which a waiting silo polls its job when no completion event arrives. */
export const DEFAULT_STATUS_POLL_SECONDS = 60;

export function specPath(federationId: string): string {
  return `${federationFolder(federationId)}spec.json`;
}

export function checkpointPath(federationId: string): string {
  return `${federationFolder(federationId)}checkpoint.json`;
}

export function runPolicy(spec: FederationSpec): RunPolicy {
  return {
    minSilos: spec.policy.minSilos,
    sampleFraction: spec.policy.sampleFraction,
    roundTimeoutSeconds: spec.policy.roundTimeoutSeconds,
    jobRetries: spec.policy.jobRetries,
    statusPollSeconds: Math.min(DEFAULT_STATUS_POLL_SECONDS, Math.max(1, Math.floor(spec.policy.roundTimeoutSeconds / 10))),
  };
}

/**
 * Stores the spec (and the initial model, if any) and returns round 1's orchestration input.
 * The spec is stored as parsed JSON, so every activity sees exactly what was validated.
 */
export async function prepareFederation(services: FederationServices, federationId: string, spec: FederationSpec, now: Date): Promise<FederationRunInput> {
  requireEnabledCompute(services, spec);
  const stored = await services.store.putJson(specPath(federationId), spec);
  let global: ModelRef | undefined;
  if (spec.initialModel) global = await importInitialModel(services, federationId, spec.initialModel);
  return {
    federationId,
    spec: { uri: stored.uri, sha256: stored.sha256, size: stored.size },
    rounds: spec.rounds,
    round: 1,
    silos: spec.silos.map((s) => s.name),
    policy: runPolicy(spec),
    global,
    recent: [],
    startedAt: now.toISOString(),
    ...(spec.aggregation.secureAggregation ? { secure: true } : {}),
    ...(spec.evaluation ? { evaluation: { every: spec.evaluation.every, minSilos: spec.evaluation.minSilos } } : {}),
    ...(spec.registration ? { registers: true } : {}),
  };
}

/**
 * Every silo's compute runs on this host (a 400 naming the silo's field and the setting otherwise):
 * checked wherever a federation starts or resumes, before anything is stored or submitted. The
 * spec parser does not check it, so offline tools (`flo run`'s preflight) read any spec.
 */
export function requireEnabledCompute(services: FederationServices, spec: FederationSpec): void {
  spec.silos.forEach((silo, index) => {
    if (!computeNeedsOptIn(silo.compute.type)) return;
    try {
      // The compute lookup itself refuses a disabled backend.
      services.computeFor(silo);
    } catch (err) {
      if (!(err instanceof ComputeDisabledError)) throw err;
      const path = `silos[${index}].compute.type`;
      throw new ApiError(400, `${path}: ${err.message}`, {
        type: "https://flo.dev/problems/compute-disabled",
        title: "Compute type disabled on this host",
        setting: err.setting,
        errors: [
          {
            path,
            expected: `a compute type this host runs (${err.setting}=${err.enablingValue} enables ${JSON.stringify(err.computeType)})`,
            got: JSON.stringify(err.computeType),
            message: err.message,
          },
        ],
      });
    }
  });
}

/** Copies the initial model into round 1's global slot after checking it is a readable safetensors file. */
async function importInitialModel(services: FederationServices, federationId: string, location: string): Promise<ModelRef> {
  const target = roundGlobalPath(federationId, 1);
  const isUri = /^https?:\/\//i.test(location);
  if (/^azureml:\/\//i.test(location)) throw new ApiError(400, `initialModel: azureml:// locations are not supported for the initial model yet; got ${location}`);
  // Relative local paths in specs resolve against the federation's base folder, like silo inputs,
  // and may not leave it (or the folders the settings allow).
  let localFile = "";
  if (!isUri) {
    try {
      localFile = confineLocalPath(location, services.localPathRoots, "initialModel");
    } catch (err) {
      if (err instanceof LocalPathError) throw new ApiError(400, err.message);
      throw err;
    }
  }
  try {
    const source = isUri ? services.store.source(services.store.pathFromUri(location)) : fileSource(localFile);
    await readSafetensorsHeader(source);
    await source.close?.();
  } catch (err) {
    if (err instanceof SafetensorsError) throw new ApiError(400, `initialModel: ${err.message}`);
    if (err instanceof FileBytesError) throw new ApiError(400, `initialModel: ${err.message}`);
    // The error code only: a system message may quote more than the rule that was broken.
    throw new ApiError(400, `initialModel: cannot read ${location} (${(err as NodeJS.ErrnoException).code ?? "unreadable"})`);
  }
  const written = isUri ? await services.store.putBytes(target, await services.store.getBytes(services.store.pathFromUri(location))) : await services.store.uploadFile(localFile, target);
  return { uri: written.uri, sha256: written.sha256, size: written.size };
}

export async function readCheckpoint(services: FederationServices, federationId: string): Promise<FederationCheckpoint | undefined> {
  try {
    return await services.store.getJson<FederationCheckpoint>(checkpointPath(federationId));
  } catch (err) {
    if (err instanceof BlobNotFoundError) return undefined;
    throw err;
  }
}
