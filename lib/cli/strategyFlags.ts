/**
 * The strategy option flags of `flo aggregate`, derived from the registry's definitions: one numeric
 * flag per option key (camelCase -> --kebab-case, e.g. serverLr -> --server-lr), its help from the
 * option's description and each strategy's default. The values are validated by the same schema as
 * the spec (createStrategy), so the CLI and the spec accept exactly the same values.
 */
import type { Command } from "commander";
import { z } from "zod";
import { strategyDefinitions } from "../aggregation/registry";
import { StrategyConfigError } from "../aggregation/strategies/errors";
import type { Json } from "../aggregation/strategy";

export interface StrategyOptionFlag {
  /** The option key in the spec and createStrategy (e.g. "serverLr"). */
  key: string;
  /** The flag as typed, e.g. "--server-lr". */
  flag: string;
  integer: boolean;
  help: string;
}

/** Flags already taken by `flo aggregate` itself: an option of the same name cannot become a flag. */
const RESERVED = new Set(["out", "strategy", "minUpdates", "chunkElements", "global", "stateIn", "stateOut", "help"]);

function kebab(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

interface FieldFacts {
  description?: string;
  defaultValue?: unknown;
  integer: boolean;
}

/** Description, default and integer-ness of one option schema (through default/optional wrappers). */
function fieldFacts(schema: z.ZodType): FieldFacts {
  const facts: FieldFacts = { integer: false };
  let current: z.ZodType | undefined = schema;
  while (current) {
    facts.description ??= z.globalRegistry.get(current)?.description;
    const def = current._zod.def as { type: string; defaultValue?: unknown; innerType?: z.ZodType };
    if (def.type === "default" && facts.defaultValue === undefined) facts.defaultValue = def.defaultValue;
    if (current instanceof z.ZodNumber && current.format === "safeint") facts.integer = true;
    current = def.innerType;
  }
  return facts;
}

/** One flag per option key over all registered definitions. */
export function strategyOptionFlags(): StrategyOptionFlag[] {
  const byKey = new Map<string, { integer: boolean; description?: string; uses: string[] }>();
  for (const definition of strategyDefinitions()) {
    for (const [key, schema] of Object.entries(definition.options.shape)) {
      if (RESERVED.has(key)) {
        throw new StrategyConfigError(`${definition.name} option ${key}`, `a name other than flo aggregate's own flags (${[...RESERVED].join(", ")})`, key);
      }
      const facts = fieldFacts(schema as z.ZodType);
      const entry = byKey.get(key) ?? { integer: facts.integer, description: facts.description, uses: [] };
      entry.integer &&= facts.integer;
      entry.description ??= facts.description;
      entry.uses.push(facts.defaultValue === undefined ? definition.name : `${definition.name} (default ${JSON.stringify(facts.defaultValue)})`);
      byKey.set(key, entry);
    }
  }
  return [...byKey.entries()].map(([key, entry]) => ({
    key,
    flag: `--${kebab(key)}`,
    integer: entry.integer,
    help: `${entry.uses.join(", ")}: ${entry.description ?? key}`,
  }));
}

function numberFlag(flag: string, integer: boolean) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || Number.isNaN(n)) throw new StrategyConfigError(flag, integer ? "an integer" : "a number", value);
    return n;
  };
}

/** Adds the strategy option flags and the state/global flags to a command. */
export function addStrategyFlags(command: Command): Command {
  for (const option of strategyOptionFlags()) {
    command.option(`${option.flag} <${option.integer ? "n" : "x"}>`, option.help, numberFlag(option.flag, option.integer));
  }
  return command
    .option("--global <file>", "the round's current global model (.safetensors); required by server optimizers and clipping")
    .option("--state-in <dir>", "strategy state written by the previous round's --state-out")
    .option("--state-out <dir>", "where to write this round's strategy state (momentum / moments / clip norm / accountant)");
}

/** The option flags given, as strategy options (absent flags are left to the strategy's defaults). */
export function strategyOptionsFromFlags(flags: Record<string, unknown>): Json {
  const options: { [key: string]: Json } = {};
  for (const { key } of strategyOptionFlags()) {
    const value = flags[key];
    if (typeof value === "number") options[key] = value;
  }
  return options;
}
