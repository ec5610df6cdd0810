/**
 * Messages flo receives from Service Bus: job events (each compute backend's; Azure ML's come from
 * Event Grid) and partner commands. A message that can never
 * succeed is not retried: it goes to the queue's rejected queue with its reason (see
 * lib/messaging/wireMessages.ts) and the original is completed.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { DurableClient } from "durable-functions";
import { parseJobEvent } from "../compute/backends";
import { EventParseError } from "../compute/jobEvents";
import { federationInstanceId, loadSpecFile, validateSpec, SpecError, type FederationSpec } from "../spec";
import { siloInstanceId } from "./decisions";
import { cancelFederation, findInstance } from "./api";
import { ApiError } from "./problem";
import { prepareFederation } from "./lifecycle";
import type { FederationServices } from "./services";
import { rejectedMessage, rejectedQueueName } from "../messaging/wireMessages";
import { partnerCommandSchema, PARTNER_PROPERTY } from "../messaging/partnerCommands";
import { Orchestrations, type SiloJobEvent } from "./types";
import { jobEventName, TERMINAL_JOB_STATES } from "../compute/siloCompute";

export interface InboxMessage {
  body: unknown;
  messageId?: string;
  deliveryCount?: number;
  applicationProperties?: Record<string, unknown>;
}

export type Log = (line: string) => void;

/** Moves a message to `<queue>-rejected` with its reason. */
export async function rejectMessage(services: FederationServices, queue: string, message: InboxMessage, reason: string, description: string, log: Log): Promise<void> {
  await services.messages.send(rejectedQueueName(queue), rejectedMessage({ queue, body: message.body, messageId: message.messageId, reason, description }));
  log(`message ${message.messageId ?? "(no id)"} from ${queue} rejected: ${reason}: ${description}`);
}

export type JobEventOutcome = "raised" | "in-progress" | "not-ours" | "no-instance" | "rejected";

/**
 * A job event, read by the compute backends' parsers: a final state is raised on the silo's
 * sub-orchestration as the job kind's completion event (`silo-done:<round>:<silo>` for training;
 * in-progress states are only logged). The orchestration treats it as a hint and confirms with a
 * job status call, so duplicates, events of earlier attempts and events for closed rounds are
 * harmless.
 */
export async function handleJobEvent(client: DurableClient, services: FederationServices, queue: string, message: InboxMessage, log: Log): Promise<JobEventOutcome> {
  let parsed;
  try {
    parsed = parseJobEvent(message.body);
  } catch (err) {
    if (!(err instanceof EventParseError)) throw err;
    await rejectMessage(services, queue, message, "InvalidJobEvent", err.message, log);
    return "rejected";
  }
  if (parsed.kind === "not-ours") {
    log(`job event ${parsed.eventId} ignored: ${parsed.reason}`);
    return "not-ours";
  }
  if (parsed.status !== undefined && !TERMINAL_JOB_STATES.includes(parsed.status)) {
    // Only a final state can end the silo's wait; raising "queued"/"running" would cost an episode
    // and a status activity per silo for nothing (the silo's poll timer still catches lost events).
    log(`job event ${parsed.eventId}: ${parsed.jobName} ${parsed.rawStatus ?? parsed.status} is in progress, not raised`);
    return "in-progress";
  }
  const instanceId = siloInstanceId(parsed.federationId, parsed.round, parsed.silo);
  if (!(await findInstance(client, instanceId))) {
    log(`job event ${parsed.eventId} for ${parsed.jobName} ignored: no orchestration ${instanceId}`);
    return "no-instance";
  }
  const payload: SiloJobEvent = { jobName: parsed.jobName, state: parsed.status, rawStatus: parsed.rawStatus, eventId: parsed.eventId };
  // Resolves silently (HTTP 410) when the silo's round already closed.
  await client.raiseEvent(instanceId, jobEventName({ round: parsed.round, silo: parsed.silo, kind: parsed.jobKind }), payload);
  log(`job event ${parsed.eventId}: ${parsed.jobName} ${parsed.rawStatus ?? parsed.status ?? ""} -> ${instanceId}`);
  return "raised";
}

export interface PartnerSettings {
  /** Partner ids allowed to send commands (FLO_PARTNER_ALLOWLIST, comma-separated). */
  allowList: readonly string[];
  /** Folder holding registered specs as <name>.yaml / <name>.json (FLO_SPEC_REGISTRY). */
  specRegistry?: string;
}

export function partnerSettingsFromEnv(env: Record<string, string | undefined>): PartnerSettings {
  return {
    allowList: (env.FLO_PARTNER_ALLOWLIST ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    specRegistry: env.FLO_SPEC_REGISTRY || undefined,
  };
}

export type PartnerOutcome = { outcome: "started"; federationId: string } | { outcome: "canceled"; federationId: string } | { outcome: "rejected"; reason: string };

/** UTC run suffix for the time a run was requested, e.g. 20261128t020000z. */
export function utcRunSuffix(now: Date): string {
  const iso = now.toISOString(); // 2026-11-28T02:00:00.000Z
  return `${iso.slice(0, 10).replace(/-/g, "")}t${iso.slice(11, 19).replace(/:/g, "")}z`;
}

export async function handlePartnerCommand(
  client: DurableClient,
  services: FederationServices,
  queue: string,
  message: InboxMessage,
  settings: PartnerSettings,
  log: Log,
  now: Date = new Date(),
): Promise<PartnerOutcome> {
  const reject = async (reason: string, description: string): Promise<PartnerOutcome> => {
    await rejectMessage(services, queue, message, reason, description, log);
    return { outcome: "rejected", reason: `${reason}: ${description}` };
  };
  const partner = message.applicationProperties?.[PARTNER_PROPERTY];
  if (typeof partner !== "string" || partner === "") return reject("UnknownPartner", `application property ${PARTNER_PROPERTY}: expected a partner id, got ${JSON.stringify(partner ?? null)}`);
  if (!settings.allowList.includes(partner)) return reject("PartnerNotAllowed", `partner ${JSON.stringify(partner)} is not on the allow-list (FLO_PARTNER_ALLOWLIST)`);

  let body = message.body;
  if (typeof body === "string" || Buffer.isBuffer(body)) {
    try {
      body = JSON.parse(body.toString());
    } catch (err) {
      return reject("InvalidCommand", `body: expected JSON, got unparseable text (${(err as Error).message})`);
    }
  }
  const parsed = partnerCommandSchema.safeParse(body);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => `${i.path.map(String).join(".") || "(body)"}: ${i.message}`).join("; ");
    return reject("InvalidCommand", issues);
  }
  const command = parsed.data;

  if (command.type === "cancel-federation") {
    try {
      await cancelFederation(client, services, command.federationId, command.reason ?? `canceled by partner ${partner}`);
      return { outcome: "canceled", federationId: command.federationId };
    } catch (err) {
      if (err instanceof ApiError) return reject(err.status === 404 ? "UnknownFederation" : "NotRunning", err.message);
      throw err;
    }
  }

  if (!settings.specRegistry) return reject("NoSpecRegistry", "FLO_SPEC_REGISTRY is not configured: no spec can be started by name");
  let spec: FederationSpec;
  try {
    spec = await loadRegisteredSpec(settings.specRegistry, command.spec);
    if (command.type === "start-federation" && command.parameters) {
      spec = validateSpec({ ...spec, training: { ...spec.training, parameters: { ...spec.training.parameters, ...command.parameters } } }, { source: `spec ${command.spec} with partner overrides` });
    }
  } catch (err) {
    if (err instanceof SpecError) return reject("InvalidSpec", err.message);
    throw err;
  }
  const running = await runningFederationOf(client, spec.name);
  if (running) return reject("AlreadyRunning", `federation ${running} of spec ${spec.name} is running; a new run starts when it has finished`);
  const suffix = command.type === "start-federation" && command.runId ? command.runId : utcRunSuffix(now);
  const federationId = federationInstanceId(spec, { runSuffix: suffix });
  if (await findInstance(client, federationId)) return reject("DuplicateRun", `federation ${federationId} already exists`);
  const input = await prepareFederation(services, federationId, spec, now);
  await client.startNew(Orchestrations.federation, { instanceId: federationId, input });
  log(`partner ${partner}: ${command.type} started federation ${federationId}${command.type === "data-updated" && command.silo ? ` (data updated in silo ${command.silo})` : ""}`);
  return { outcome: "started", federationId };
}

/** A registered spec by name, from FLO_SPEC_REGISTRY (<name>.yaml, .yml or .json). */
export async function loadRegisteredSpec(registry: string, name: string): Promise<FederationSpec> {
  for (const ext of [".yaml", ".yml", ".json"]) {
    const path = join(registry, `${name}${ext}`);
    if (existsSync(path)) return loadSpecFile(path);
  }
  throw new SpecError("unreadable", [{ path: "spec", expected: `a registered spec ${name}.yaml/.json in the spec registry`, got: "no such spec", message: `spec ${name} is not registered` }]);
}

/** A running federation of this spec (id = name or name-<suffix>), if any. */
export async function runningFederationOf(client: DurableClient, specName: string): Promise<string | undefined> {
  const all = await client.getStatusAll();
  const running = all.find(
    (s) =>
      s.name === Orchestrations.federation && ["Running", "Pending", "ContinuedAsNew", "Suspended"].includes(s.runtimeStatus) && (s.instanceId === specName || s.instanceId.startsWith(`${specName}-`)),
  );
  return running?.instanceId;
}
