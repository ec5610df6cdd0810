/** Loads what the report shows (round manifests, optional baselines) from the model store. */
import { BlobNotFoundError } from "../models/storeErrors";
import { federationFolder, finalFilePath, MANIFEST_FILE } from "../models/storeLayout";
import { MODEL_CARD_JSON, type ModelCard } from "../federation/modelCard";
import type { RoundManifest } from "../federation/manifest";
import type { EvaluationManifest } from "../federation/evaluation";
import type { FederationServices } from "../federation/services";
import type { Baselines, ReportInput } from "./html";

export function baselinesPath(federationId: string): string {
  return `${federationFolder(federationId)}baselines.json`;
}

/** Every round manifest of a federation, in round order. */
export async function loadManifests(services: FederationServices, federationId: string): Promise<RoundManifest[]> {
  const prefix = `${federationFolder(federationId)}rounds/`;
  const blobs = await services.store.list(prefix);
  const paths = blobs.map((b) => b.path).filter((p) => p.endsWith(`/${MANIFEST_FILE}`));
  const manifests = await Promise.all(paths.map((p) => services.store.getJson<RoundManifest>(p)));
  return manifests.sort((a, b) => a.round - b.round);
}

/** Every evaluation manifest of a federation, in round order (empty when the spec evaluates nothing). */
export async function loadEvaluations(services: FederationServices, federationId: string): Promise<EvaluationManifest[]> {
  const blobs = await services.store.list(`${federationFolder(federationId)}evaluations/`);
  const paths = blobs.map((b) => b.path).filter((p) => p.endsWith(`/${MANIFEST_FILE}`));
  const manifests = await Promise.all(paths.map((p) => services.store.getJson<EvaluationManifest>(p)));
  return manifests.sort((a, b) => a.round - b.round);
}

export async function loadReportInput(services: FederationServices, federationId: string, runtimeStatus: string): Promise<ReportInput> {
  const [manifests, evaluations] = await Promise.all([loadManifests(services, federationId), loadEvaluations(services, federationId)]);
  let baselines: Baselines | undefined;
  try {
    baselines = await services.store.getJson<Baselines>(baselinesPath(federationId));
  } catch (err) {
    if (!(err instanceof BlobNotFoundError)) throw err;
  }
  let selection: ModelCard["selection"] | undefined;
  try {
    selection = (await services.store.getJson<ModelCard>(finalFilePath(federationId, MODEL_CARD_JSON))).selection;
  } catch (err) {
    if (!(err instanceof BlobNotFoundError)) throw err;
  }
  return { federationId, runtimeStatus, manifests, evaluations, selection, baselines };
}
