/**
 * `flo submit <spec> [--api <url>] [--id <id>] [--dry-run]`: starts a federation on a flo app (the
 * deployed one, or a `flo host`) the way its HTTP API expects. When azureml silos run a local
 * `training.code` folder, the folder (relative to the current directory, like every local path of a
 * spec and like local silos see it) is hashed and uploaded once through `PUT /api/code/{digest}`, and the spec is posted with
 * `training.uploadedCode` set to the stored folder; `training.code` stays for local silos.
 * The function key comes from FLO_FUNCTION_KEY (never a flag: command lines end up in process lists
 * and shell history).
 */
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import type { Command } from "commander";
import { parse as parseYaml } from "yaml";
import type { CommandIO } from "./aggregate";
import { uploadSpecCode, type CodeUploader } from "../compute/azureml/code";
import { AzureMlConfigError } from "../compute/azureml/errors";
import { parseSpec, SpecError } from "../spec";

/** Settings the command reads from the environment. */
export const SubmitSettings = {
  /** Base URL of the API, with `/api` (azd output FLO_API_BASE_URL). */
  apiBaseUrl: "FLO_API_BASE_URL",
  /** Sent as `x-functions-key`. */
  functionKey: "FLO_FUNCTION_KEY",
} as const;

export interface SubmitOptions {
  spec: string;
  /** API base URL; default FLO_API_BASE_URL. */
  api?: string;
  id?: string;
  /** Upload the code and run the preflight (`?dryRun=true`) instead of starting. */
  dryRun?: boolean;
  /** Folder relative `training.code` resolves against; default the current directory. */
  baseDir?: string;
}

export interface SubmitDependencies {
  env?: Record<string, string | undefined>;
  fetch?: typeof fetch;
  signal?: AbortSignal;
}

/** A failed API call, with the problem detail the API answered. */
export class ApiCallError extends Error {
  override name = "ApiCallError";
}

interface ApiClient {
  call(method: string, path: string, body?: string): Promise<{ status: number; body: unknown }>;
}

function apiClient(base: string, key: string | undefined, dependencies: SubmitDependencies): ApiClient {
  const fetchImpl = dependencies.fetch ?? fetch;
  return {
    async call(method, path, body) {
      const response = await fetchImpl(`${base}/${path}`, {
        method,
        body,
        headers: { ...(key ? { "x-functions-key": key } : {}), ...(body !== undefined ? { "content-type": "application/json" } : {}) },
        signal: dependencies.signal,
      });
      const text = await response.text();
      let parsed: unknown = text;
      try {
        parsed = text ? JSON.parse(text) : undefined;
      } catch {
        // not JSON: kept as text
      }
      if (response.status === 401) throw new ApiCallError(`${method} ${base}/${path}: 401 Unauthorized; set ${SubmitSettings.functionKey} to a function key of the app`);
      return { status: response.status, body: parsed };
    },
  };
}

const detailOf = (body: unknown) => (typeof body === "object" && body !== null && "detail" in body ? String(body.detail) : JSON.stringify(body));

/** Uploads code folders through the app's `GET`/`PUT /api/code/{digest}` routes. */
export function apiCodeUploader(api: ApiClient): CodeUploader {
  return {
    async find(digest) {
      const { status, body } = await api.call("GET", `code/${digest}`);
      if (status === 404) return undefined;
      if (status !== 200) throw new ApiCallError(`GET code/${digest}: ${status} ${detailOf(body)}`);
      return (body as { uri: string }).uri;
    },
    async upload(folder) {
      const files = folder.contents.map((file) => ({ path: file.path, content: Buffer.from(file.content).toString("base64") }));
      const { status, body } = await api.call("PUT", `code/${folder.digest}`, JSON.stringify({ files }));
      if (status !== 200 && status !== 201) throw new ApiCallError(`PUT code/${folder.digest}: ${status} ${detailOf(body)}`);
      return (body as { uri: string }).uri;
    },
  };
}

/** Returns the exit code: 0 when the API accepted the spec (or the dry run passed), 1 otherwise. */
export async function runSubmit(options: SubmitOptions, io: CommandIO, dependencies: SubmitDependencies = {}): Promise<number> {
  const env = dependencies.env ?? process.env;
  const base = (options.api ?? env[SubmitSettings.apiBaseUrl] ?? "").replace(/\/+$/, "");
  if (!/^https?:\/\//.test(base)) {
    io.err(`flo submit: --api: expected the API's base URL (e.g. https://<app>.azurewebsites.net/api, or ${SubmitSettings.apiBaseUrl}), got ${JSON.stringify(base)}`);
    return 1;
  }
  let text: string;
  try {
    text = await readFile(options.spec, "utf8");
  } catch (error) {
    io.err(`flo submit: cannot read ${options.spec}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    return 1;
  }
  const api = apiClient(base, env[SubmitSettings.functionKey], dependencies);
  try {
    const spec = parseSpec(text, { source: options.spec });
    // The user's document is posted, not the parsed spec (defaults and derived fields stay the server's).
    const document = parseYaml(text) as { training: Record<string, unknown> };
    const { code } = await uploadSpecCode(spec, apiCodeUploader(api), { baseDir: resolve(options.baseDir ?? process.cwd()), signal: dependencies.signal });
    if (code) {
      document.training.uploadedCode = code.uri;
      io.out(`code ${spec.training.code}: ${code.files.length} file(s), sha256 ${code.digest}, ${code.uploaded ? "uploaded to" : "already at"} ${code.uri}`);
    }
    const query = new URLSearchParams({ ...(options.id ? { id: options.id } : {}), ...(options.dryRun ? { dryRun: "true" } : {}) }).toString();
    const { status, body } = await api.call("POST", `federations${query ? `?${query}` : ""}`, JSON.stringify(document));
    io.out(`POST federations: ${status}`);
    io.out(JSON.stringify(body, null, 2));
    return status >= 200 && status < 300 ? 0 : 1;
  } catch (error) {
    if (error instanceof SpecError || error instanceof AzureMlConfigError || error instanceof ApiCallError) {
      io.err(`flo submit: ${error.message}`);
      return 1;
    }
    throw error;
  }
}

export function register(submit: Command): void {
  submit
    .argument("<spec>", "federation spec file (YAML or JSON)")
    .option("--api <url>", `the app's API base URL, e.g. https://<app>.azurewebsites.net/api (default: ${SubmitSettings.apiBaseUrl})`)
    .option("--id <id>", "federation id (default: the spec's name)")
    .option("--dry-run", "upload the code and run the preflight (flo check on the app) instead of starting")
    .action(async (specPath: string, opts: { api?: string; id?: string; dryRun?: boolean }) => {
      process.exitCode = await runSubmit({ spec: specPath, api: opts.api, id: opts.id, dryRun: opts.dryRun }, { out: (l) => console.log(l), err: (l) => console.error(l) });
    });
}
