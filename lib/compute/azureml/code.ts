/**
 * A job's code folder for azureml silos: hashed (files ignored per the folder's .amlignore, else its
 * .gitignore), uploaded once, content-addressed, to the orchestrator's own model container under
 * `code/<digest>/`, and registered in each silo workspace as the code version
 * `codes/<name>/versions/<digest prefix>` pointing there (idempotent). The deployed app never sees
 * the user's folder: the client (`flo submit`) uploads it through the API before it submits, and the
 * spec's `training.uploadedCode` then holds the folder's URI in the orchestrator's store while
 * `training.code` keeps the folder for local silos.
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { isAbsolute, join, relative, sep } from "node:path";
import type { AzureMachineLearningWorkspaces } from "@azure/arm-machinelearning";
import type { ModelStore } from "../../models/store";
import { SECAGG_PYTHON_PACKAGE, secaggPythonPackageFiles } from "../../secagg/pythonPackage";
import { AzureMlConfigError, DATA_SCIENTIST_ROLE, toAzureMlError, type WorkspaceCoordinates } from "./errors";

/** Folder of uploaded code in the orchestrator's model container. */
export const CODE_PREFIX = "code/";
/** Code asset name flo registers in silo workspaces. */
export const CODE_ASSET_NAME = "flo-code";
/** Hex digits of the digest used as the code version (64 bits: collisions are not a practical concern). */
const VERSION_DIGITS = 16;

/** One ignore pattern of a .gitignore-style file, as a regex over `/`-separated relative paths. */
function ignoreRegex(pattern: string): RegExp | undefined {
  let p = pattern.trim();
  if (p === "" || p.startsWith("#") || p.startsWith("!")) return undefined;
  const directoryOnly = p.endsWith("/");
  p = p.replace(/\/+$/, "");
  const anchored = p.startsWith("/") || p.includes("/");
  p = p.replace(/^\/+/, "");
  const body = p
    .split("**")
    .map((part) =>
      part
        .replace(/[.+^${}()|[\]\\]/g, "\\$&")
        .replace(/\*/g, "[^/]*")
        .replace(/\?/g, "[^/]"),
    )
    .join(".*");
  // A matched directory ignores everything under it.
  return new RegExp(`${anchored ? "^" : "(^|/)"}${body}${directoryOnly ? "/" : "(/|$)"}`);
}

/** The folder's ignore rules: .amlignore when present (Azure ML's own rule), else .gitignore; .git always. */
function ignoreRules(dir: string): RegExp[] {
  const file = [".amlignore", ".gitignore"].map((name) => join(dir, name)).find((path) => existsSync(path));
  const patterns = file ? readFileSync(file, "utf8").split(/\r?\n/) : [];
  return [/(^|\/)\.git(\/|$)/, ...patterns.map(ignoreRegex).filter((r): r is RegExp => r !== undefined)];
}

/** Most bytes a code folder may hold: larger folders belong in a registered code asset (az ml code create). */
export const MAX_CODE_BYTES = 32 * 1024 * 1024;
/** Most files a code folder may hold. */
export const MAX_CODE_FILES = 5000;
/** Written last into `code/<digest>/`: its presence means the whole folder is there. */
export const CODE_MANIFEST_FILE = ".flo-code.json";
/** A folder of uploaded code: `<orchestrator container>/code/<sha256>/`. */
export const UPLOADED_CODE_URI = /^https?:\/\/[^?#\s]+\/code\/([0-9a-f]{64})\/$/;

export interface CodeFolder {
  /** sha256 over the sorted (relative path, file sha256) pairs: see codeDigest. */
  digest: string;
  /** Relative `/`-separated paths of the files that are uploaded. */
  files: string[];
}

/** The content digest of a code folder: sha256 over `path NUL sha256(content) LF` for each file, sorted by path. */
export function codeDigest(files: readonly { path: string; content: Uint8Array }[]): string {
  const digest = createHash("sha256");
  for (const file of [...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))) {
    digest.update(`${file.path}\u0000${createHash("sha256").update(file.content).digest("hex")}\n`);
  }
  return digest.digest("hex");
}

/** Lists the files of a code folder that are uploaded, honouring its ignore file. Throws AzureMlConfigError when it is not a folder, is empty or too large. */
function listCodeFolder(dir: string, field: string): string[] {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AzureMlConfigError(field, "an existing code folder", JSON.stringify(dir));
  const rules = ignoreRules(dir);
  const files: string[] = [];
  let bytes = 0;
  const walk = (current: string) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      const rel = relative(dir, path).split(sep).join("/");
      if (rules.some((rule) => rule.test(entry.isDirectory() ? `${rel}/` : rel))) continue;
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) {
        files.push(rel);
        bytes += statSync(path).size;
      }
    }
  };
  walk(dir);
  if (files.length === 0) throw new AzureMlConfigError(field, "a code folder with at least one file not ignored", JSON.stringify(dir));
  if (files.length > MAX_CODE_FILES || bytes > MAX_CODE_BYTES) {
    throw new AzureMlConfigError(
      field,
      `a code folder of at most ${MAX_CODE_FILES} files and ${MAX_CODE_BYTES / 1024 / 1024} MiB (leave data out with .amlignore, or register the code with az ml code create)`,
      `${JSON.stringify(dir)} with ${files.length} files, ${bytes} bytes`,
    );
  }
  if (files.includes(CODE_MANIFEST_FILE)) throw new AzureMlConfigError(field, `a code folder without a top-level ${CODE_MANIFEST_FILE} (flo writes that file)`, JSON.stringify(dir));
  return files.sort();
}

/** Files flo adds to a code folder: `<folder>/<file>` in the upload, read from `dir`. */
export interface AddedCodeFolder {
  folder: string;
  dir: string;
  files: readonly string[];
}

/** What secure aggregation adds to the code of Azure ML jobs: the Python masking package. */
export function secureAggregationCode(): AddedCodeFolder {
  const { dir, files } = secaggPythonPackageFiles();
  return { folder: SECAGG_PYTHON_PACKAGE, dir, files };
}

/** A code folder's files and contents, read for upload. */
export interface ReadCodeFolder extends CodeFolder {
  contents: { path: string; content: Buffer }[];
}

/**
 * Reads and hashes a code folder (ignore rules, size limits) plus the folders flo adds (the digest
 * covers them); throws AzureMlConfigError naming `field`, also when the user's folder already holds
 * one of the added folders.
 */
export function readCodeFolder(dir: string, field = "training.code", added: readonly AddedCodeFolder[] = []): ReadCodeFolder {
  const own = listCodeFolder(dir, field);
  const contents = own.map((path) => ({ path, content: readFileSync(join(dir, path)) }));
  for (const extra of added) {
    const clash = own.find((file) => file === extra.folder || file.startsWith(`${extra.folder}/`));
    if (clash) throw new AzureMlConfigError(field, `a code folder without ${extra.folder}/ (flo adds its own there)`, `${JSON.stringify(dir)} holds ${clash}`);
    for (const file of extra.files) contents.push({ path: `${extra.folder}/${file}`, content: readFileSync(join(extra.dir, file)) });
  }
  contents.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { digest: codeDigest(contents), files: contents.map((c) => c.path), contents };
}

/** Lists and hashes a code folder, honouring its ignore file, plus the folders flo adds. */
export function hashCodeFolder(dir: string, field = "training.code", added: readonly AddedCodeFolder[] = []): CodeFolder {
  const { digest, files } = readCodeFolder(dir, field, added);
  return { digest, files };
}

export interface UploadedCode extends CodeFolder {
  /** The folder's URI in the orchestrator's store (ends with "/"): the value for `training.uploadedCode`. */
  uri: string;
  /** false when the same digest was already there (nothing uploaded). */
  uploaded: boolean;
}

/** Where a client puts code folders: the orchestrator's store, reached directly or through its API (PUT /api/code/{digest}). */
export interface CodeUploader {
  /** The folder's URI when this digest is already stored. */
  find(digest: string, options?: { signal?: AbortSignal }): Promise<string | undefined>;
  /** Stores the files under the digest (the receiver checks it) and returns the folder's URI. */
  upload(folder: { digest: string; contents: readonly { path: string; content: Uint8Array }[] }, options?: { signal?: AbortSignal }): Promise<string>;
}

/** Writes code folders into `code/<digest>/` of a store; the manifest last, so a folder with one is complete. */
export function storeCodeUploader(store: ModelStore): CodeUploader {
  const prefix = (digest: string) => `${CODE_PREFIX}${digest}/`;
  const uri = (digest: string) => `${store.uri(`${CODE_PREFIX}${digest}`)}/`;
  return {
    async find(digest, options = {}) {
      return (await store.exists(`${prefix(digest)}${CODE_MANIFEST_FILE}`, options)) ? uri(digest) : undefined;
    },
    async upload(folder, options = {}) {
      await store.ensureContainer(options);
      for (const file of folder.contents) await store.putBytes(`${prefix(folder.digest)}${file.path}`, file.content, { signal: options.signal });
      await store.putJson(`${prefix(folder.digest)}${CODE_MANIFEST_FILE}`, { digest: folder.digest, files: folder.contents.map((f) => f.path).sort() }, { signal: options.signal });
      return uri(folder.digest);
    },
  };
}

/** Uploads a code folder once: a digest the uploader already has is not sent again. */
export async function uploadCodeFolder(dir: string, uploader: CodeUploader, options: { field?: string; signal?: AbortSignal; added?: readonly AddedCodeFolder[] } = {}): Promise<UploadedCode> {
  const folder = readCodeFolder(dir, options.field, options.added);
  const existing = await uploader.find(folder.digest, options);
  if (existing) return { digest: folder.digest, files: folder.files, uri: existing, uploaded: false };
  const uri = await uploader.upload(folder, options);
  return { digest: folder.digest, files: folder.files, uri, uploaded: true };
}

/** `<store>/code/<64 hex>/`: a folder uploaded by a CodeUploader; returns its digest. */
export function uploadedCodeDigest(reference: string): string | undefined {
  return UPLOADED_CODE_URI.exec(reference)?.[1];
}

/**
 * Registers (or reuses) the code version of an uploaded folder in a silo workspace and returns its
 * ARM id. Asset versions are immutable, so an existing version with this digest-derived name is the
 * same content.
 */
export async function registerUploadedCode(client: AzureMachineLearningWorkspaces, coordinates: WorkspaceCoordinates, codeUri: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const digest = uploadedCodeDigest(codeUri);
  if (!digest) throw new AzureMlConfigError("training.uploadedCode", "a code folder URI of the orchestrator's store (<container>/code/<sha256>/)", JSON.stringify(codeUri));
  const { subscriptionId, resourceGroup, workspace } = coordinates;
  const version = digest.slice(0, VERSION_DIGITS);
  const id = `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${workspace}/codes/${CODE_ASSET_NAME}/versions/${version}`;
  try {
    await client.codeVersions.get(resourceGroup, workspace, CODE_ASSET_NAME, version, { abortSignal: options.signal });
    return id;
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode !== 404) {
      throw toAzureMlError(error, { coordinates, operation: "read code version", requiredRole: DATA_SCIENTIST_ROLE });
    }
  }
  try {
    await client.codeVersions.createOrUpdate(
      resourceGroup,
      workspace,
      CODE_ASSET_NAME,
      version,
      { properties: { codeUri, description: `flo code folder sha256 ${digest}`, tags: { floCodeDigest: digest } } },
      { abortSignal: options.signal },
    );
  } catch (error) {
    throw toAzureMlError(error, { coordinates, operation: "register code version", requiredRole: DATA_SCIENTIST_ROLE });
  }
  return id;
}

interface SubmittableSpec {
  silos: readonly { compute: { type: string } }[];
  training: { code?: string; uploadedCode?: string };
  aggregation?: { secureAggregation?: unknown };
}

/** A `training.code` that names an Azure ML asset or a URI rather than a local folder. */
export function isCodeReference(code: string): boolean {
  return code.startsWith("azureml:") || code.startsWith("/subscriptions/") || /^[a-z][a-z0-9+.-]*:\/\//i.test(code);
}

/** The code azureml silos run: the uploaded folder when there is one, else `training.code` (an asset reference). */
export function azureMlCodeOf(training: { code?: string; uploadedCode?: string }): string | undefined {
  return training.uploadedCode ?? training.code;
}

/**
 * What a client does before it submits a spec whose azureml silos run a local `training.code`
 * folder: uploads the folder once (content-addressed) and returns the spec with
 * `training.uploadedCode` set to its URI in the orchestrator's store. `training.code` stays the
 * folder, which local silos run. Specs without azureml silos, or whose code is already an Azure ML
 * reference or a URI, are returned unchanged. A secure spec's upload also holds the masking package
 * `flo_secagg/`, which its azureml jobs' commands run.
 */
export async function uploadSpecCode<Spec extends SubmittableSpec>(
  spec: Spec,
  uploader: CodeUploader,
  options: { baseDir: string; signal?: AbortSignal },
): Promise<{ spec: Spec; code?: UploadedCode }> {
  const code = spec.training.code;
  if (code === undefined || !spec.silos.some((silo) => silo.compute.type === "azureml") || isCodeReference(code)) return { spec };
  // Secure aggregation's masking runs in the job: its Python package travels with the code.
  const added = spec.aggregation?.secureAggregation !== undefined ? [secureAggregationCode()] : [];
  const uploaded = await uploadCodeFolder(isAbsolute(code) ? code : join(options.baseDir, code), uploader, { signal: options.signal, added });
  return { spec: { ...spec, training: { ...spec.training, uploadedCode: uploaded.uri } }, code: uploaded };
}
