/** One problem found in a federation spec. JSON-serializable (the HTTP API returns these in a 400). */
export interface SpecIssue {
  /** Field path in the spec, e.g. `silos[1].compute.workspace`; "" for the whole document. */
  path: string;
  /** What the field must be, e.g. `[a-z0-9-]{1,32}` or `an integer >= 1`. */
  expected: string;
  /** What was found, e.g. `"East_1"` or `missing`. Never the value of something that looks like a secret. */
  got: string;
  /** One line: `expected <expected>, got <got>`, plus a hint when there is one. */
  message: string;
  /** 1-based position in the source text, when the spec came from text and the field can be located. */
  line?: number;
  column?: number;
}

export type SpecErrorKind = "syntax" | "invalid" | "unreadable";

/**
 * A federation spec that cannot be used. `kind`: `syntax` (not parseable YAML/JSON), `invalid`
 * (parsed but breaks the schema or a cross-field rule), `unreadable` (the file could not be read).
 * The message lists every issue, one per line: `<source>:<line>:<col> <path>: <message>`.
 */
export class SpecError extends Error {
  override readonly name = "SpecError";
  constructor(
    readonly kind: SpecErrorKind,
    readonly issues: SpecIssue[],
    readonly source?: string,
  ) {
    super(formatSpecIssues(kind, issues, source));
  }

  toJSON(): { error: string; kind: SpecErrorKind; source?: string; issues: SpecIssue[] } {
    return { error: this.name, kind: this.kind, source: this.source, issues: this.issues };
  }
}

const HEADINGS: Record<SpecErrorKind, string> = {
  syntax: "federation spec is not well-formed",
  invalid: "invalid federation spec",
  unreadable: "federation spec cannot be read",
};

export function formatSpecIssues(kind: SpecErrorKind, issues: SpecIssue[], source?: string): string {
  const where = source ? ` (${source})` : "";
  const count = issues.length === 1 ? "1 problem" : `${issues.length} problems`;
  const lines = issues.map((issue) => {
    const position = issue.line !== undefined ? `${source ?? "line"}:${issue.line}:${issue.column ?? 1} ` : "";
    return `  ${position}${issue.path || "(spec)"}: ${issue.message}`;
  });
  return [`${HEADINGS[kind]}${where}: ${count}`, ...lines].join("\n");
}

/** Builds an issue whose message is `expected X, got Y` (+ `: hint`). */
export function specIssue(path: string, expected: string, got: string, hint?: string): SpecIssue {
  return { path, expected, got, message: `expected ${expected}, got ${got}${hint ? ` (${hint})` : ""}` };
}

/** Formats a path of keys and indexes the way users write it: `silos[1].compute.workspace`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && /^[A-Za-z_$][A-Za-z0-9_$-]*$/.test(key)) out += out ? `.${key}` : key;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

/** Shows a found value briefly: strings quoted, long values cut, `missing` for undefined. */
export function describeValue(value: unknown): string {
  if (value === undefined) return "missing";
  if (value === null) return "null";
  if (Array.isArray(value)) return `a list of ${value.length}`;
  if (typeof value === "object") return "an object";
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- objects returned above: only primitives and functions get here
  const text = typeof value === "string" ? JSON.stringify(value) : String(value);
  return text.length > 80 ? `${text.slice(0, 77)}..."` : text;
}
