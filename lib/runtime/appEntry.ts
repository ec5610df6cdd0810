/**
 * What `flo host <app>` loads, like the Node worker: a compiled .js file, or an app folder whose
 * package.json `main` names the entry: a file, a folder (its index.js), or a glob such as
 * `dist/src/functions/*.js` (the durable-functions samples and templates), every match loaded.
 */
import * as fs from "fs";
import * as path from "path";
import { createRequire } from "module";

/** The app cannot be resolved to entry files; the message names the path and what was expected. */
export class AppEntryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "AppEntryError";
  }
}

export interface AppEntries {
  /** The files to load, in order. */
  files: string[];
  /** The app folder (package.json's folder when the app was given as a folder). */
  appRoot?: string;
}

const GLOB_CHARS = /[*?{[]/;

/** A regular expression for one path segment of a glob (`*`, `?`, `{a,b}`, `[abc]`). */
function segmentPattern(segment: string): RegExp {
  let source = "";
  for (let i = 0; i < segment.length; i++) {
    const c = segment[i];
    if (c === "*") source += "[^/]*";
    else if (c === "?") source += "[^/]";
    else if (c === "{") {
      const end = segment.indexOf("}", i);
      if (end < 0) throw new AppEntryError(`package.json main: unbalanced "{" in glob segment ${JSON.stringify(segment)}`);
      source += `(?:${segment
        .slice(i + 1, end)
        .split(",")
        .map((alt) => alt.replace(/[.+^$()|\\]/g, "\\$&").replace(/\*/g, "[^/]*"))
        .join("|")})`;
      i = end;
    } else if (c === "[") {
      const end = segment.indexOf("]", i);
      if (end < 0) throw new AppEntryError(`package.json main: unbalanced "[" in glob segment ${JSON.stringify(segment)}`);
      source += segment.slice(i, end + 1);
      i = end;
    } else source += c.replace(/[.+^$()|\\]/g, "\\$&");
  }
  return new RegExp(`^${source}$`);
}

/** Files under `root` matching a relative glob (`**` = any depth, node_modules skipped), sorted. */
export function expandGlob(root: string, pattern: string): string[] {
  const segments = pattern
    .replace(/\\/g, "/")
    .replace(/^\.\//, "")
    .split("/")
    .filter((s) => s !== "" && s !== ".");
  const found = new Set<string>();
  const walk = (dir: string, index: number): void => {
    if (index === segments.length) {
      if (fs.existsSync(dir) && fs.statSync(dir).isFile()) found.add(dir);
      return;
    }
    const segment = segments[index];
    if (segment === "**") {
      walk(dir, index + 1);
      for (const entry of safeReaddir(dir)) if (entry.isDirectory() && entry.name !== "node_modules") walk(path.join(dir, entry.name), index);
      return;
    }
    if (!GLOB_CHARS.test(segment)) return walk(path.join(dir, segment), index + 1);
    const matcher = segmentPattern(segment);
    for (const entry of safeReaddir(dir)) if (matcher.test(entry.name)) walk(path.join(dir, entry.name), index + 1);
  };
  walk(root, 0);
  return [...found].sort();
}

function safeReaddir(dir: string): fs.Dirent[] {
  try {
    return fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
}

/** Resolves a file or folder to what Node's `require` would load (a folder: its package main or index.js). */
function requireResolve(target: string): string | undefined {
  try {
    return createRequire(path.join(path.dirname(target), "noop.js")).resolve(target);
  } catch {
    return undefined;
  }
}

/** The entry files of an app given as a .js file or as an app folder. */
export function resolveAppEntries(appPath: string): AppEntries {
  const absolute = path.resolve(appPath);
  if (!fs.existsSync(absolute)) throw new AppEntryError(`appEntry: expected an existing compiled .js file or app folder, got ${absolute} (not found)`);
  if (fs.statSync(absolute).isFile()) return { files: [absolute] };
  const packageJson = path.join(absolute, "package.json");
  let main: unknown;
  if (fs.existsSync(packageJson)) {
    try {
      main = (JSON.parse(fs.readFileSync(packageJson, "utf8")) as { main?: unknown }).main;
    } catch (err) {
      throw new AppEntryError(`${packageJson}: expected valid JSON, got parse error: ${(err as Error).message}`);
    }
  }
  if (main !== undefined && typeof main !== "string") throw new AppEntryError(`${packageJson}: main: expected a string (path or glob), got ${JSON.stringify(main)}`);
  if (typeof main === "string" && GLOB_CHARS.test(main)) {
    const files = expandGlob(absolute, main).filter((f) => /\.(c|m)?js$/.test(f));
    if (files.length === 0) throw new AppEntryError(`${packageJson}: main: the glob ${JSON.stringify(main)} matches no .js file under ${absolute} (is the app built?)`);
    return { files, appRoot: absolute };
  }
  const target = main === undefined ? absolute : path.resolve(absolute, main);
  const resolved = requireResolve(target);
  if (!resolved) {
    throw new AppEntryError(
      main === undefined
        ? `${absolute}: expected a package.json "main" or an index.js, got neither`
        : `${packageJson}: main: ${JSON.stringify(main)} resolves to no file (${target}; is the app built?)`,
    );
  }
  return { files: [resolved], appRoot: absolute };
}
