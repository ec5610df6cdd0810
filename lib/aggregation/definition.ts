/**
 * A strategy DEFINITION: everything flo derives from one rule family member. The registry
 * (registry.ts) is the list of definitions; from it come the spec's `aggregation` schema (and the
 * generated JSON Schema), the `flo aggregate` flags and help, the spec's cross-field checks (DP,
 * clipping, quorum) and the bench rows. Adding a strategy = one module exporting a definition + one
 * line in registry.ts (or `registerStrategy(modulePath)` for a strategy outside flo).
 */
import type { z } from "zod";
import type { ClippingConfig, DpConfig } from "./privacy/wrappers";
import type { AggregationRule } from "./strategies/rule";
import { createRuleStrategy } from "./strategies/ruleStrategy";
import type { Json, Strategy } from "./strategy";

/** What the checks and the engine need to know about a rule without running it. */
export interface StrategyCapabilities {
  /** Reads the round's global model even without clipping (server optimizers step from it). */
  needsGlobalModel: boolean;
  /** Carries state from round to round (e.g. optimizer moments); the spec then needs an initial model. */
  hasState: boolean;
  /** Not a mean of the updates: central DP's sensitivity C/m does not hold, so `dp` is rejected. */
  robust: boolean;
  /** Computes its result from a plain weighted sum of the updates (all secure aggregation can provide). */
  worksOnWeightedSum: boolean;
  /** Accepts the `clipping` wrapper (norm clipping of each update's delta before the rule). */
  clipping: boolean;
}

/** A spec problem found by a definition's own cross-field check (mapped to a SpecIssue by lib/spec). */
export interface DefinitionIssue {
  path: string;
  expected: string;
  got: string;
  hint?: string;
}

/** The round sizes a spec allows, for rules whose guarantees need enough updates. */
export interface QuorumFacts {
  /** The fewest updates a round may aggregate (policy.minSilos, else every sampled silo). */
  minUpdates: number;
  /** True when policy.minSilos was written in the spec (else it is the default). */
  explicit: boolean;
}

/** Wrappers the registry resolved around a definition's own options. */
export interface StrategyWrappers {
  clipping?: ClippingConfig;
  dp?: Required<DpConfig>;
  /** Deterministic DP noise for tests ONLY (the noise can then be re-derived: no privacy). */
  insecureTestNoiseSeed?: string;
}

export interface StrategyDefinition<Options extends z.ZodObject = z.ZodObject> {
  /** Registry name, as written in `aggregation.strategy` and `--strategy`. */
  readonly name: string;
  /** One sentence for the JSON Schema and `--help`. */
  readonly summary: string;
  /**
   * The rule's own options (without `strategy`, `clipping`, `dp`): the ONE schema of each option,
   * with its range, default and description (`.meta({ description })`). Used as is by the spec and
   * by `createStrategy`; the CLI derives a numeric flag from each key (camelCase -> --kebab-case).
   */
  readonly options: Options;
  readonly capabilities: StrategyCapabilities;
  /**
   * Builds the strategy from validated options (defaults applied) and the resolved wrappers. The
   * registry gives wrappers only to definitions with a `rule` (whose machinery applies them).
   */
  create: (options: z.output<Options>, wrappers: StrategyWrappers) => Strategy;
  /** The rule on the shared round machinery (strategies/rule.ts), for rules built on it. */
  rule?: (options: z.output<Options>) => AggregationRule;
  /** Optional spec check against the round sizes (e.g. Krum needs n >= 2f+3). Raw options: skip what is not a valid value. */
  quorumIssues?(options: Record<string, unknown>, quorum: QuorumFacts): DefinitionIssue[];
  /** Benchmark rows (`npm run bench:aggregate`); also valid example options for tests. */
  readonly bench: readonly { label: string; options: Json }[];
}

/** The clipping wrapper runs on the shared round machinery: rule-based definitions that allow it. */
export function acceptsClipping(definition: StrategyDefinition): boolean {
  return definition.rule !== undefined && definition.capabilities.clipping;
}

/** Central DP: a rule-based definition that is a mean of the updates (sensitivity C/m). */
export function acceptsDp(definition: StrategyDefinition): boolean {
  return definition.rule !== undefined && !definition.capabilities.robust;
}

type RuleBased<Options extends z.ZodObject> = Omit<StrategyDefinition<Options>, "create" | "rule"> & {
  rule: (options: z.output<Options>) => AggregationRule;
  create?: StrategyDefinition<Options>["create"];
};

/**
 * `export const myRule = defineStrategy({...})`. Give `rule` to run on the shared round machinery
 * (clipping and central DP wrappers, statistics pass, kernel worker, weighted-sum kernel come with
 * it), or `create` to implement the `Strategy` contract (../strategy.ts) from scratch.
 */
export function defineStrategy<Options extends z.ZodObject>(definition: StrategyDefinition<Options> | RuleBased<Options>): StrategyDefinition<Options> {
  if (definition.create) return { ...definition, create: definition.create };
  const rule = definition.rule!;
  return { ...definition, create: (options, wrappers) => createRuleStrategy(definition.name, rule(options), wrappers) };
}
