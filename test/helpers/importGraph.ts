/**
 * The import graph of a source tree, at file and at top-level-folder granularity, and the checks the
 * layering rules need: forbidden folder -> folder edges, and cycles between folders.
 * Every specifier counts (static, `export ... from`, `require`, dynamic `import()`, `import type` and
 * `typeof import()`): a type-only import is still a design dependency and the next edit makes it real.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import * as ts from "typescript";

export interface ImportEdge {
  /** Importing file, relative to the root, with "/" separators. */
  fromFile: string;
  /** Imported file, relative to the root. */
  toFile: string;
  fromFolder: string;
  toFolder: string;
}

/** A layering rule: no module in any of `from` may import a module in any of `forbidden`. */
export interface ImportRule {
  from: readonly string[];
  forbidden: readonly string[];
  /** Why the edge is forbidden (shown when the rule fails). */
  reason: string;
}

export interface FolderCycle {
  /** The folders of one strongly connected component, sorted. */
  folders: string[];
  /** The file-level edges that close the cycle, one example per folder -> folder edge. */
  edges: ImportEdge[];
}

/** Module specifiers of one TypeScript source (comments and strings ignored). */
export function importSpecifiers(source: string): string[] {
  return ts.preProcessFile(source, true, true).importedFiles.map((f) => f.fileName);
}

function listTsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...listTsFiles(path));
    else if (name.endsWith(".ts") && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

const CANDIDATE_SUFFIXES = [".ts", ".d.ts", "/index.ts", ".js", ".json", ""];

function resolveRelative(fromFile: string, specifier: string): string | undefined {
  const base = resolve(dirname(fromFile), specifier);
  for (const suffix of CANDIDATE_SUFFIXES) {
    const candidate = base + suffix;
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return undefined;
}

function posix(path: string): string {
  return path.split(sep).join("/");
}

/** Top-level folder of a path relative to the root ("(root)" for files directly in it). */
export function topFolder(relativePath: string): string {
  const parts = relativePath.split("/");
  return parts.length > 1 ? parts[0] : "(root)";
}

/**
 * Every relative import of every .ts file under `root` that resolves inside `root`. Package imports are
 * not edges; a relative import that resolves to nothing throws (the graph would silently miss an edge).
 */
export function readImportGraph(root: string): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const file of listTsFiles(root)) {
    for (const specifier of importSpecifiers(readFileSync(file, "utf8"))) {
      if (!specifier.startsWith(".")) continue;
      const target = resolveRelative(file, specifier);
      if (!target) throw new Error(`${posix(relative(root, file))}: import "${specifier}" resolves to no file`);
      const toFile = posix(relative(root, target));
      if (toFile.startsWith("../")) continue;
      const fromFile = posix(relative(root, file));
      edges.push({ fromFile, toFile, fromFolder: topFolder(fromFile), toFolder: topFolder(toFile) });
    }
  }
  return edges;
}

/** The edges that break a rule. */
export function forbiddenEdges(edges: readonly ImportEdge[], rule: ImportRule): ImportEdge[] {
  return edges.filter((e) => rule.from.includes(e.fromFolder) && rule.forbidden.includes(e.toFolder));
}

/** Cycles in the folder-level graph (Tarjan's strongly connected components of size > 1). */
export function folderCycles(edges: readonly ImportEdge[]): FolderCycle[] {
  const example = new Map<string, ImportEdge>();
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    if (e.fromFolder === e.toFolder) continue;
    const key = `${e.fromFolder}\u0000${e.toFolder}`;
    if (!example.has(key)) example.set(key, e);
    const targets = next.get(e.fromFolder) ?? new Set<string>();
    targets.add(e.toFolder);
    next.set(e.fromFolder, targets);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  const visit = (folder: string): void => {
    index.set(folder, index.size);
    low.set(folder, index.get(folder)!);
    stack.push(folder);
    onStack.add(folder);
    for (const target of next.get(folder) ?? []) {
      if (!index.has(target)) {
        visit(target);
        low.set(folder, Math.min(low.get(folder)!, low.get(target)!));
      } else if (onStack.has(target)) {
        low.set(folder, Math.min(low.get(folder)!, index.get(target)!));
      }
    }
    if (low.get(folder) === index.get(folder)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== folder);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const folder of [...next.keys()].sort()) if (!index.has(folder)) visit(folder);
  return components.map((folders) => ({
    folders,
    edges: [...example.values()].filter((e) => folders.includes(e.fromFolder) && folders.includes(e.toFolder)),
  }));
}

export function describeEdge(edge: ImportEdge): string {
  return `${edge.fromFile} -> ${edge.toFile}`;
}
