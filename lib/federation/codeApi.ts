/**
 * The code upload routes of the HTTP API (`GET`/`PUT /api/code/{digest}`): the client (`flo submit`)
 * sends the files of a spec's `training.code` folder, the app stores them content-addressed under
 * `code/<sha256>/` of its own container with its own identity. The submitter needs only the function
 * key it already uses to start federations, and no role on any storage. The digest is recomputed
 * here from the received files, so a folder is stored only under its true content address.
 */
import { codeDigest, CODE_MANIFEST_FILE, MAX_CODE_BYTES, MAX_CODE_FILES, storeCodeUploader, uploadedCodeDigest, isCodeReference } from "../compute/azureml/code";
import type { PreflightRow } from "../compute/azureml/preflight";
import type { FederationSpec } from "../spec";
import { ApiError, type ApiResponse } from "./problem";
import type { FederationServices } from "./services";

const DIGEST = /^[0-9a-f]{64}$/;
/** The body of `PUT /api/code/{digest}`: base64 grows the files by 4/3, plus room for names and JSON. */
export const MAX_CODE_REQUEST_BYTES = Math.ceil((MAX_CODE_BYTES * 4) / 3) + MAX_CODE_FILES * 1024;
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
const MAX_PATH_LENGTH = 1024;

/** The wire format of an uploaded folder: relative `/`-separated paths and base64 contents. */
export interface CodeUploadBody {
  files: { path: string; content: string }[];
}

function requireDigest(digest: string): void {
  if (!DIGEST.test(digest)) throw new ApiError(400, `route parameter digest: expected 64 lowercase hex digits (the folder's sha256), got ${JSON.stringify(digest)}`);
}

/** Why a relative path may not be stored, or undefined when it may. */
function pathProblem(path: unknown): string | undefined {
  if (typeof path !== "string" || path === "") return "a non-empty string";
  if (path.length > MAX_PATH_LENGTH) return `at most ${MAX_PATH_LENGTH} characters`;
  if (/[\\\u0000-\u001f]/.test(path)) return "no backslashes or control characters";
  if (path.split("/").some((segment) => segment === "" || segment === "." || segment === "..")) return "a relative path without empty, '.' or '..' segments";
  if (path === CODE_MANIFEST_FILE) return `a name other than ${CODE_MANIFEST_FILE} (flo writes it)`;
  return undefined;
}

/** Parses and validates an upload body; throws ApiError naming the field. */
export function parseCodeUpload(body: string): { path: string; content: Buffer }[] {
  const size = Buffer.byteLength(body);
  if (size > MAX_CODE_REQUEST_BYTES) throw new ApiError(413, `the upload is ${size} bytes; at most ${MAX_CODE_REQUEST_BYTES} are accepted (register larger code with az ml code create)`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch (error) {
    throw new ApiError(400, `body: expected JSON {"files": [{"path", "content" (base64)}]}, got unparsable JSON (${(error as Error).message})`);
  }
  const files = (parsed as Partial<CodeUploadBody> | null)?.files;
  if (!Array.isArray(files) || files.length === 0) throw new ApiError(400, `files: expected a non-empty array of {path, content}, got ${Array.isArray(files) ? "[]" : typeof files}`);
  if (files.length > MAX_CODE_FILES) throw new ApiError(413, `files: expected at most ${MAX_CODE_FILES} files, got ${files.length}`);
  const seen = new Set<string>();
  let total = 0;
  return files.map((file: { path?: unknown; content?: unknown }, i) => {
    const problem = pathProblem(file?.path);
    if (problem) throw new ApiError(400, `files[${i}].path: expected ${problem}, got ${JSON.stringify(file?.path)}`);
    const path = file.path as string;
    if (seen.has(path)) throw new ApiError(400, `files[${i}].path: expected a path not already uploaded, got ${JSON.stringify(path)} twice`);
    seen.add(path);
    if (typeof file.content !== "string" || file.content.length % 4 !== 0 || !BASE64.test(file.content)) {
      throw new ApiError(
        400,
        `files[${i}].content: expected the file's bytes as base64, got ${typeof file.content === "string" ? `${file.content.length} characters that are not base64` : typeof file.content}`,
      );
    }
    const content = Buffer.from(file.content, "base64");
    total += content.length;
    if (total > MAX_CODE_BYTES) throw new ApiError(413, `files: expected at most ${MAX_CODE_BYTES} bytes in all, got more by files[${i}] (register larger code with az ml code create)`);
    return { path, content };
  });
}

/** `GET /api/code/{digest}`: 200 with the folder's URI when it is stored, else 404. */
export async function getCode(services: FederationServices, digest: string): Promise<ApiResponse> {
  requireDigest(digest);
  const uri = await storeCodeUploader(services.store).find(digest);
  if (!uri) throw new ApiError(404, `no code folder with sha256 ${digest}`);
  return { status: 200, body: { digest, uri } };
}

/** `PUT /api/code/{digest}`: stores the folder when its content matches the digest (201), or finds it stored (200). */
export async function putCode(services: FederationServices, digest: string, body: string): Promise<ApiResponse> {
  requireDigest(digest);
  const files = parseCodeUpload(body);
  const actual = codeDigest(files);
  if (actual !== digest) throw new ApiError(400, `route parameter digest: expected the sha256 of the uploaded files, ${actual}, got ${digest}`);
  const uploader = storeCodeUploader(services.store);
  const existing = await uploader.find(digest);
  if (existing) return { status: 200, body: { digest, uri: existing, uploaded: false } };
  const uri = await uploader.upload({ digest, contents: files });
  return { status: 201, body: { digest, uri, uploaded: true, files: files.length } };
}

/**
 * At start: azureml silos need code the app can reach. A local `training.code` folder without
 * `training.uploadedCode` is refused (the app cannot read the folder), and an uploaded folder must
 * be a complete one in this app's own store.
 */
export async function requireReachableCode(services: FederationServices, spec: FederationSpec): Promise<void> {
  if (!spec.silos.some((silo) => silo.compute.type === "azureml")) return;
  const { code, uploadedCode } = spec.training;
  const uploaded = uploadedCode ?? (code !== undefined && uploadedCodeDigest(code) ? code : undefined);
  if (uploaded === undefined) {
    if (code !== undefined && !isCodeReference(code)) {
      throw new ApiError(
        400,
        `training.uploadedCode: expected the URL of the uploaded ${JSON.stringify(code)} folder (azureml silos cannot run a local folder the app cannot read), got nothing; submit with \`flo submit <spec> --api <url>\`, which uploads it, or set training.code to a registered code asset (azureml:<name>:<version>)`,
      );
    }
    return;
  }
  const digest = uploadedCodeDigest(uploaded)!;
  const stored = await storeCodeUploader(services.store).find(digest);
  if (stored !== uploaded) {
    throw new ApiError(400, `training.uploadedCode: expected a code folder uploaded to this orchestrator (${stored ?? `PUT /api/code/${digest} first`}), got ${JSON.stringify(uploaded)}`);
  }
}

/** The dry run's check of an uploaded code folder: a row when the spec names one (per-silo rows cover the rest). */
export async function uploadedCodeRows(services: FederationServices, spec: FederationSpec): Promise<PreflightRow[]> {
  const uploaded = spec.training.uploadedCode;
  if (uploaded === undefined) return [];
  try {
    await requireReachableCode(services, spec);
    return [{ silo: "(spec)", check: "uploaded code", result: "pass", detail: `${uploaded}: complete in this orchestrator's store` }];
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    return [{ silo: "(spec)", check: "uploaded code", result: "fail", detail: error.message, fix: "upload the folder with `flo submit <spec> --api <url>`" }];
  }
}
