/**
 * Messages flo receives from Service Bus: job events (each compute backend's; Azure ML's come from
 * Event Grid) and partner commands (one queue per partner: the queue names the sender). A message that can never
 * succeed is not retried: it goes to the queue's rejected queue with its reason (see
 * lib/messaging/wireMessages.ts) and the original is completed.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { DurableClient } from "durable-functions";
import { parseJobEvent } from "../compute/backends";
import { EventParseError } from "../compute/jobEvents";
import { federationInstanceId, loadSpecFile, validateSpec, SpecError, type FederationSpec } from "../spec";
import { PARTNER_NAME } from "../spec/schema";
import { federationFolder } from "../models/storeLayout";
import { BlobNotFoundError } from "../models/storeErrors";
import { siloInstanceId } from "./decisions";
import { cancelFederation, findInstance } from "./api";
import { ApiError } from "./problem";
import { prepareFederation, specPath } from "./lifecycle";
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

/** A received message and what handling it needs. */
export interface InboxDelivery {
  services: FederationServices;
  queue: string;
  message: InboxMessage;
  log: Log;
}

/** Moves a message to `<queue>-rejected` with its reason. */
export async function rejectMessage(delivery: InboxDelivery, reason: string, description: string): Promise<void> {
  const { services, queue, message, log } = delivery;
  await services.messages.send(rejectedQueueName(queue), rejectedMessage({ queue, body: message.body, messageId: message.messageId, reason, description }));
  log(`message ${message.messageId ?? "(no id)"} from ${queue} rejected: ${reason}: ${description}`);
}

/** How the Durable client reports a raised event's missing instance (HTTP 404). */
const NO_INSTANCE = /^No instance with ID '.*' found\.$/;

export type JobEventOutcome = "raised" | "in-progress" | "not-ours" | "no-instance" | "rejected";

/**
 * A job event, read by the compute backends' parsers: a final state is raised on the silo's
 * sub-orchestration as the job kind's completion event (`silo-done:<round>:<silo>` for training;
 * in-progress states are only logged). The orchestration treats it as a hint and confirms with a
 * job status call, so duplicates, events of earlier attempts and events for closed rounds are
 * harmless.
 */
export async function handleJobEvent(client: DurableClient, delivery: InboxDelivery): Promise<JobEventOutcome> {
  const { message, log } = delivery;
  let parsed;
  try {
    parsed = parseJobEvent(message.body);
  } catch (err) {
    if (!(err instanceof EventParseError)) throw err;
    await rejectMessage(delivery, "InvalidJobEvent", err.message);
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
  // A re-run session's jobs are tagged with it: their orchestrations are `<fed>:r<round>.s<rerun>:...`.
  const instanceId = siloInstanceId(parsed.federationId, parsed.round, parsed.silo, parsed.jobKind, parsed.rerun);
  const payload: SiloJobEvent = { jobName: parsed.jobName, state: parsed.status, rawStatus: parsed.rawStatus, eventId: parsed.eventId };
  // Raised without looking the instance up first (one request per event instead of two): it
  // resolves silently (HTTP 410) when the silo's round already closed, and names a missing instance.
  try {
    await client.raiseEvent(instanceId, jobEventName({ round: parsed.round, silo: parsed.silo, kind: parsed.jobKind }), payload);
  } catch (err) {
    if (!NO_INSTANCE.test((err as Error).message)) throw err;
    log(`job event ${parsed.eventId} for ${parsed.jobName} ignored: no orchestration ${instanceId}`);
    return "no-instance";
  }
  log(`job event ${parsed.eventId}: ${parsed.jobName} ${parsed.rawStatus ?? parsed.status ?? ""} -> ${instanceId}`);
  return "raised";
}

export interface PartnerSettings {
  /** Partner names allowed to send commands (FLO_PARTNER_ALLOWLIST, comma-separated); partner <name> sends to `partner-<name>`. */
  allowList: readonly string[];
  /** Folder holding registered specs as <name>.yaml / <name>.json (FLO_SPEC_REGISTRY). */
  specRegistry?: string;
}

export class PartnerSettingsError extends Error {}

/**
 * The partner settings; an allow-list entry that cannot name a queue, or two entries naming the same
 * queue (Service Bus entity names are case-insensitive), fail the app's start with the setting's name.
 */
export function partnerSettingsFromEnv(env: Record<string, string | undefined>): PartnerSettings {
  const allowList = (env.FLO_PARTNER_ALLOWLIST ?? "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  const seen = new Set<string>();
  for (const [i, name] of allowList.entries()) {
    if (!PARTNER_NAME.test(name))
      throw new PartnerSettingsError(`FLO_PARTNER_ALLOWLIST[${i}]: expected a partner name matching ${PARTNER_NAME.source} (its queue is partner-<name>), got ${JSON.stringify(name)}`);
    if (seen.has(name.toLowerCase())) throw new PartnerSettingsError(`FLO_PARTNER_ALLOWLIST[${i}]: partner ${JSON.stringify(name)} is listed twice (queue names ignore case)`);
    seen.add(name.toLowerCase());
  }
  return { allowList, specRegistry: env.FLO_SPEC_REGISTRY || undefined };
}

/** Where a partner's commands arrive. Only that partner's identity may send there (infra/modules/partner-roles.bicep). */
export function partnerQueueName(partner: string): string {
  return `partner-${partner}`;
}

/** A command as received: the partner is the one whose queue it arrived on, never a property of the message. */
/** A partner's command as delivered: the queue it arrived on names the partner. */
export interface PartnerDelivery extends InboxDelivery {
  partner: string;
}

export type PartnerOutcome = { outcome: "started"; federationId: string } | { outcome: "canceled"; federationId: string } | { outcome: "rejected"; reason: string };

/** UTC run suffix for the time a run was requested, e.g. 20261128t020000z. */
export function utcRunSuffix(now: Date): string {
  const iso = now.toISOString(); // 2026-11-28T02:00:00.000Z
  return `${iso.slice(0, 10).replace(/-/g, "")}t${iso.slice(11, 19).replace(/:/g, "")}z`;
}

/** Who started a federation, stored next to its spec when a partner starts one. */
export interface FederationStarter {
  partner: string;
  command: string;
  at: string;
}

export function startedByPath(federationId: string): string {
  return `${federationFolder(federationId)}started-by.json`;
}

const samePartner = (a: string, b: string) => a.toLowerCase() === b.toLowerCase();

async function readIfExists<T>(services: FederationServices, path: string): Promise<T | undefined> {
  try {
    return await services.store.getJson<T>(path);
  } catch (err) {
    if (err instanceof BlobNotFoundError) return undefined;
    throw err;
  }
}

/**
 * Why `partner` may not cancel a federation, or undefined when it may: it started it, or the
 * federation's spec lists it in `owners`. A federation without a stored spec does not exist.
 */
async function cancelRefusal(services: FederationServices, federationId: string, partner: string): Promise<{ reason: string; description: string } | undefined> {
  const spec = await readIfExists<Pick<FederationSpec, "owners">>(services, specPath(federationId));
  if (!spec) return { reason: "UnknownFederation", description: `federation ${federationId} does not exist` };
  const starter = await readIfExists<FederationStarter>(services, startedByPath(federationId));
  if (starter && samePartner(starter.partner, partner)) return undefined;
  if ((spec.owners ?? []).some((owner) => samePartner(owner, partner))) return undefined;
  const startedBy = starter ? `partner ${JSON.stringify(starter.partner)}` : "the API or the schedule, not a partner";
  return {
    reason: "NotPermitted",
    description: `partner ${JSON.stringify(partner)} may not cancel federation ${federationId}: it was started by ${startedBy}, and the spec's owners are ${JSON.stringify(spec.owners ?? [])}`,
  };
}

/**
 * A partner's command from its own queue. The queue names the partner (only its identity may send
 * there); a `floPartner` property naming anyone else is refused, since it is only a claim.
 */
export async function handlePartnerCommand(client: DurableClient, delivery: PartnerDelivery, options: { settings: PartnerSettings; now?: Date }): Promise<PartnerOutcome> {
  const { services, partner, queue, message, log } = delivery;
  const { settings, now = new Date() } = options;
  const reject = async (reason: string, description: string): Promise<PartnerOutcome> => {
    await rejectMessage(delivery, reason, description);
    return { outcome: "rejected", reason: `${reason}: ${description}` };
  };
  if (!settings.allowList.some((allowed) => samePartner(allowed, partner))) return reject("PartnerNotAllowed", `partner ${JSON.stringify(partner)} is not on the allow-list (FLO_PARTNER_ALLOWLIST)`);
  const claimed = message.applicationProperties?.[PARTNER_PROPERTY];
  if (claimed !== undefined && !(typeof claimed === "string" && samePartner(claimed, partner))) {
    return reject(
      "PartnerMismatch",
      `application property ${PARTNER_PROPERTY} claims ${JSON.stringify(claimed)}, but the command arrived on ${queue}, the queue of partner ${JSON.stringify(partner)}: the queue identifies the sender`,
    );
  }

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
    const refusal = await cancelRefusal(services, command.federationId, partner);
    if (refusal) return reject(refusal.reason, refusal.description);
    try {
      await cancelFederation(client, services, command.federationId, command.reason ?? `canceled by partner ${partner}`);
      log(`partner ${partner}: canceled federation ${command.federationId}`);
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
  let input;
  try {
    input = await prepareFederation(services, federationId, spec, now);
  } catch (err) {
    // A spec this host cannot run (a disabled compute type, an unreadable initial model) never will.
    if (err instanceof ApiError && err.status === 400) return reject("InvalidSpec", err.message);
    throw err;
  }
  // Before the start: a federation never runs without its starter on record.
  await services.store.putJson(startedByPath(federationId), { partner, command: command.type, at: now.toISOString() } satisfies FederationStarter);
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
