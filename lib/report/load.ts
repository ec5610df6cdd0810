/** Loads what the report shows (round manifests, optional baselines) from the model store. */
import { BlobNotFoundError } from "../models/storeErrors";
import { federationFolder, MANIFEST_FILE } from "../models/storeLayout";
import type { RoundManifest } from "../federation/manifest";
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

export async function loadReportInput(services: FederationServices, federationId: string, runtimeStatus: string): Promise<ReportInput> {
  const manifests = await loadManifests(services, federationId);
  let baselines: Baselines | undefined;
  try {
    baselines = await services.store.getJson<Baselines>(baselinesPath(federationId));
  } catch (err) {
    if (!(err instanceof BlobNotFoundError)) throw err;
  }
  return { federationId, runtimeStatus, manifests, baselines };
}
