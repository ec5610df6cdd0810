/**
 * The silo job command template (Azure ML syntax), part of the silo job contract every compute
 * backend follows:
 *   ${{inputs.X}}   replaced by input X's value
 *   ${{outputs.X}}  replaced by output X's location
 *   $[[ ... ]]      an optional part, dropped when an input inside it is absent
 *                   (round 1 without an initial model has no `global_model`)
 * Rendering is shell-free: the template is split into argv tokens with POSIX-like quoting, and a
 * substituted value is never split, so paths with spaces work whether or not the template quotes them.
 */

/** Inputs every silo job receives whatever the spec says. */
export const ALWAYS_PROVIDED_INPUTS = ["round", "silo", "federation_id"] as const;
/** The round's global model folder: absent in round 1 when the spec has no initial model. */
export const GLOBAL_MODEL_INPUT = "global_model";
/** Every name flo provides itself; a spec may not define inputs with these names. */
export const BUILTIN_INPUTS: readonly string[] = [...ALWAYS_PROVIDED_INPUTS, GLOBAL_MODEL_INPUT];
/** The one output of a silo job: a folder receiving model.safetensors and metrics.json. */
export const MODEL_UPDATE_OUTPUT = "model_update";

/**
 * A command template that cannot be parsed or rendered. `expected`/`got` feed the spec's issue list;
 * `index` is a 0-based offset into the template when the problem has a position.
 */
export class CommandTemplateError extends Error {
  override readonly name = "CommandTemplateError";
  constructor(
    readonly expected: string,
    readonly got: string,
    readonly details: { index?: number; placeholder?: string } = {},
  ) {
    super(`${details.index !== undefined ? `at character ${details.index + 1}: ` : ""}expected ${expected}, got ${got}`);
  }
}

export type TemplateSegment =
  | { kind: "text"; text: string; index: number }
  | { kind: "input"; name: string; index: number }
  | { kind: "output"; name: string; index: number }
  | { kind: "optional"; parts: TemplateSegment[]; index: number };

export interface CommandTemplate {
  segments: TemplateSegment[];
  /** Distinct input names in order of first appearance; `optional` = only ever referenced inside $[[ ]]. */
  inputs: { name: string; optional: boolean }[];
  /** Distinct output names in order of first appearance. */
  outputs: string[];
}

const PLACEHOLDER = /^\$\{\{\s*(inputs|outputs)\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}/;

/** Parses a command template; throws CommandTemplateError on malformed placeholders or optional parts. */
export function parseCommandTemplate(command: string): CommandTemplate {
  const segments: TemplateSegment[] = [];
  let current = segments;
  let optionalStart = -1;
  let text = "";
  let textIndex = 0;
  const flushText = (at: number) => {
    if (text) current.push({ kind: "text", text, index: textIndex });
    text = "";
    textIndex = at;
  };
  let i = 0;
  while (i < command.length) {
    if (command.startsWith("${{", i)) {
      const match = PLACEHOLDER.exec(command.slice(i));
      if (!match) {
        const close = command.indexOf("}}", i);
        const shown = close < 0 ? command.slice(i, i + 40) : command.slice(i, close + 2);
        throw new CommandTemplateError("${{inputs.<name>}} or ${{outputs.<name>}}", JSON.stringify(shown), { index: i, placeholder: shown });
      }
      flushText(i);
      current.push({ kind: match[1] === "inputs" ? "input" : "output", name: match[2], index: i });
      i += match[0].length;
      textIndex = i;
      continue;
    }
    if (command.startsWith("$[[", i)) {
      if (optionalStart >= 0) {
        throw new CommandTemplateError(`"]]" closing the "$[[" at character ${optionalStart + 1} first`, 'a nested "$[["', { index: i });
      }
      flushText(i);
      const group: TemplateSegment = { kind: "optional", parts: [], index: i };
      segments.push(group);
      current = group.parts;
      optionalStart = i;
      i += 3;
      textIndex = i;
      continue;
    }
    if (optionalStart >= 0 && command.startsWith("]]", i)) {
      flushText(i);
      const group = segments[segments.length - 1] as Extract<TemplateSegment, { kind: "optional" }>;
      if (!group.parts.some((part) => part.kind === "input")) {
        // An optional part is kept or dropped by the presence of its inputs: without one it means nothing.
        throw new CommandTemplateError("an ${{inputs.<name>}} inside the optional part $[[ ... ]]", "none", { index: optionalStart });
      }
      current = segments;
      optionalStart = -1;
      i += 2;
      textIndex = i;
      continue;
    }
    text += command[i];
    i += 1;
  }
  if (optionalStart >= 0) {
    throw new CommandTemplateError('"]]" closing the optional part "$[["', "the end of the command", { index: optionalStart });
  }
  flushText(i);

  const inputs = new Map<string, boolean>();
  const outputs: string[] = [];
  const visit = (parts: TemplateSegment[], optional: boolean) => {
    for (const part of parts) {
      if (part.kind === "input") inputs.set(part.name, (inputs.get(part.name) ?? true) && optional);
      else if (part.kind === "output" && !outputs.includes(part.name)) outputs.push(part.name);
      else if (part.kind === "optional") visit(part.parts, true);
    }
  };
  visit(segments, false);
  return { segments, inputs: [...inputs].map(([name, optional]) => ({ name, optional })), outputs };
}

/** The distinct input names a command references, in order of first appearance. */
export function commandInputNames(command: string): string[] {
  return parseCommandTemplate(command).inputs.map((input) => input.name);
}

/** The distinct output names a command references, in order of first appearance. */
export function commandOutputNames(command: string): string[] {
  return parseCommandTemplate(command).outputs;
}

export interface RenderValues {
  inputs: Record<string, string | undefined>;
  outputs: Record<string, string | undefined>;
}

/**
 * Substitutes the placeholders and splits the result into argv tokens (no shell involved).
 * Optional parts whose inputs are not all present are dropped; a required input or an output
 * without a value is a CommandTemplateError naming it.
 */
export function renderCommand(command: string, values: RenderValues): string[] {
  const template = parseCommandTemplate(command);
  const has = (record: Record<string, string | undefined>, name: string) => Object.prototype.hasOwnProperty.call(record, name) && record[name] !== undefined;
  const flat: TemplateSegment[] = [];
  for (const segment of template.segments) {
    if (segment.kind !== "optional") flat.push(segment);
    else if (segment.parts.every((part) => part.kind !== "input" || has(values.inputs, part.name))) flat.push(...segment.parts);
  }
  const pieces: Piece[] = flat.map((segment) => {
    if (segment.kind === "text") return { text: segment.text, verbatim: false };
    if (segment.kind === "input") {
      if (!has(values.inputs, segment.name)) {
        const placeholder = `\${{inputs.${segment.name}}}`;
        throw new CommandTemplateError(`a value for input "${segment.name}"`, `none (${placeholder} is outside an optional part)`, {
          index: segment.index,
          placeholder,
        });
      }
      return { text: values.inputs[segment.name] as string, verbatim: true };
    }
    if (segment.kind === "output") {
      if (!has(values.outputs, segment.name)) {
        const placeholder = `\${{outputs.${segment.name}}}`;
        throw new CommandTemplateError(`a location for output "${segment.name}"`, "none", { index: segment.index, placeholder });
      }
      return { text: values.outputs[segment.name] as string, verbatim: true };
    }
    throw new Error("unreachable: optional parts are flattened above");
  });
  return splitArgv(pieces);
}

interface Piece {
  text: string;
  /** Substituted values are appended as-is: never split on spaces, quotes inside them are data. */
  verbatim: boolean;
}

/**
 * POSIX-like word splitting of template text: whitespace separates words outside quotes; '...'
 * keeps everything literally; "..." honours \" and \\; a backslash outside quotes escapes the
 * next character. Quotes may surround placeholders (quote state spans pieces).
 */
function splitArgv(pieces: Piece[]): string[] {
  const words: string[] = [];
  let word = "";
  let started = false;
  let quote: "'" | '"' | null = null;
  for (const piece of pieces) {
    if (piece.verbatim) {
      word += piece.text;
      started = true;
      continue;
    }
    const text = piece.text;
    for (let i = 0; i < text.length; i++) {
      const ch = text[i];
      if (quote === "'") {
        if (ch === "'") quote = null;
        else word += ch;
      } else if (quote === '"') {
        if (ch === '"') quote = null;
        else if (ch === "\\" && (text[i + 1] === '"' || text[i + 1] === "\\")) word += text[++i];
        else word += ch;
      } else if (/\s/.test(ch)) {
        if (started) words.push(word);
        word = "";
        started = false;
      } else if (ch === "'" || ch === '"') {
        quote = ch;
        started = true;
      } else if (ch === "\\" && i + 1 < text.length) {
        word += text[++i];
        started = true;
      } else {
        word += ch;
        started = true;
      }
    }
  }
  if (quote) throw new CommandTemplateError(`a closing ${quote}`, `an unterminated ${quote === "'" ? "single" : "double"} quote`);
  if (started) words.push(word);
  return words;
}
