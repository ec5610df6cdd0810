/**
 * The strategy registry: THE list of strategy definitions (definition.ts), one line each. Name +
 * JSON options fully describe a strategy, so it can be re-created anywhere (e.g. in the kernel
 * worker thread) from this registry plus the modules registered with `registerStrategy`.
 */
import { resolve as resolvePath } from "node:path";
import type { z } from "zod";
import { acceptsClipping, acceptsDp, type StrategyDefinition, type StrategyWrappers } from "./definition";
import { clippingSchema, dpSchema } from "./privacy/wrappers";
import { geometricMedian } from "./strategies/geometricMedian";
import { bulyan, krum, multiKrum } from "./strategies/krum";
import { median, trimmedMean } from "./strategies/coordinateWise";
import { fedavg } from "./strategies/mean";
import { fedadagrad, fedadam, fedavgm, fedyogi } from "./strategies/serverOptimizers";
import { StrategyConfigError } from "./strategies/errors";
import type { Json, Strategy } from "./strategy";
import { expectedOf } from "./zodIssues";

const definitions = new Map<string, StrategyDefinition>();
const registeredModules: string[] = [];

/** Keys the spec's `aggregation` section and createStrategy use for themselves. */
const RESERVED_OPTION_KEYS = ["strategy", "clipping", "dp", "insecureTestNoiseSeed"];

function add(definition: StrategyDefinition, origin: string): void {
  const clash = Object.keys(definition.options.shape).filter((key) => RESERVED_OPTION_KEYS.includes(key));
  if (clash.length > 0) {
    throw new StrategyConfigError(`${definition.name} options`, `no option named ${RESERVED_OPTION_KEYS.join(", ")} (${origin})`, clash);
  }
  const existing = definitions.get(definition.name);
  if (existing && existing !== definition) {
    throw new StrategyConfigError("registerStrategy", `a strategy name not registered yet (${origin})`, definition.name);
  }
  definitions.set(definition.name, definition);
}

// One line per definition, in the order shown in --help and the JSON Schema.
add(fedavg, "built-in");
add(fedavgm, "built-in");
add(fedadam, "built-in");
add(fedyogi, "built-in");
add(fedadagrad, "built-in");
add(median, "built-in");
add(trimmedMean, "built-in");
add(krum, "built-in");
add(multiKrum, "built-in");
add(bulyan, "built-in");
add(geometricMedian, "built-in");

function isDefinition(value: unknown): value is StrategyDefinition {
  const d = value as Partial<StrategyDefinition> | null;
  return typeof d === "object" && d !== null && typeof d.name === "string" && typeof d.create === "function" && typeof d.capabilities === "object" && typeof d.options === "object";
}

/**
 * Registers every strategy definition a module exports (e.g. `export const myRule = defineStrategy(...)`).
 * By module PATH (a compiled .js file, or anything `require` loads), so that the kernel worker
 * thread loads the same module before it re-creates the strategy. Registering a module twice is a no-op.
 */
export function registerStrategy(modulePath: string): StrategyDefinition[] {
  const path = resolvePath(modulePath);
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a strategy module named at run time
  const exports = require(path) as Record<string, unknown>;
  const found = Object.values(exports).filter(isDefinition);
  if (found.length === 0) {
    throw new StrategyConfigError("registerStrategy", "a module exporting at least one strategy definition (see lib/aggregation/definition.ts)", path);
  }
  for (const definition of found) add(definition, path);
  if (!registeredModules.includes(path)) registeredModules.push(path);
  return found;
}

/** Module paths given to `registerStrategy`, in order (the kernel worker loads them too). */
export function registeredStrategyModules(): readonly string[] {
  return registeredModules;
}

export function strategyDefinitions(): StrategyDefinition[] {
  return [...definitions.values()];
}

export function strategyNames(): string[] {
  return [...definitions.keys()];
}

export function findStrategy(name: string): StrategyDefinition | undefined {
  return definitions.get(name);
}

/** The definition of `name`, or StrategyConfigError naming the field and the registered names. */
export function strategyDefinition(name: unknown, field = "aggregation.strategy"): StrategyDefinition {
  const definition = typeof name === "string" ? definitions.get(name) : undefined;
  if (!definition) throw new StrategyConfigError(field, `one of ${strategyNames().join(", ")}`, name);
  return definition;
}

function parseWith<T extends z.ZodType>(schema: T, value: unknown, prefix: string, owner = prefix): z.output<T> {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issue = result.error.issues[0];
  const path = [prefix, ...issue.path.map(String)].join(".");
  const got = issue.path.reduce<unknown>((node, key) => (node as Record<PropertyKey, unknown> | undefined)?.[key], value);
  if (issue.code === "unrecognized_keys") {
    const known = knownKeys(schema);
    const accepted = known.length ? `it accepts ${known.join(", ")}` : "it takes none";
    throw new StrategyConfigError(`${path}.${issue.keys[0]}`, `no such option for ${owner} (${accepted})`, (got as Record<string, unknown>)[issue.keys[0]]);
  }
  throw new StrategyConfigError(path, expectedOf(issue), got);
}

function knownKeys(schema: z.ZodType): string[] {
  const shape = (schema as unknown as { shape?: Record<string, unknown> }).shape;
  return shape ? Object.keys(shape) : [];
}

export interface ResolvedStrategyOptions {
  definition: StrategyDefinition;
  /** The definition's own options, validated, defaults applied. */
  options: Record<string, unknown>;
  wrappers: StrategyWrappers;
}

/**
 * Validates `options` (the spec's `aggregation` section without `strategy`, or the CLI flags) for
 * strategy `name`: the definition's option schema, then the wrappers and whether the definition
 * accepts them. Errors name the field (`aggregation.beta`) and expected vs got.
 */
export function resolveStrategyOptions(name: string, options: Json = {}, prefix = "aggregation"): ResolvedStrategyOptions {
  const definition = strategyDefinition(name, `${prefix}.strategy`);
  if (typeof options !== "object" || options === null || Array.isArray(options)) {
    throw new StrategyConfigError(prefix, "an object of strategy options", options);
  }
  const { clipping, dp, insecureTestNoiseSeed, ...own } = options;
  const parsed: Record<string, unknown> = parseWith(definition.options, own, prefix, name);
  const wrappers: StrategyWrappers = {};
  if (clipping !== undefined) {
    if (!acceptsClipping(definition)) throw new StrategyConfigError(`${prefix}.clipping`, `absent: ${name} does not support clipping`, clipping);
    wrappers.clipping = parseWith(clippingSchema, clipping, `${prefix}.clipping`);
  }
  if (dp !== undefined) {
    if (!acceptsDp(definition)) {
      throw new StrategyConfigError(
        `${prefix}.dp`,
        `absent for ${name}: the Gaussian mechanism's sensitivity C/m holds for an equal-weight mean of clipped updates only (use fedavg or a server optimizer)`,
        dp,
      );
    }
    if (!wrappers.clipping) throw new StrategyConfigError(`${prefix}.clipping`, "a clipping section when dp is set (DP noise is calibrated to the clip norm)", undefined);
    wrappers.dp = parseWith(dpSchema, dp, `${prefix}.dp`);
  }
  if (insecureTestNoiseSeed !== undefined) {
    if (typeof insecureTestNoiseSeed !== "string") throw new StrategyConfigError("insecureTestNoiseSeed", "a string", insecureTestNoiseSeed);
    wrappers.insecureTestNoiseSeed = insecureTestNoiseSeed;
  }
  return { definition, options: parsed, wrappers };
}

/** Creates strategy `name` from JSON options (validated by its definition; see resolveStrategyOptions). */
export function createStrategy(name: string, options: Json = {}): Strategy {
  const { definition, options: parsed, wrappers } = resolveStrategyOptions(name, options);
  const strategy = definition.create(parsed, wrappers);
  // The JSON as given re-creates the same strategy (in the kernel worker, from a manifest).
  return { ...strategy, name: definition.name, options: options ?? {} };
}
