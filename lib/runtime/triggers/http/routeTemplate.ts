/**
 * ASP.NET-style route templates as the Functions host uses them for `app.http` routes:
 * literals (case-insensitive), `{name}`, optional `{name?}`, defaults `{name=value}`, catch-all `{*name}`,
 * and inline constraints `{id:int}`, `{name:alpha:minlength(2)}`, `{n:range(1,9)}`, `{s:regex(^a+$)}`.
 * Pure logic: no I/O.
 */

/** A route template that cannot be parsed. */
export class RouteTemplateError extends Error {
  constructor(
    readonly template: string,
    readonly reason: string,
  ) {
    super(`Invalid route template "${template}": ${reason}`);
    this.name = "RouteTemplateError";
  }
}

export interface RouteConstraint {
  name: string;
  args: string[];
}

export interface RouteParameter {
  name: string;
  optional: boolean;
  catchAll: boolean;
  defaultValue?: string;
  constraints: RouteConstraint[];
}

type Part = { kind: "literal"; text: string } | { kind: "param"; param: RouteParameter };

interface Segment {
  parts: Part[];
}

export interface CompiledRoute {
  template: string;
  parameters: RouteParameter[];
  /** Precedence key: lower sorts first (more specific). */
  precedence: number[];
  match(path: string): Record<string, string> | undefined;
}

const KNOWN_CONSTRAINTS = new Set(["int", "long", "bool", "alpha", "guid", "float", "double", "decimal", "datetime", "min", "max", "range", "length", "minlength", "maxlength", "regex", "required"]);

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** Splits `int:min(1):regex(a:b)` at the colons that are not inside parentheses. */
function splitConstraints(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let current = "";
  for (const ch of text) {
    if (ch === "(") depth++;
    if (ch === ")") depth--;
    if (ch === ":" && depth === 0) {
      out.push(current);
      current = "";
    } else current += ch;
  }
  out.push(current);
  return out;
}

function parseParameter(body: string, template: string): RouteParameter {
  let text = body;
  const catchAll = text.startsWith("*");
  if (catchAll) text = text.replace(/^\*+/, "");
  let optional = false;
  if (text.endsWith("?")) {
    optional = true;
    text = text.slice(0, -1);
  }
  let defaultValue: string | undefined;
  const pieces = splitConstraints(text);
  const head = pieces.shift() ?? "";
  let name = head;
  const last = pieces.length > 0 ? pieces[pieces.length - 1] : undefined;
  const eqInName = name.indexOf("=");
  if (eqInName >= 0) {
    defaultValue = name.slice(eqInName + 1);
    name = name.slice(0, eqInName);
  } else if (last !== undefined && !last.includes("(") && last.includes("=")) {
    const eq = last.indexOf("=");
    defaultValue = last.slice(eq + 1);
    pieces[pieces.length - 1] = last.slice(0, eq);
  }
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new RouteTemplateError(template, `parameter name "${name}" must be an identifier`);
  const constraints = pieces.map((piece) => {
    const m = /^([A-Za-z]+)(?:\((.*)\))?$/s.exec(piece);
    if (!m) throw new RouteTemplateError(template, `bad constraint "${piece}" on parameter "${name}"`);
    const cname = m[1].toLowerCase();
    const args = m[2] === undefined ? [] : cname === "regex" ? [m[2]] : m[2].split(",").map((a) => a.trim());
    return { name: cname, args };
  });
  return { name, optional: optional || defaultValue !== undefined, catchAll, defaultValue, constraints };
}

function parseSegment(segment: string, template: string): Segment {
  const parts: Part[] = [];
  let i = 0;
  while (i < segment.length) {
    const open = segment.indexOf("{", i);
    if (open < 0) {
      parts.push({ kind: "literal", text: segment.slice(i) });
      break;
    }
    if (open > i) parts.push({ kind: "literal", text: segment.slice(i, open) });
    // find the matching close brace (regex constraints may contain braces: `{x:regex(^\\d{3}$)}`)
    let depth = 0;
    let close = -1;
    for (let j = open; j < segment.length; j++) {
      if (segment[j] === "{") depth++;
      if (segment[j] === "}") depth--;
      if (depth === 0) {
        close = j;
        break;
      }
    }
    if (close < 0) throw new RouteTemplateError(template, `unclosed "{" in segment "${segment}"`);
    parts.push({ kind: "param", param: parseParameter(segment.slice(open + 1, close), template) });
    i = close + 1;
  }
  const params = parts.filter((p) => p.kind === "param");
  if (params.length > 0 && parts.length > 1 && params.some((p) => p.kind === "param" && (p.param.optional || p.param.catchAll))) {
    throw new RouteTemplateError(template, `optional or catch-all parameters must be the whole segment ("${segment}")`);
  }
  for (let k = 1; k < parts.length; k++) {
    if (parts[k].kind === "param" && parts[k - 1].kind === "param") {
      throw new RouteTemplateError(template, `two parameters must be separated by a literal in segment "${segment}"`);
    }
  }
  return { parts };
}

/** Checks one captured value against a parameter's constraints (unknown constraint names are ignored). */
export function satisfiesConstraints(value: string, constraints: RouteConstraint[]): boolean {
  for (const { name, args } of constraints) {
    const num = Number(value);
    switch (name) {
      case "int":
      case "long":
        if (!/^-?\d+$/.test(value)) return false;
        break;
      case "bool":
        if (!/^(true|false)$/i.test(value)) return false;
        break;
      case "alpha":
        if (!/^[A-Za-z]+$/.test(value)) return false;
        break;
      case "guid":
        if (!/^\{?[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\}?$/i.test(value)) return false;
        break;
      case "float":
      case "double":
      case "decimal":
        if (value.trim() === "" || !Number.isFinite(num)) return false;
        break;
      case "datetime":
        if (Number.isNaN(Date.parse(value))) return false;
        break;
      case "min":
        if (!Number.isFinite(num) || num < Number(args[0])) return false;
        break;
      case "max":
        if (!Number.isFinite(num) || num > Number(args[0])) return false;
        break;
      case "range":
        if (!Number.isFinite(num) || num < Number(args[0]) || num > Number(args[1])) return false;
        break;
      case "length":
        if (args.length === 1 ? value.length !== Number(args[0]) : value.length < Number(args[0]) || value.length > Number(args[1])) return false;
        break;
      case "minlength":
        if (value.length < Number(args[0])) return false;
        break;
      case "maxlength":
        if (value.length > Number(args[0])) return false;
        break;
      case "regex":
        if (!new RegExp(args[0], "i").test(value)) return false;
        break;
      default:
        if (!KNOWN_CONSTRAINTS.has(name)) continue; // parsed, deliberately not enforced
    }
  }
  return true;
}

function segmentRank(segment: Segment): number {
  if (segment.parts.length > 1) return 1;
  const [part] = segment.parts;
  if (part.kind === "literal") return 0;
  if (part.param.catchAll) return 5;
  if (part.param.optional) return 4;
  return part.param.constraints.length > 0 ? 2 : 3;
}

/**
 * Compiles a template (without the route prefix) under `prefix`. Matching is case-insensitive for
 * literals, decodes each captured segment, and applies constraints and defaults.
 */
export function compileRoute(template: string, prefix = ""): CompiledRoute {
  const trimmed = template.replace(/^[~/]+|\/+$/g, "");
  const segments =
    trimmed === ""
      ? []
      : trimmed.split("/").map((s) => {
          if (s === "") throw new RouteTemplateError(template, 'empty segment ("//")');
          return parseSegment(s, template);
        });
  const parameters: RouteParameter[] = [];
  let pattern = "";
  const groups: RouteParameter[] = [];
  segments.forEach((segment, index) => {
    const onlyParam = segment.parts.length === 1 && segment.parts[0].kind === "param" ? segment.parts[0].param : undefined;
    if (onlyParam?.catchAll && index !== segments.length - 1) throw new RouteTemplateError(template, `catch-all "{*${onlyParam.name}}" must be the last segment`);
    if (onlyParam && (onlyParam.optional || onlyParam.catchAll)) {
      // optional: the whole "/value" may be absent; all later segments must then be optional too
      pattern += onlyParam.catchAll ? "(?:/(.*))?" : "(?:/([^/]+))?";
      groups.push(onlyParam);
      parameters.push(onlyParam);
      return;
    }
    const laterRequired = segments.slice(0, index).some((s) => s.parts.length === 1 && s.parts[0].kind === "param" && s.parts[0].param.optional && !s.parts[0].param.catchAll);
    if (laterRequired) throw new RouteTemplateError(template, "an optional parameter must not be followed by a required segment");
    pattern += "/";
    for (const part of segment.parts) {
      if (part.kind === "literal") pattern += escapeRegex(part.text);
      else {
        pattern += "([^/]+?)";
        groups.push(part.param);
        parameters.push(part.param);
      }
    }
  });
  const names = parameters.map((p) => p.name.toLowerCase());
  const duplicate = names.find((n, i) => names.indexOf(n) !== i);
  if (duplicate) throw new RouteTemplateError(template, `parameter "${duplicate}" appears twice`);
  const cleanPrefix = prefix.replace(/^\/+|\/+$/g, "");
  const prefixPattern = cleanPrefix === "" ? "" : "/" + cleanPrefix.split("/").map(escapeRegex).join("/");
  const regex = new RegExp(`^${prefixPattern}${pattern}/?$`, "i");
  const emptyRoot = prefixPattern === "" && pattern === "";

  return {
    template,
    parameters,
    precedence: segments.map(segmentRank),
    match(path: string) {
      if (emptyRoot) return path === "/" || path === "" ? {} : undefined;
      const m = regex.exec(path);
      if (!m) return undefined;
      const params: Record<string, string> = {};
      for (let g = 0; g < groups.length; g++) {
        const param = groups[g];
        const raw = m[g + 1];
        if (raw === undefined || raw === "") {
          if (param.defaultValue !== undefined) params[param.name] = param.defaultValue;
          continue;
        }
        let value: string;
        try {
          value = param.catchAll ? raw.split("/").map(decodeURIComponent).join("/") : decodeURIComponent(raw);
        } catch {
          return undefined;
        }
        if (!satisfiesConstraints(value, param.constraints)) return undefined;
        params[param.name] = value;
      }
      return params;
    },
  };
}

/** Orders routes the way ASP.NET routing prefers them: literal segments before parameters, etc. */
export function compareRoutePrecedence(a: CompiledRoute, b: CompiledRoute): number {
  const n = Math.max(a.precedence.length, b.precedence.length);
  for (let i = 0; i < n; i++) {
    const ra = a.precedence[i] ?? -1;
    const rb = b.precedence[i] ?? -1;
    if (ra !== rb) return ra - rb;
  }
  return a.template.localeCompare(b.template);
}
