/**
 * The blob layout of a federation. Everyone builds paths through these functions, never by hand:
 *
 *   federations/<id>/rounds/<r>/global/model.safetensors
 *   federations/<id>/rounds/<r>/updates/<silo>/model.safetensors | metrics.json
 *   federations/<id>/rounds/<r>/manifest.json
 *   federations/<id>/rounds/<r>/state/<name>
 *   federations/<id>/rounds/<r>/logs/<silo>/<name>
 *   federations/<id>/evaluations/<r>/<silo>/metrics.json   (evaluation of the model round r produced)
 *   federations/<id>/evaluations/<r>/manifest.json
 *   federations/<id>/final/model.safetensors | model-card.md | model-card.json
 *
 * Folder functions return a prefix ending in "/", so `rounds/1/` never matches `rounds/10/`.
 */
import { StorePathError } from "./storeErrors";

export const MODEL_FILE = "model.safetensors";
export const METRICS_FILE = "metrics.json";
export const MANIFEST_FILE = "manifest.json";

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** One path segment (federation id, silo, file name): no slashes, no "..", no empty strings. */
function segment(value: string, field: string): string {
  if (typeof value !== "string" || !SEGMENT.test(value) || value.includes("..")) {
    throw new StorePathError(`${field}: expected 1-128 characters [A-Za-z0-9._-] starting with a letter or digit and without "..", got ${JSON.stringify(value)}`);
  }
  return value;
}

function roundNumber(round: number): number {
  if (!Number.isSafeInteger(round) || round < 0) {
    throw new StorePathError(`round: expected an integer >= 0, got ${round}`);
  }
  return round;
}

/** A relative path of segments below a folder, e.g. a state file name "strategy/momentum.safetensors". */
function relativePath(value: string, field: string): string {
  if (typeof value !== "string" || value === "") throw new StorePathError(`${field}: expected a relative path, got ${JSON.stringify(value)}`);
  return value
    .split("/")
    .map((part, i) => segment(part, `${field} segment ${i + 1}`))
    .join("/");
}

export function federationFolder(federationId: string): string {
  return `federations/${segment(federationId, "federationId")}/`;
}

export function roundFolder(federationId: string, round: number): string {
  return `${federationFolder(federationId)}rounds/${roundNumber(round)}/`;
}

export function roundGlobalFolder(federationId: string, round: number): string {
  return `${roundFolder(federationId, round)}global/`;
}

/** The global model the round's silos train from. */
export function roundGlobalPath(federationId: string, round: number): string {
  return `${roundGlobalFolder(federationId, round)}${MODEL_FILE}`;
}

/** The folder a silo job writes its outputs to (its `model_update` output). */
export function siloUpdateFolder(federationId: string, round: number, silo: string): string {
  return `${roundFolder(federationId, round)}updates/${segment(silo, "silo")}/`;
}

export function siloUpdateModelPath(federationId: string, round: number, silo: string): string {
  return `${siloUpdateFolder(federationId, round, silo)}${MODEL_FILE}`;
}

export function siloUpdateMetricsPath(federationId: string, round: number, silo: string): string {
  return `${siloUpdateFolder(federationId, round, silo)}${METRICS_FILE}`;
}

/** The round's checkpoint manifest (silos, job ids, digests, metrics). */
export function roundManifestPath(federationId: string, round: number): string {
  return `${roundFolder(federationId, round)}${MANIFEST_FILE}`;
}

export function roundStateFolder(federationId: string, round: number): string {
  return `${roundFolder(federationId, round)}state/`;
}

/** Strategy/checkpoint state saved with the round, e.g. `roundStatePath(id, r, "server-optimizer.safetensors")`. */
export function roundStatePath(federationId: string, round: number, name: string): string {
  return `${roundStateFolder(federationId, round)}${relativePath(name, "state name")}`;
}

export function jobLogFolder(federationId: string, round: number, silo: string): string {
  return `${roundFolder(federationId, round)}logs/${segment(silo, "silo")}/`;
}

/** A silo job's log file for the round (default name `std_log.txt`, as Azure ML names it). */
export function jobLogPath(federationId: string, round: number, silo: string, name = "std_log.txt"): string {
  return `${jobLogFolder(federationId, round, silo)}${relativePath(name, "log name")}`;
}

/** Evaluations of the model round `round` produced (`rounds/<round+1>/global`). */
export function evaluationFolder(federationId: string, round: number): string {
  return `${federationFolder(federationId)}evaluations/${roundNumber(round)}/`;
}

/** The folder a silo's evaluation job writes its `evaluation` output (metrics.json) to. */
export function siloEvaluationFolder(federationId: string, round: number, silo: string): string {
  return `${evaluationFolder(federationId, round)}${segment(silo, "silo")}/`;
}

/** The evaluation manifest of the model round `round` produced. */
export function evaluationManifestPath(federationId: string, round: number): string {
  return `${evaluationFolder(federationId, round)}${MANIFEST_FILE}`;
}

/** The delivered model, its model card and its selection record. */
export function finalFolder(federationId: string): string {
  return `${federationFolder(federationId)}final/`;
}

export function finalFilePath(federationId: string, name: string): string {
  return `${finalFolder(federationId)}${relativePath(name, "file name")}`;
}

/** Normalizes a folder prefix to end with exactly one "/" (empty stays empty = whole container). */
export function folderPrefix(prefix: string): string {
  if (prefix === "" || prefix === "/") return "";
  return prefix.replace(/\/+$/, "") + "/";
}

export interface BlobLocation {
  /** Account URL, e.g. `https://acct.blob.core.windows.net` or `http://127.0.0.1:10000/devstoreaccount1`. */
  accountUrl: string;
  containerName: string;
  /** `<accountUrl>/<container>` */
  containerUrl: string;
  /** Blob path inside the container (decoded). */
  path: string;
}

/** `<containerUrl>/<path>` with each path segment percent-encoded. */
export function blobUri(containerUrl: string, path: string): string {
  if (path === "" || path.startsWith("/")) throw new StorePathError(`blob path: expected a relative path, got ${JSON.stringify(path)}`);
  return `${containerUrl.replace(/\/+$/, "")}/${path.split("/").map(encodeURIComponent).join("/")}`;
}

/** Path-style URLs (Azurite, IP hosts, localhost) carry the account name as the first path segment. */
function isPathStyle(url: URL): boolean {
  return /^\d{1,3}(\.\d{1,3}){3}$/.test(url.hostname) || url.hostname === "localhost" || url.hostname.startsWith("[") || !url.hostname.includes(".");
}

/** Parses a blob URI back to account, container and path. Query strings (SAS) are dropped. */
export function parseBlobUri(uri: string): BlobLocation {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new StorePathError(`blob URI: expected an absolute http(s) URL, got ${JSON.stringify(uri)}`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new StorePathError(`blob URI: expected http(s), got ${url.protocol} in ${JSON.stringify(uri)}`);
  }
  const parts = url.pathname.split("/").filter((p) => p !== "");
  const accountParts = isPathStyle(url) ? 1 : 0;
  if (parts.length < accountParts + 2) {
    const expected = accountParts ? "<account>/<container>/<path>" : "<container>/<path>";
    throw new StorePathError(`blob URI: expected ${url.origin}/${expected}, got ${JSON.stringify(uri)}`);
  }
  const accountUrl = url.origin + (accountParts ? `/${parts[0]}` : "");
  const containerName = decodeURIComponent(parts[accountParts]);
  return {
    accountUrl,
    containerName,
    containerUrl: `${accountUrl}/${containerName}`,
    path: parts
      .slice(accountParts + 1)
      .map(decodeURIComponent)
      .join("/"),
  };
}
