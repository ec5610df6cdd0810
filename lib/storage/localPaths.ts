/**
 * Local paths named by a spec (the initial model, local silos' code and inputs) are confined to the
 * federation's base folder: an API caller must not make the orchestrator read (and upload, or quote
 * in an error) any file the host's user can read. A folder outside the base is allowed only when the
 * host's settings list it (`FLO_LOCAL_ALLOWED_PATHS`). Links inside the base that lead out of it
 * count as outside: the check is made on the real path of the folder holding the file.
 */
import { existsSync, realpathSync } from "node:fs";
import { dirname, isAbsolute, relative, resolve } from "node:path";

/** A spec's local path resolves outside the base folder and every allowed folder. */
export class LocalPathError extends Error {
  override readonly name = "LocalPathError";
  constructor(
    readonly field: string,
    readonly path: string,
    message: string,
  ) {
    super(`${field}: ${message}`);
  }
}

export interface LocalPathRoots {
  /** Relative paths resolve here; anything under it is allowed. */
  baseDir: string;
  /** Further folders (absolute) a spec may name, from the host's settings. */
  allowedRoots?: readonly string[];
}

/** Parses the comma-separated FLO_LOCAL_ALLOWED_PATHS value; each entry must be absolute. */
export function parseAllowedRoots(value: string | undefined, setting = "FLO_LOCAL_ALLOWED_PATHS"): string[] {
  if (!value) return [];
  return value
    .split(",")
    .map((entry) => entry.trim())
    .filter((entry) => entry.length > 0)
    .map((entry) => {
      if (!isAbsolute(entry)) throw new RangeError(`${setting}: expected absolute folders separated by commas, got "${entry}"`);
      return resolve(entry);
    });
}

function within(root: string, candidate: string): boolean {
  const rel = relative(root, candidate);
  return rel === "" || (!rel.startsWith("..") && !isAbsolute(rel));
}

/** The real path of `path`'s nearest existing ancestor folder, joined with the rest (so links are resolved). */
function realFolderPath(path: string): string {
  let folder = dirname(path);
  const rest: string[] = [relative(folder, path)];
  while (!existsSync(folder)) {
    const parent = dirname(folder);
    if (parent === folder) break;
    rest.unshift(relative(parent, folder));
    folder = parent;
  }
  return resolve(existsSync(folder) ? realpathSync(folder) : folder, ...rest);
}

/** Resolves `value` against the base folder and returns it when it stays inside an allowed folder. */
export function confineLocalPath(value: string, roots: LocalPathRoots, field: string): string {
  const resolved = resolve(roots.baseDir, value);
  const allowed = [roots.baseDir, ...(roots.allowedRoots ?? [])].map((root) => (existsSync(root) ? realpathSync(root) : resolve(root)));
  const real = realFolderPath(resolved);
  if (allowed.some((root) => within(root, real))) return resolved;
  throw new LocalPathError(
    field,
    value,
    `local path "${value}" is outside the base folder ${resolve(roots.baseDir)}; a path elsewhere needs its folder listed in FLO_LOCAL_ALLOWED_PATHS (absolute folders, comma-separated)`,
  );
}
