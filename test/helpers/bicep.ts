// A reader of Bicep files on a real Bicep grammar (tree-sitter-bicep): no Bicep CLI can run here, so
// the infra tests parse infra/ with it, fail on any syntax error and read declarations, module wiring
// and resource bodies from the syntax tree. `evaluate` computes the pure expressions the templates use
// to build names (string functions and user-defined functions), so tests can check generated names.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import Parser from "tree-sitter";
import BicepLanguage from "tree-sitter-bicep";

export type SyntaxNode = Parser.SyntaxNode;

const ROOT = join(__dirname, "..", "..");

export interface Decorator {
  name: string;
  args: SyntaxNode[];
}

export interface BicepParam {
  name: string;
  /** The declared type as written, e.g. `string`, `siloConfig[]`, `string?`. */
  type: string;
  defaultValue?: SyntaxNode;
  /** A default value or a nullable type: callers may leave it out. */
  optional: boolean;
  decorators: Decorator[];
  node: SyntaxNode;
}

export interface BicepNamed {
  name: string;
  value: SyntaxNode;
  decorators: Decorator[];
}

export interface BicepOutput extends BicepNamed {
  type: string;
}

export interface BicepFunction {
  name: string;
  parameters: string[];
  body: SyntaxNode;
  decorators: Decorator[];
}

export interface BicepImport {
  names: string[];
  /** Resolved path of the imported file. */
  target: string;
}

export interface Loop {
  item: string;
  index?: string;
  source: SyntaxNode;
}

/** What a `resource` or `module` declaration has in common: a symbol, maybe a loop and a condition, and its body object. */
export interface Declaration {
  file: BicepFile;
  symbol: string;
  loop?: Loop;
  condition?: SyntaxNode;
  /** The `scope` property; absent: the file's own scope. */
  scope?: SyntaxNode;
  body: SyntaxNode;
  node: SyntaxNode;
}

export interface BicepModule extends Declaration {
  /** Resolved path of the module file. */
  target: string;
  /** The `params` object, when there is one. */
  params?: SyntaxNode;
}

export interface BicepResource extends Declaration {
  type: string;
  apiVersion: string;
  existing: boolean;
}

export interface BicepFile {
  path: string;
  /** Path relative to the repository root, for messages. */
  name: string;
  source: string;
  root: SyntaxNode;
  targetScope: string;
  params: Map<string, BicepParam>;
  vars: Map<string, BicepNamed>;
  outputs: Map<string, BicepOutput>;
  types: Map<string, BicepNamed>;
  functions: Map<string, BicepFunction>;
  imports: BicepImport[];
  modules: BicepModule[];
  resources: BicepResource[];
}

export class BicepSyntaxError extends Error {
  constructor(
    readonly file: string,
    readonly problems: string[],
  ) {
    super(`${file}: Bicep syntax errors:\n${problems.join("\n")}`);
    this.name = "BicepSyntaxError";
  }
}

let parser: Parser | undefined;
function bicepParser(): Parser {
  if (!parser) {
    parser = new Parser();
    parser.setLanguage(BicepLanguage as unknown as Parser.Language);
  }
  return parser;
}

/** `file:line:column` of a node (1-based, as editors show them). */
export function location(file: BicepFile | string, node: SyntaxNode): string {
  const name = typeof file === "string" ? file : file.name;
  return `${name}:${node.startPosition.row + 1}:${node.startPosition.column + 1}`;
}

function syntaxProblems(name: string, root: SyntaxNode): string[] {
  const problems: string[] = [];
  const visit = (node: SyntaxNode): void => {
    if (node.isMissing) problems.push(`${location(name, node)}: missing ${JSON.stringify(node.type)}`);
    else if (node.type === "ERROR") problems.push(`${location(name, node)}: unexpected ${JSON.stringify(node.text.slice(0, 60))}`);
    if (node.hasError) for (const child of node.children) visit(child);
  };
  visit(root);
  // hasError without an ERROR or MISSING node below would be a grammar quirk: still a failure.
  if (root.hasError && problems.length === 0) problems.push(`${name}: the parser reports an error it does not locate`);
  return problems;
}

function decoratorsOf(node: SyntaxNode): Decorator[] {
  const previous = node.previousSibling;
  if (!previous || previous.type !== "decorators") return [];
  return previous.namedChildren.map((decorator) => {
    const call = decorator.namedChildren[0];
    const fn = call.type === "call_expression" ? call.childForFieldName("function") : call;
    const args = call.type === "call_expression" ? (call.childForFieldName("arguments")?.namedChildren ?? []) : [];
    return { name: fn?.text ?? call.text, args };
  });
}

function firstOfType(node: SyntaxNode, type: string): SyntaxNode | undefined {
  return node.namedChildren.find((c) => c.type === type);
}

/** The name identifier of a declaration (`param x`, `var x`, `resource x`, ...). */
function declaredName(node: SyntaxNode): string {
  const id = node.childForFieldName("name") ?? firstOfType(node, "identifier");
  if (!id) throw new Error(`declaration without a name at ${node.startPosition.row + 1}`);
  return id.text;
}

/** The value after `=` of a param/var/output/type declaration. */
function valueAfterEquals(node: SyntaxNode): SyntaxNode | undefined {
  const eq = node.children.findIndex((c) => c.type === "=");
  return eq < 0 ? undefined : node.children.slice(eq + 1).find((c) => c.isNamed);
}

/** A for-expression: its loop, its `if` filter and its body (any expression). */
function readFor(file: BicepFile | string, node: SyntaxNode): { loop: Loop; condition?: SyntaxNode; body: SyntaxNode } {
  const parameters = firstOfType(node, "for_loop_parameters");
  const item = parameters ? firstOfType(parameters, "loop_variable")?.text : node.childForFieldName("initializer")?.text;
  const index = parameters ? firstOfType(parameters, "loop_enumerator")?.text : undefined;
  const inAt = node.children.findIndex((c) => c.type === "in");
  const source = node.children.slice(inAt + 1).find((c) => c.isNamed);
  const body = node.childForFieldName("body");
  if (!item || !source || !body) throw new Error(`${location(file, node)}: unreadable for-expression`);
  return { loop: { item, index, source }, ...readIf(file, body) };
}

/** `if (test) body` as condition and body; any other node is its own body. */
function readIf(file: BicepFile | string, node: SyntaxNode): { condition?: SyntaxNode; body: SyntaxNode } {
  if (node.type !== "if_statement") return { body: node };
  const condition = firstOfType(node, "parenthesized_expression")?.namedChildren[0];
  const body = node.namedChildren[node.namedChildren.length - 1];
  if (!condition || body.type === "parenthesized_expression") throw new Error(`${location(file, node)}: unreadable if-expression`);
  return { condition, body };
}

/** Splits `[for ...: if (...) {...}]`, `if (...) {...}` or `{...}` into loop, condition and body object. */
function unwrapBody(file: string, value: SyntaxNode): { loop?: Loop; condition?: SyntaxNode; body: SyntaxNode } {
  const parts = value.type === "for_statement" ? readFor(file, value) : readIf(file, value);
  if (parts.body.type !== "object") throw new Error(`${location(file, parts.body)}: expected an object body, got ${parts.body.type}`);
  return parts;
}

/** Parses one Bicep file; throws BicepSyntaxError (with file:line:column) on any syntax error. */
export function parseBicep(path: string, source: string = readFileSync(path, "utf8")): BicepFile {
  const name = relative(ROOT, path);
  const root = bicepParser().parse(source).rootNode;
  const problems = syntaxProblems(name, root);
  if (problems.length > 0) throw new BicepSyntaxError(name, problems);

  const file: BicepFile = {
    path,
    name,
    source,
    root,
    targetScope: "resourceGroup",
    params: new Map(),
    vars: new Map(),
    outputs: new Map(),
    types: new Map(),
    functions: new Map(),
    imports: [],
    modules: [],
    resources: [],
  };
  for (const node of root.namedChildren) {
    switch (node.type) {
      case "target_scope_assignment":
        file.targetScope = literal(file, node.namedChildren[node.namedChildren.length - 1]) as string;
        break;
      case "import_functionality": {
        const from = firstOfType(node, "string");
        if (!from) throw new Error(`${location(file, node)}: import without a path`);
        const names = node.namedChildren.filter((c) => c.type === "identifier").map((c) => c.text);
        file.imports.push({ names, target: resolve(dirname(path), literal(file, from) as string) });
        break;
      }
      case "parameter_declaration": {
        const type = firstOfType(node, "type");
        const defaultValue = valueAfterEquals(node);
        const typeText = type?.text ?? "";
        file.params.set(declaredName(node), {
          name: declaredName(node),
          type: typeText,
          defaultValue,
          optional: defaultValue !== undefined || typeText.endsWith("?"),
          decorators: decoratorsOf(node),
          node,
        });
        break;
      }
      case "variable_declaration":
      case "type_declaration": {
        const value = valueAfterEquals(node);
        if (!value) throw new Error(`${location(file, node)}: declaration without a value`);
        (node.type === "variable_declaration" ? file.vars : file.types).set(declaredName(node), { name: declaredName(node), value, decorators: decoratorsOf(node) });
        break;
      }
      case "output_declaration": {
        const value = valueAfterEquals(node);
        if (!value) throw new Error(`${location(file, node)}: output without a value`);
        file.outputs.set(declaredName(node), { name: declaredName(node), type: firstOfType(node, "type")?.text ?? "", value, decorators: decoratorsOf(node) });
        break;
      }
      case "user_defined_function": {
        const parameters = (firstOfType(node, "parameters")?.namedChildren ?? []).map((p) => firstOfType(p, "identifier")?.text ?? p.text);
        const arrow = node.children.findIndex((c) => c.type === "=>");
        const body = node.children.slice(arrow + 1).find((c) => c.isNamed);
        if (!body) throw new Error(`${location(file, node)}: function without a body`);
        file.functions.set(declaredName(node), { name: declaredName(node), parameters, body, decorators: decoratorsOf(node) });
        break;
      }
      case "module_declaration":
      case "resource_declaration": {
        const symbol = declaredName(node);
        const typeString = firstOfType(node, "string");
        const value = valueAfterEquals(node);
        if (!typeString || !value) throw new Error(`${location(file, node)}: unreadable ${node.type}`);
        const { loop, condition, body } = unwrapBody(name, value);
        const reference = literal(file, typeString) as string;
        if (node.type === "module_declaration") {
          file.modules.push({ file, symbol, target: resolve(dirname(path), reference), loop, condition, scope: propNode(body, "scope"), body, node, params: propNode(body, "params") });
        } else {
          const [type, apiVersion] = reference.split("@");
          const existing = node.children.some((c) => c.type === "existing");
          file.resources.push({ file, symbol, type, apiVersion, existing, loop, condition, scope: propNode(body, "scope"), body, node });
        }
        break;
      }
      default:
        break;
    }
  }
  return file;
}

/** Every .bicep file under a folder, recursively. */
export function bicepFilesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return bicepFilesUnder(path);
    return entry.name.endsWith(".bicep") ? [path] : [];
  });
}

/** The properties of an object literal, by key (decorators and comments skipped). */
export function objectProperties(object: SyntaxNode): Map<string, SyntaxNode> {
  const properties = new Map<string, SyntaxNode>();
  for (const property of object.namedChildren) {
    if (property.type !== "object_property") continue;
    const [key, value] = property.namedChildren;
    const keyText = key.type === "string" ? key.text.slice(1, -1) : key.text;
    if (value) properties.set(keyText, value);
  }
  return properties;
}

/** The node at a dotted property path of an object, a resource or a module body (`properties.principalType`). */
export function propNode(owner: Declaration | SyntaxNode, path: string): SyntaxNode | undefined {
  let node: SyntaxNode | undefined = "body" in owner ? owner.body : owner;
  for (const key of path.split(".")) {
    if (!node || node.type !== "object") return undefined;
    node = objectProperties(node).get(key);
  }
  return node;
}

/** The literal value at a property path (string, number, boolean, null, or arrays/objects of them); undefined when absent. */
export function prop(owner: Declaration | SyntaxNode, path: string): unknown {
  const node = propNode(owner, path);
  if (!node) return undefined;
  const file = "file" in owner ? owner.file : undefined;
  return literal(file, node);
}

/** Source text of an expression with whitespace runs collapsed, for comparing non-literal expressions. */
export function expr(node: SyntaxNode | undefined): string | undefined {
  return node?.text.replace(/\s+/g, " ").trim();
}

/** The value of a string literal without interpolation, a number, boolean, null, or an array/object of those. */
export function literal(file: BicepFile | string | undefined, node: SyntaxNode): unknown {
  const fail = (): never => {
    const where = file ? location(file, node) : `line ${node.startPosition.row + 1}`;
    throw new Error(`${where}: expected a literal, got ${node.type} ${JSON.stringify(expr(node))}`);
  };
  switch (node.type) {
    case "string":
      if (node.namedChildren.some((c) => c.type === "interpolation")) fail();
      return stringParts(node, () => fail());
    case "number":
      return Number(node.text);
    case "boolean":
      return node.text === "true";
    case "null":
      return null;
    case "array":
      return node.namedChildren.filter((c) => c.type !== "comment").map((c) => literal(file, c));
    case "object":
      return Object.fromEntries([...objectProperties(node)].map(([k, v]) => [k, literal(file, v)]));
    default:
      return fail();
  }
}

const ESCAPES: Record<string, string> = { "\\\\": "\\", "\\'": "'", "\\n": "\n", "\\r": "\r", "\\t": "\t", "\\$": "$" };

/** Concatenates a string node's parts; interpolations go through `interpolate`. */
function stringParts(node: SyntaxNode, interpolate: (inner: SyntaxNode) => string): string {
  if (node.text.startsWith("'''")) return node.text.slice(3, -3).replace(/^\r?\n/, "");
  let out = "";
  for (const part of node.namedChildren) {
    if (part.type === "string_content") out += part.text;
    else if (part.type === "escape_sequence") out += ESCAPES[part.text] ?? part.text;
    else if (part.type === "interpolation") out += interpolate(part.namedChildren[0]);
  }
  return out;
}

/* ----------------------------------------------- evaluator ----------------------------------------------- */

/** Values of the free identifiers (params, loop variables) and where functions and vars come from. */
export interface EvaluationScope {
  file: BicepFile;
  values?: Record<string, unknown>;
  /** Files whose exported functions `import` brings in, by resolved path. */
  files?: Map<string, BicepFile>;
}

/**
 * A stand-in for ARM's uniqueString: deterministic and of the same shape (13 characters of [a-z0-9]),
 * not the same hash. Enough to check lengths and that different inputs give different names.
 */
export function uniqueStringStandIn(...parts: string[]): string {
  const digest = createHash("sha256").update(parts.join("\u0000")).digest();
  const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
  return Array.from(digest.subarray(0, 13), (byte) => alphabet[byte % 32]).join("");
}

const BUILTINS: Record<string, (...args: unknown[]) => unknown> = {
  replace: (s, from, to) => String(s).split(String(from)).join(String(to)),
  toLower: (s) => String(s).toLowerCase(),
  toUpper: (s) => String(s).toUpperCase(),
  take: (s, n) => (Array.isArray(s) ? s.slice(0, Number(n)) : String(s).slice(0, Number(n))),
  length: (s) => (Array.isArray(s) || typeof s === "string" ? s.length : Object.keys(s as object).length),
  concat: (...xs) => (xs.every(Array.isArray) ? (xs as unknown[][]).flat() : xs.map(String).join("")),
  empty: (x) => x === null || x === undefined || x === "" || (Array.isArray(x) && x.length === 0) || (typeof x === "object" && Object.keys(x).length === 0),
  join: (xs, sep) => (xs as unknown[]).map(String).join(String(sep)),
  uniqueString: (...xs) => uniqueStringStandIn(...xs.map(String)),
  substring: (s, start, len) => String(s).substr(Number(start), len === undefined ? undefined : Number(len)),
  startsWith: (s, p) => String(s).toLowerCase().startsWith(String(p).toLowerCase()),
  range: (start, count) => Array.from({ length: Number(count) }, (_, i) => Number(start) + i),
};

/** Evaluates a pure Bicep expression: literals, string interpolation, operators, string built-ins, user-defined functions, vars. */
export function evaluate(node: SyntaxNode, scope: EvaluationScope): unknown {
  const { file } = scope;
  const values = scope.values ?? {};
  const fail = (why: string): never => {
    throw new Error(`${location(file, node)}: cannot evaluate ${JSON.stringify(expr(node))}: ${why}`);
  };
  const sub = (n: SyntaxNode, extra?: Record<string, unknown>) => evaluate(n, extra ? { ...scope, values: { ...values, ...extra } } : scope);
  switch (node.type) {
    case "string":
      return stringParts(node, (inner) => String(sub(inner)));
    case "number":
    case "boolean":
    case "null":
      return literal(file, node);
    case "parenthesized_expression":
      return sub(node.namedChildren[0]);
    case "array":
      return node.namedChildren.filter((c) => c.type !== "comment").map((c) => sub(c));
    case "object":
      return Object.fromEntries([...objectProperties(node)].map(([k, v]) => [k, sub(v)]));
    case "identifier": {
      if (node.text in values) return values[node.text];
      const variable = file.vars.get(node.text);
      // vars see the caller's param values (vars and params share the file's namespace)
      if (variable) return evaluate(variable.value, scope);
      const param = file.params.get(node.text);
      if (param?.defaultValue) return evaluate(param.defaultValue, { ...scope, values: {} });
      return fail(`no value for ${node.text}`);
    }
    case "member_expression": {
      const object = sub(node.childForFieldName("object")!);
      const key = node.childForFieldName("property")!.text;
      const optional = node.children.some((c) => c.type === ".?");
      if (object === null || object === undefined || typeof object !== "object") return optional ? null : fail(`${key} of ${String(object)}`);
      const value = (object as Record<string, unknown>)[key];
      return value === undefined ? (optional ? null : fail(`no property ${key}`)) : value;
    }
    case "subscript_expression": {
      const object = sub(node.childForFieldName("object")!) as Record<string | number, unknown>;
      return object[sub(node.childForFieldName("index")!) as string | number];
    }
    case "unary_expression": {
      const argument = sub(node.childForFieldName("argument")!);
      const operator = node.childForFieldName("operator")!.text;
      return operator === "!" ? !argument : -Number(argument);
    }
    case "binary_expression": {
      const operator = node.childForFieldName("operator")!.text;
      const left = sub(node.childForFieldName("left")!);
      if (operator === "??") return left ?? sub(node.childForFieldName("right")!);
      if (operator === "&&") return Boolean(left) && Boolean(sub(node.childForFieldName("right")!));
      if (operator === "||") return Boolean(left) || Boolean(sub(node.childForFieldName("right")!));
      const right = sub(node.childForFieldName("right")!);
      const operations: Record<string, () => unknown> = {
        "+": () => Number(left) + Number(right),
        "-": () => Number(left) - Number(right),
        "*": () => Number(left) * Number(right),
        "<=": () => Number(left) <= Number(right),
        "<": () => Number(left) < Number(right),
        ">=": () => Number(left) >= Number(right),
        ">": () => Number(left) > Number(right),
        "==": () => left === right,
        "!=": () => left !== right,
      };
      return (operations[operator] ?? (() => fail(`operator ${operator}`)))();
    }
    case "ternary_expression":
      return sub(node.childForFieldName("condition")!) ? sub(node.childForFieldName("consequence")!) : sub(node.childForFieldName("alternative")!);
    case "for_statement": {
      const { loop, condition, body } = readFor(file, node);
      const items = sub(loop.source) as unknown[];
      return items.flatMap((item, i) => {
        const bound = { [loop.item]: item, ...(loop.index ? { [loop.index]: i } : {}) };
        if (condition && !sub(condition, bound)) return [];
        return [sub(body, bound)];
      });
    }
    case "call_expression": {
      const name = node.childForFieldName("function")!.text;
      const args = (node.childForFieldName("arguments")?.namedChildren ?? []).map((a) => sub(a));
      const own = userFunction(scope, name);
      if (own) return evaluate(own.fn.body, { ...scope, file: own.file, values: Object.fromEntries(own.fn.parameters.map((p, i) => [p, args[i]])) });
      const builtin = BUILTINS[name];
      return builtin ? builtin(...args) : fail(`unknown function ${name}`);
    }
    default:
      return fail(`unsupported ${node.type}`);
  }
}

function userFunction(scope: EvaluationScope, name: string): { fn: BicepFunction; file: BicepFile } | undefined {
  const local = scope.file.functions.get(name);
  if (local) return { fn: local, file: scope.file };
  for (const imported of scope.file.imports) {
    if (!imported.names.includes(name)) continue;
    const target = scope.files?.get(imported.target);
    const fn = target?.functions.get(name);
    if (target && fn) return { fn, file: target };
  }
  return undefined;
}

/** Identifier nodes that refer to something (not declaration names, object keys, or called function names). */
export function references(root: SyntaxNode): SyntaxNode[] {
  const found: SyntaxNode[] = [];
  const visit = (node: SyntaxNode): void => {
    if (node.type === "identifier") {
      const parent = node.parent;
      const isKey = parent?.type === "object_property" && parent.namedChildren[0]?.id === node.id;
      const isCallee = parent?.type === "call_expression" && parent.childForFieldName("function")?.id === node.id;
      const isDeclared = parent !== null && /_declaration$|^user_defined_function$|^parameter$/.test(parent.type) && parent.namedChildren.find((c) => c.type === "identifier")?.id === node.id;
      if (!isKey && !isCallee && !isDeclared) found.push(node);
    }
    for (const child of node.namedChildren) visit(child);
  };
  visit(root);
  return found;
}

/** Calls of a function anywhere below a node, e.g. every listKeys(...). */
export function calls(root: SyntaxNode, name: RegExp): SyntaxNode[] {
  return root.descendantsOfType("call_expression").filter((call) => name.test(call.childForFieldName("function")?.text ?? ""));
}
