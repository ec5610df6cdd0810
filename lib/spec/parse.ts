/**
 * Reading a federation spec: text (YAML or JSON) -> plain object -> schema + cross-field rules ->
 * FederationSpec with defaults applied and durations converted. Every problem becomes a SpecIssue
 * (path, expected, got; line/column when the spec came from text); all of them are reported at once.
 */
import { readFile } from "node:fs/promises";
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document, type Node as YamlNode } from "yaml";
import type { z } from "zod";
import { crossFieldIssues, effectiveMinSilos, silosPerRound } from "./checks";
import { describeValue, formatPath, SpecError, SpecIssue, specIssue } from "./errors";
import { DYNAMIC_SCHEMAS, federationSpecSchema, PATTERN_DESCRIPTIONS, type ParsedFederationSpec } from "./schema";
import { parseIsoDuration } from "./duration";
import { jsonErrorOffset } from "./jsonPosition";
import { secretValueReason } from "./secrets";
import type { FederationSpec } from "./types";

export interface ParseSpecOptions {
  /** File name or URL, used in messages. With format 'auto', a .json/.yaml/.yml extension decides the format. */
  source?: string;
  format?: "yaml" | "json" | "auto";
}

/** Largest spec text accepted (a spec with 10,000 silos is well under this). */
export const MAX_SPEC_BYTES = 8 * 1024 * 1024;

/** Parses and validates spec text; throws SpecError (kind 'syntax' or 'invalid'). */
export function parseSpec(text: string, options: ParseSpecOptions = {}): FederationSpec {
  const { source } = options;
  if (Buffer.byteLength(text, "utf8") > MAX_SPEC_BYTES) {
    throw new SpecError("syntax", [specIssue("", `at most ${MAX_SPEC_BYTES} bytes of spec`, `${Buffer.byteLength(text, "utf8")} bytes`)], source);
  }
  const format = resolveFormat(text, options);
  const lineCounter = new LineCounter();
  let value: unknown;
  let doc: Document.Parsed;
  if (format === "json") {
    try {
      value = JSON.parse(text);
    } catch (error) {
      // Node's message may quote the whole text; keep its first clause and give our own position.
      const message = (error as Error).message.split(/, "|\n/)[0];
      const issue = specIssue("", "valid JSON", JSON.stringify(message));
      const offset = jsonErrorOffset(text);
      if (offset !== undefined) Object.assign(issue, positionOf(text, offset));
      throw new SpecError("syntax", [issue], source);
    }
    // JSON is YAML 1.2 flow syntax: the YAML document locates fields for messages and, since
    // JSON.parse silently keeps the last of duplicate keys, finds duplicates the way YAML does.
    doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
    const duplicates = doc.errors.filter((error) => error.code === "DUPLICATE_KEY");
    if (duplicates.length > 0) {
      const issues = duplicates.map((error) => {
        const start = lineCounter.linePos(error.pos[0]);
        const key = /^"(?:[^"\\]|\\.)*"/.exec(text.slice(error.pos[0]))?.[0] ?? "a key";
        return { ...specIssue("", "each key once per object", `${key} a second time`), line: start.line, column: start.col };
      });
      throw new SpecError("syntax", issues, source);
    }
  } else {
    doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
    if (doc.errors.length > 0) {
      const issues = doc.errors.map((error) => {
        const issue =
          error.code === "MULTIPLE_DOCS"
            ? specIssue("", "one YAML document (one federation per spec)", "a second document after ---")
            : specIssue("", "valid YAML", JSON.stringify(error.message.split("\n")[0]));
        const start = lineCounter.linePos(error.pos[0]);
        return { ...issue, line: start.line, column: start.col };
      });
      throw new SpecError("syntax", issues, source);
    }
    try {
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (error) {
      throw new SpecError("syntax", [specIssue("", "valid YAML", JSON.stringify((error as Error).message))], source);
    }
  }
  return validateInternal(value, source, (path) => locate(doc, lineCounter, path));
}

/** Validates an already-parsed object (e.g. an HTTP JSON body); throws SpecError (kind 'invalid'). */
export function validateSpec(value: unknown, options: { source?: string } = {}): FederationSpec {
  return validateInternal(value, options.source);
}

/** Reads and parses a spec file; throws SpecError (kind 'unreadable', 'syntax' or 'invalid'). */
export async function loadSpecFile(path: string, options: { signal?: AbortSignal; format?: ParseSpecOptions["format"] } = {}): Promise<FederationSpec> {
  let text: string;
  try {
    text = await readFile(path, { encoding: "utf8", signal: options.signal });
  } catch (error) {
    if ((error as Error).name === "AbortError") throw error;
    const code = (error as NodeJS.ErrnoException).code ?? "error";
    throw new SpecError("unreadable", [specIssue("", "a readable spec file", `${code}: ${(error as Error).message}`)], path);
  }
  return parseSpec(text, { source: path, format: options.format ?? "auto" });
}

function resolveFormat(text: string, options: ParseSpecOptions): "yaml" | "json" {
  const format = options.format ?? "auto";
  if (format !== "auto") return format;
  if (options.source && /\.json$/i.test(options.source)) return "json";
  if (options.source && /\.ya?ml$/i.test(options.source)) return "yaml";
  return text.trimStart().startsWith("{") ? "json" : "yaml";
}

type Locator = (path: PropertyKey[]) => { line: number; column: number } | undefined;

/**
 * Fields flo derives and writes into a validated spec. A stored FederationSpec (spec.json) is
 * validated again when read back, so they are accepted, but only with the value flo would derive.
 */
const DERIVED_POLICY_FIELDS = ["roundTimeoutSeconds", "silosPerRound"] as const;

function withoutDerivedFields(value: unknown): { value: unknown; derived: Partial<Record<(typeof DERIVED_POLICY_FIELDS)[number], unknown>> } {
  const policy = (value as { policy?: unknown } | null)?.policy;
  if (typeof policy !== "object" || policy === null || Array.isArray(policy)) return { value, derived: {} };
  const derived: Partial<Record<(typeof DERIVED_POLICY_FIELDS)[number], unknown>> = {};
  const rest: Record<string, unknown> = { ...(policy as Record<string, unknown>) };
  for (const key of DERIVED_POLICY_FIELDS) {
    if (key in rest) {
      derived[key] = rest[key];
      delete rest[key];
    }
  }
  return { value: { ...(value as object), policy: rest }, derived };
}

function validateInternal(input: unknown, source: string | undefined, locator?: Locator): FederationSpec {
  const { value, derived } = withoutDerivedFields(input);
  const result = federationSpecSchema.safeParse(value, { reportInput: true });
  const issues: { issue: SpecIssue; path: PropertyKey[] }[] = [];
  if (!result.success) {
    for (const zodIssue of result.error.issues) issues.push(...fromZodIssue(zodIssue, value));
  }
  for (const issue of crossFieldIssues(value)) issues.push({ issue, path: parsePath(issue.path) });
  const spec = result.success && issues.length === 0 ? normalize(result.data) : undefined;
  if (spec) {
    for (const key of DERIVED_POLICY_FIELDS) {
      if (key in derived && derived[key] !== spec.policy[key]) {
        const from = key === "roundTimeoutSeconds" ? `policy.roundTimeout ${JSON.stringify(spec.policy.roundTimeout)}` : "the silo count and policy.sampleFraction";
        const issue = specIssue(`policy.${key}`, `${spec.policy[key]} (derived by flo from ${from}; omit this field)`, safeGot(derived[key]));
        issues.push({ issue, path: ["policy", key] });
      }
    }
  }
  if (issues.length > 0) {
    const located = issues.map(({ issue, path }) => {
      const position = locator?.(path);
      return position ? { ...issue, ...position } : issue;
    });
    // Top to bottom in the file; issues without a position keep their order, after the others.
    const ordered = dedupe(located).sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity) || (a.column ?? 0) - (b.column ?? 0));
    throw new SpecError("invalid", ordered, source);
  }
  return spec as FederationSpec;
}

function normalize(parsed: ParsedFederationSpec): FederationSpec {
  const perRound = silosPerRound(parsed.silos.length, parsed.policy.sampleFraction);
  const { policy } = parsed;
  // Field order as documented; the editor-only `$schema` is dropped.
  return {
    name: parsed.name,
    ...(parsed.description !== undefined ? { description: parsed.description } : {}),
    rounds: parsed.rounds,
    initialModel: parsed.initialModel ?? null,
    silos: parsed.silos,
    training: parsed.training,
    ...(parsed.evaluation !== undefined ? { evaluation: { ...parsed.evaluation, minSilos: parsed.evaluation.minSilos ?? effectiveMinSilos(policy.minSilos, perRound) } } : {}),
    aggregation: parsed.aggregation,
    policy: {
      minSilos: effectiveMinSilos(policy.minSilos, perRound),
      roundTimeout: policy.roundTimeout,
      roundTimeoutSeconds: parseIsoDuration(policy.roundTimeout),
      jobRetries: policy.jobRetries,
      sampleFraction: policy.sampleFraction,
      silosPerRound: perRound,
    },
    ...(parsed.schedule !== undefined ? { schedule: parsed.schedule } : {}),
    ...(parsed.owners !== undefined ? { owners: parsed.owners } : {}),
    ...(parsed.registration !== undefined ? { registration: parsed.registration } : {}),
  };
}

function dedupe(issues: SpecIssue[]): SpecIssue[] {
  const seen = new Set<string>();
  return issues.filter((issue) => {
    const key = `${issue.path}\u0000${issue.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

// ---- zod issues -> SpecIssues -------------------------------------------------------------------

type ZodIssue = z.core.$ZodIssue;

const TYPE_NAMES: Record<string, string> = {
  int: "an integer",
  number: "a number",
  string: "a string",
  boolean: "true or false",
  object: "a mapping",
  array: "a list",
  null: "null",
};

function fromZodIssue(issue: ZodIssue, root: unknown): { issue: SpecIssue; path: PropertyKey[] }[] {
  const path = [...issue.path];
  const at = formatPath(path);
  const input = (issue as { input?: unknown }).input;
  const got = safeGot(input);
  const one = (expected: string, gotText = got, hint?: string) => [{ issue: specIssue(at, expected, gotText, hint), path }];
  switch (issue.code) {
    case "invalid_type": {
      const expected = TYPE_NAMES[issue.expected] ?? issue.expected;
      if (path.length === 0) return one("a mapping of the spec's fields (name, rounds, silos, training...)");
      return one(expected);
    }
    case "invalid_format":
      if (issue.format === "regex") {
        const pattern = (issue as { pattern?: string }).pattern ?? "";
        return one(PATTERN_DESCRIPTIONS[pattern.replace(/^\/|\/[a-z]*$/g, "")] ?? stripAnchors(pattern));
      }
      if (issue.format === "guid" || issue.format === "uuid") return one("a GUID like 00000000-0000-0000-0000-000000000000");
      return one(`a ${issue.format}`);
    case "too_small":
    case "too_big": {
      const op = issue.code === "too_small" ? (issue.inclusive === false ? ">" : ">=") : issue.inclusive === false ? "<" : "<=";
      const bound = String((issue as { minimum?: unknown; maximum?: unknown }).minimum ?? (issue as { maximum?: unknown }).maximum);
      if (issue.origin === "array") return one(`${op === ">=" ? "at least" : "at most"} ${bound} item(s)`, got);
      if (issue.origin === "string") return one(`${op === ">=" ? "at least" : "at most"} ${bound} character(s)`);
      return one(`a number ${op} ${bound}`);
    }
    case "invalid_value":
      return one(issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map(String).join("|")}`);
    case "invalid_union": {
      const union = issue as { discriminator?: string; options?: unknown[] };
      if (union.discriminator) {
        const found = getAt(root, path);
        return one(`one of ${(union.options ?? []).map(String).join("|")}`, safeGot(found));
      }
      // A mapping where a literal or a typed input is allowed: report the typed input's own problems.
      const value = getAt(root, path);
      const objectBranch = (issue as { errors?: ZodIssue[][] }).errors?.find((branch) => branch.every((inner) => inner.path.length > 0));
      if (typeof value === "object" && value !== null && !Array.isArray(value) && objectBranch) {
        return objectBranch.flatMap((inner) => fromZodIssue({ ...inner, path: [...path, ...inner.path] }, root));
      }
      return one("a string, number or boolean");
    }
    case "invalid_key": {
      const pattern = (issue.issues[0] as { pattern?: string } | undefined)?.pattern;
      return one(`a name matching ${stripAnchors(pattern ?? "")}`, JSON.stringify(String(path[path.length - 1])));
    }
    case "unrecognized_keys":
      return issue.keys.map((key) => {
        const keyPath = [...path, key];
        const known = knownKeys(root, path);
        const suggestion = closest(key, known);
        const expected = known.length > 0 ? `only known fields (${known.join(", ")})` : "no extra fields";
        return {
          issue: specIssue(formatPath(keyPath), expected, `unknown field ${JSON.stringify(key)}`, suggestion ? `did you mean "${suggestion}"?` : undefined),
          path: keyPath,
        };
      });
    case "custom": {
      const params = (issue.params ?? {}) as { expected?: string; got?: string; hint?: string };
      return one(params.expected ?? issue.message, params.got ?? got, params.hint);
    }
    default:
      return one(issue.message);
  }
}

/** Never echo a value that looks like a credential, whatever rule it broke. */
function safeGot(value: unknown): string {
  if (typeof value === "string") {
    const reason = secretValueReason(value);
    if (reason) return `${reason} (value not shown)`;
  }
  return describeValue(value);
}

function stripAnchors(pattern: string): string {
  return pattern.replace(/^\/\^?/, "").replace(/\$?\/[a-z]*$/, "");
}

function getAt(root: unknown, path: PropertyKey[]): unknown {
  let node = root;
  for (const key of path) {
    if (node === null || typeof node !== "object") return undefined;
    node = (node as Record<PropertyKey, unknown>)[key];
  }
  return node;
}

/** The field names the schema allows at `path` (for "did you mean" on unknown fields). */
function knownKeys(root: unknown, path: PropertyKey[]): string[] {
  let schema: unknown = federationSpecSchema;
  let value = root;
  const unwrap = (s: unknown): unknown => {
    let current = s as { _zod: { def: Record<string, unknown> } };
    for (;;) {
      const dynamic = DYNAMIC_SCHEMAS.get(current);
      if (dynamic) current = dynamic() as unknown as typeof current;
      const def = current._zod.def;
      if (["optional", "nullable", "default", "prefault", "readonly", "nonoptional", "catch"].includes(def.type as string)) {
        current = def.innerType as typeof current;
      } else if (def.type === "pipe") current = def.in as typeof current;
      else if (def.type === "union" && typeof def.discriminator === "string") {
        const tag = (value as Record<string, unknown> | undefined)?.[def.discriminator];
        const options = def.options as (typeof current)[];
        const match = options.find((option) => (option._zod.def.shape as Record<string, { _zod: { def: { values?: unknown[] } } }>)?.[def.discriminator as string]?._zod.def.values?.includes(tag));
        if (!match) return current;
        current = match;
      } else return current;
    }
  };
  for (const key of path) {
    const def = (unwrap(schema) as { _zod: { def: Record<string, unknown> } })._zod.def;
    if (def.type === "object") schema = (def.shape as Record<string, unknown>)[key as string];
    else if (def.type === "array") schema = def.element;
    else if (def.type === "record") schema = def.valueType;
    else return [];
    if (!schema) return [];
    value = getAt(value, [key]);
  }
  const def = (unwrap(schema) as { _zod: { def: Record<string, unknown> } })._zod.def;
  return def.type === "object" ? Object.keys(def.shape as object).filter((k) => k !== "$schema") : [];
}

function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(word.length / 3)) ? best : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    previous = current;
  }
  return previous[b.length];
}

// ---- locating a path in the source text ---------------------------------------------------------

/** Inverse of formatPath: `silos[1].compute.workspace` -> ["silos", 1, "compute", "workspace"]. */
function parsePath(path: string): PropertyKey[] {
  const keys: PropertyKey[] = [];
  const pattern = /([^.[\]]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]/g;
  for (const match of path.matchAll(pattern)) {
    if (match[1] !== undefined) keys.push(match[1]);
    else if (match[2] !== undefined) keys.push(Number(match[2]));
    else keys.push(JSON.parse(match[3]) as string);
  }
  return keys;
}

function locate(doc: Document.Parsed, lineCounter: LineCounter, path: PropertyKey[]): { line: number; column: number } | undefined {
  let node: unknown = doc.contents;
  let offset: number | undefined = (node as YamlNode | null)?.range?.[0];
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((item) => isScalar(item.key) && String(item.key.value) === String(key));
      if (!pair) break;
      offset = (pair.key as YamlNode).range?.[0] ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof key === "number" && node.items[key]) {
      node = node.items[key];
      offset = (node as YamlNode).range?.[0] ?? offset;
    } else break;
  }
  if (offset === undefined) return undefined;
  return positionOf(lineCounter, offset);
}

function positionOf(source: string | LineCounter, offset: number): { line: number; column: number } {
  if (typeof source !== "string") {
    const { line, col } = source.linePos(offset);
    return { line, column: col };
  }
  const before = source.slice(0, offset).split("\n");
  return { line: before.length, column: before[before.length - 1].length + 1 };
}
