/** Scheduled retraining: the timer trigger's behaviour (settings: FLO_RETRAIN_SPEC + FLO_RETRAIN_SCHEDULE). */
import type { DurableClient } from "durable-functions";
import { federationInstanceId, loadSpecFile } from "../spec";
import { prepareFederation } from "./lifecycle";
import { runningFederationOf, utcRunSuffix, type Log } from "./inbox";
import type { FederationServices } from "./services";
import { Orchestrations } from "./types";

export interface RetrainSettings {
  specPath: string;
  schedule: string;
}

export function retrainSettingsFromEnv(env: Record<string, string | undefined>): RetrainSettings | undefined {
  const specPath = env.FLO_RETRAIN_SPEC?.trim();
  const schedule = env.FLO_RETRAIN_SCHEDULE?.trim();
  if (!specPath && !schedule) return undefined;
  if (!specPath || !schedule) throw new Error("scheduled retraining needs both FLO_RETRAIN_SPEC (spec file) and FLO_RETRAIN_SCHEDULE (six-field NCRONTAB)");
  return { specPath, schedule };
}

export type RetrainOutcome = { outcome: "started"; federationId: string } | { outcome: "skipped"; reason: string };

/**
 * One timer occurrence: starts `<spec name>-<UTC time>` unless a federation of the spec is running.
 * A past-due occurrence (the host was down) still runs once: a missed retraining is wanted late.
 */
export async function runScheduledRetraining(
  client: DurableClient,
  occurrence: { services: FederationServices; settings: RetrainSettings; timer: { isPastDue: boolean }; log: Log; now?: Date },
): Promise<RetrainOutcome> {
  const { services, settings, timer, log, now = new Date() } = occurrence;
  const spec = await loadSpecFile(settings.specPath);
  const running = await runningFederationOf(client, spec.name);
  if (running) {
    const reason = `federation ${running} of spec ${spec.name} is still running`;
    log(`scheduled retraining skipped: ${reason}`);
    return { outcome: "skipped", reason };
  }
  const federationId = federationInstanceId(spec, { runSuffix: utcRunSuffix(now) });
  const input = await prepareFederation(services, federationId, spec, now);
  await client.startNew(Orchestrations.federation, { instanceId: federationId, input });
  log(`scheduled retraining started federation ${federationId}${timer.isPastDue ? " (the occurrence was past due)" : ""}`);
  return { outcome: "started", federationId };
}
