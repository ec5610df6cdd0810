/**
 * A job's code folder for azureml silos: hashed (files ignored per the folder's .amlignore, else its
 * .gitignore), uploaded once, content-addressed, to the orchestrator's own model container under
 * `code/<digest>/`, and registered in each silo workspace as the code version
 * `codes/<name>/versions/<digest prefix>` pointing there (idempotent). The deployed app never sees
 * the user's folder: the client uploads before it submits, and the spec's `training.code` then holds
 * the folder's URI in the orchestrator's store.
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

export interface CodeFolder {
  /** sha256 over the sorted (relative path, file sha256) pairs. */
  digest: string;
  /** Relative `/`-separated paths of the files that are uploaded. */
  files: string[];
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

interface CodeFiles {
  /** Relative `/`-separated path in the upload -> the file on disk. */
  sources: Map<string, string>;
}

function listCodeFiles(dir: string, field: string, added: readonly AddedCodeFolder[]): CodeFiles {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new AzureMlConfigError(field, "an existing code folder", JSON.stringify(dir));
  const rules = ignoreRules(dir);
  const files: string[] = [];
  const walk = (current: string) => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name);
      const rel = relative(dir, path).split(sep).join("/");
      if (rules.some((rule) => rule.test(entry.isDirectory() ? `${rel}/` : rel))) continue;
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile()) files.push(rel);
    }
  };
  walk(dir);
  if (files.length === 0) throw new AzureMlConfigError(field, "a code folder with at least one file not ignored", JSON.stringify(dir));
  const sources = new Map(files.map((file) => [file, join(dir, file)]));
  for (const extra of added) {
    const clash = files.find((file) => file === extra.folder || file.startsWith(`${extra.folder}/`));
    if (clash) throw new AzureMlConfigError(field, `a code folder without ${extra.folder}/ (flo adds its own there)`, `${JSON.stringify(dir)} holds ${clash}`);
    for (const file of extra.files) sources.set(`${extra.folder}/${file}`, join(extra.dir, file));
  }
  return { sources };
}

/**
 * Lists and hashes a code folder, honouring its ignore file, plus the folders flo adds (the digest
 * covers them). Throws AzureMlConfigError when it is not a folder or is empty.
 */
export function hashCodeFolder(dir: string, field = "training.code", added: readonly AddedCodeFolder[] = []): CodeFolder & CodeFiles {
  const { sources } = listCodeFiles(dir, field, added);
  const files = [...sources.keys()].sort();
  const digest = createHash("sha256");
  for (const file of files) {
    const content = createHash("sha256")
      .update(readFileSync(sources.get(file)!))
      .digest("hex");
    digest.update(`${file}\u0000${content}\n`);
  }
  return { digest: digest.digest("hex"), files, sources };
}

export interface UploadedCode extends CodeFolder {
  /** The folder's URI in the orchestrator's store (ends with "/"): the value for `training.code`. */
  uri: string;
  /** false when the same digest was already there (nothing uploaded). */
  uploaded: boolean;
}

/** Uploads a code folder to `code/<digest>/` of the orchestrator's store, once: an existing digest is reused. */
export async function uploadCodeFolder(dir: string, store: ModelStore, options: { signal?: AbortSignal; added?: readonly AddedCodeFolder[] } = {}): Promise<UploadedCode> {
  const { sources, ...folder } = hashCodeFolder(dir, "training.code", options.added);
  const prefix = `${CODE_PREFIX}${folder.digest}/`;
  // The manifest is written last, so its presence means the whole folder is there.
  const manifest = `${prefix}.flo-code.json`;
  const uri = `${store.uri(`${CODE_PREFIX}${folder.digest}`)}/`;
  if (await store.exists(manifest, options)) return { ...folder, uri, uploaded: false };
  await store.ensureContainer(options);
  for (const file of folder.files) await store.uploadFile(sources.get(file)!, `${prefix}${file}`, { signal: options.signal });
  await store.putJson(manifest, { digest: folder.digest, files: folder.files }, { signal: options.signal });
  return { ...folder, uri, uploaded: true };
}

/** `<store>/code/<64 hex>/`: a folder uploadCodeFolder wrote; returns its digest. */
export function uploadedCodeDigest(reference: string): string | undefined {
  return /^https?:\/\/[^?#]+\/code\/([0-9a-f]{64})\/$/.exec(reference)?.[1];
}

/**
 * Registers (or reuses) the code version of an uploaded folder in a silo workspace and returns its
 * ARM id. Asset versions are immutable, so an existing version with this digest-derived name is the
 * same content.
 */
export async function registerUploadedCode(client: AzureMachineLearningWorkspaces, coordinates: WorkspaceCoordinates, codeUri: string, options: { signal?: AbortSignal } = {}): Promise<string> {
  const digest = uploadedCodeDigest(codeUri);
  if (!digest) throw new AzureMlConfigError("training.code", "a code folder URI of the orchestrator's store (<container>/code/<sha256>/)", JSON.stringify(codeUri));
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
  training: { code?: string };
  aggregation?: { secureAggregation?: unknown };
}

/**
 * What a client does before it submits a spec whose azureml silos run a local `training.code`
 * folder: uploads the folder once (content-addressed) and returns the spec with `training.code` set
 * to its URI in the orchestrator's store. Specs without azureml silos, or whose code is already an
 * Azure ML reference or an uploaded folder, are returned unchanged. A secure spec's upload also holds
 * the masking package `flo_secagg/`, which its jobs' commands run.
 */
export async function uploadSpecCode<Spec extends SubmittableSpec>(spec: Spec, store: ModelStore, options: { baseDir: string; signal?: AbortSignal }): Promise<{ spec: Spec; code?: UploadedCode }> {
  const code = spec.training.code;
  if (code === undefined || !spec.silos.some((silo) => silo.compute.type === "azureml")) return { spec };
  if (code.startsWith("azureml:") || code.startsWith("/subscriptions/") || /^[a-z][a-z0-9+.-]*:\/\//i.test(code)) return { spec };
  // Secure aggregation's masking runs in the job: its Python package travels with the code.
  const added = spec.aggregation?.secureAggregation !== undefined ? [secureAggregationCode()] : [];
  const uploaded = await uploadCodeFolder(isAbsolute(code) ? code : join(options.baseDir, code), store, { signal: options.signal, added });
  return { spec: { ...spec, training: { ...spec.training, code: uploaded.uri } }, code: uploaded };
}
