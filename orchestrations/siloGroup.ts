/**
 * One group of a round's silos (see `siloGroups`): runs each silo's `siloRound` sub-orchestration
 * and returns their results in the group's order. It exists only to keep replays short at large K:
 * each silo completion replays this group's history, not the whole round's.
 *
 * Deterministic control flow only: no clock, no I/O.
 */
import * as df from "durable-functions";
import type { OrchestrationContext, OrchestrationHandler, Task } from "durable-functions";
import { siloInstanceId } from "../lib/federation/decisions";
import { Orchestrations } from "../lib/federation/types";
import type { SiloGroupInput, SiloRoundInput, SiloRoundResult } from "../lib/federation/types";

export const siloGroupOrchestrator: OrchestrationHandler = function* (context: OrchestrationContext): Generator<Task, SiloRoundResult[], unknown> {
  const { silos, siloParameters, ...shared } = context.df.getInput<SiloGroupInput>();
  const tasks = silos.map((silo) => {
    const parameters = siloParameters?.[silo];
    const input: SiloRoundInput = { ...shared, silo, ...(parameters ? { parameters } : {}) };
    return context.df.callSubOrchestrator(Orchestrations.siloRound, input, siloInstanceId(shared.federationId, shared.round, silo, shared.kind, shared.secure?.rerun));
  });
  const results = (yield context.df.Task.all(tasks)) as SiloRoundResult[];
  return results;
};

df.app.orchestration(Orchestrations.siloGroup, siloGroupOrchestrator);
