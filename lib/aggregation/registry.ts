/**
 * Strategy registry: name -> factory(options). Name + JSON options fully describe a strategy, so
 * it can be re-created anywhere (e.g. inside a worker thread) from this registry.
 */

import { createFedAvg } from "./fedavg";
import { engineStrategyFactories } from "./strategies/engineStrategies";
import type { Json, Strategy } from "./strategy";
import { StrategyError } from "./strategyError";

export type StrategyFactory = (options: Json) => Strategy;

// issue #6 strategies (fedavg with clipping/dp options included; plain fedavg stays createFedAvg)
const factories = new Map<string, StrategyFactory>([["fedavg", createFedAvg], ...engineStrategyFactories()]);

export function registerStrategy(name: string, factory: StrategyFactory): void {
  factories.set(name, factory);
}

export function strategyNames(): string[] {
  return [...factories.keys()].sort();
}

export function createStrategy(name: string, options: Json = {}): Strategy {
  const factory = factories.get(name);
  if (!factory) throw new StrategyError(name, `unknown strategy; expected one of ${strategyNames().join(", ")}`);
  return factory(options);
}
