/**
 * Azure ML job completion events as Event Grid delivers them to the job-events Service Bus queue
 * (one event per message, Event Grid schema or CloudEvents 1.0 structured JSON), their correlation to
 * a federation round and silo, and a builder for the same JSON so the local compute emits exactly
 * what Azure does and both paths share this parser.
 */
import { createHash, randomUUID } from "node:crypto";
import type { JobState } from "../compute/siloCompute";
import {
  azureMlStatusFromJobState,
  jobStateFromAzureMlStatus,
  type AzureMlJobStatus,
} from "../compute/azuremlStatus";
import { parseFloJobName } from "./jobName";

export const RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged";
export const RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted";
export type AzureMlRunEventType = typeof RUN_STATUS_CHANGED | typeof RUN_COMPLETED;

/** Tag keys flo puts on every job (no dots: Event Grid advanced filters use dots as path separators). */
export const FLO_TAGS = {
  federation: "floFederation",
  round: "floRound",
  silo: "floSilo",
  app: "floApp",
} as const;
/** Value of the `floApp` tag; the Event Grid subscription filters on `data.runTags.floApp`. */
export const FLO_APP_TAG_VALUE = "flo";

/** A message body that cannot be an Azure ML run event: dead-letter it with `message`. */
export class EventParseError extends Error {
  override readonly name = "EventParseError";
  constructor(
    /** Where in the event the problem is, e.g. `data.runTags.floRound` (`(body)` for the whole body). */
    readonly fieldPath: string,
    readonly expected: string,
    readonly got: string,
  ) {
    super(`Invalid job event: ${fieldPath}: expected ${expected}, got ${got}`);
  }
}

export type EventSchema = "EventGridSchema" | "CloudEventSchemaV1_0";

/** An Azure ML run event for one of flo's silo jobs. */
export interface FloJobEvent {
  kind: "flo-job";
  federationId: string;
  round: number;
  silo: string;
  /** The Azure ML job name (= the event's runId). */
  jobName: string;
  /** Resubmission attempt, when the job name carries one. */
  attempt?: number;
  /** flo's state for the reported status; `RunCompleted` means completed. Absent if the event has none. */
  status?: JobState;
  /** The status word as the event spelled it. */
  rawStatus?: string;
  eventType: AzureMlRunEventType;
  eventId: string;
  eventTime?: string;
  /** ARM id of the workspace that raised it (Event Grid `topic` / CloudEvents `source`). */
  workspaceId: string;
  experimentName?: string;
  correlatedBy: "tags" | "jobName";
  schema: EventSchema;
}

/** A well-formed event that is not about a flo job: complete the message and log it. */
export interface NotOursEvent {
  kind: "not-ours";
  reason: string;
  eventType: string;
  eventId: string;
  jobName?: string;
}

export type ParsedJobEvent = FloJobEvent | NotOursEvent;

/** Event Grid schema form of an Azure ML run event, as delivered. */
export interface AzureMlEventGridEvent {
  topic: string;
  subject: string;
  eventType: AzureMlRunEventType;
  eventTime: string;
  id: string;
  data: AzureMlRunEventData;
  dataVersion: string;
  metadataVersion: string;
}

export interface AzureMlRunEventData {
  experimentId: string;
  experimentName: string;
  runId: string;
  runType: string | null;
  runTags: Record<string, string>;
  runProperties: Record<string, string>;
  /** Present on RunStatusChanged only. */
  runStatus?: string;
}

/** CloudEvents 1.0 structured form of the same event. */
export interface AzureMlCloudEvent {
  specversion: "1.0";
  id: string;
  source: string;
  subject: string;
  type: AzureMlRunEventType;
  time: string;
  data: AzureMlRunEventData;
}

type JsonObject = Record<string, unknown>;

function describe(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === "object") return "an object";
  // eslint-disable-next-line @typescript-eslint/no-base-to-string -- objects returned above: only primitives and functions get here
  return `${typeof value} ${String(value)}`;
}

function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Service Bus may hand the body over as an object (JSON already parsed), a string, or bytes. */
function decodeBody(body: unknown): unknown {
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) {
    return parseJsonText(Buffer.from(body).toString("utf8"));
  }
  if (typeof body === "string") return parseJsonText(body);
  return body;
}

function parseJsonText(text: string): unknown {
  const trimmed = text.replace(/^\uFEFF/, "").trim();
  try {
    return JSON.parse(trimmed);
  } catch (error) {
    throw new EventParseError("(body)", "JSON text", `unparseable text (${(error as Error).message}): ${describe(trimmed)}`);
  }
}

function requireString(object: JsonObject, key: string, path: string): string {
  const value = object[key];
  if (typeof value !== "string" || value.trim() === "") {
    throw new EventParseError(path, "a non-empty string", describe(value));
  }
  return value;
}

function optionalString(object: JsonObject, key: string, path: string): string | undefined {
  const value = object[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new EventParseError(path, "a string", describe(value));
  return value;
}

/** Tag keys are looked up case-insensitively: some delivery paths re-case JSON keys. */
function tagValue(tags: JsonObject, key: string): unknown {
  if (key in tags) return tags[key];
  const lower = key.toLowerCase();
  const found = Object.keys(tags).find((candidate) => candidate.toLowerCase() === lower);
  return found === undefined ? undefined : tags[found];
}

/**
 * Parses one job-events queue message body (object, JSON string or Buffer; a one-element array is
 * unwrapped) into a flo job event or a "not ours" result. Throws EventParseError for malformed bodies
 * (dead-letter those). The status is a hint: confirm a terminal state with the compute's status call.
 */
export function parseJobEvent(body: unknown): ParsedJobEvent {
  let event = decodeBody(body);
  if (Array.isArray(event)) {
    if (event.length !== 1) {
      throw new EventParseError("(body)", "one event (Service Bus delivers one event per message)", describe(event));
    }
    event = event[0];
  }
  if (!isObject(event)) throw new EventParseError("(body)", "a JSON object (an Event Grid or CloudEvents event)", describe(event));

  const isCloudEvent = !("eventType" in event) && ("specversion" in event || "type" in event);
  const schema: EventSchema = isCloudEvent ? "CloudEventSchemaV1_0" : "EventGridSchema";
  const typeKey = isCloudEvent ? "type" : "eventType";
  const eventType = requireString(event, typeKey, typeKey);
  const eventId = requireString(event, "id", "id");
  if (isCloudEvent) {
    const specVersion = event.specversion;
    if (specVersion !== "1.0") throw new EventParseError("specversion", '"1.0"', describe(specVersion));
  }

  if (eventType.toLowerCase() !== RUN_STATUS_CHANGED.toLowerCase() && eventType.toLowerCase() !== RUN_COMPLETED.toLowerCase()) {
    return { kind: "not-ours", reason: `event type ${eventType} is not an Azure ML run event`, eventType, eventId };
  }
  const runEventType: AzureMlRunEventType =
    eventType.toLowerCase() === RUN_COMPLETED.toLowerCase() ? RUN_COMPLETED : RUN_STATUS_CHANGED;

  const workspaceKey = isCloudEvent ? "source" : "topic";
  const workspaceId = requireString(event, workspaceKey, workspaceKey);
  const subject = optionalString(event, "subject", "subject");
  const eventTime = optionalString(event, isCloudEvent ? "time" : "eventTime", isCloudEvent ? "time" : "eventTime");
  const data = event.data;
  if (!isObject(data)) throw new EventParseError("data", "an object with the run's fields", describe(data));

  const runIdFromSubject = subject ? /(?:^|\/)runs\/([^/]+)$/.exec(subject)?.[1] : undefined;
  const runIdValue = data.runId;
  let jobName: string;
  if (typeof runIdValue === "string" && runIdValue.trim() !== "") jobName = runIdValue;
  else if ((runIdValue === undefined || runIdValue === null) && runIdFromSubject) jobName = runIdFromSubject;
  else throw new EventParseError("data.runId", "a non-empty string (the job name)", describe(runIdValue));

  const experimentName = optionalString(data, "experimentName", "data.experimentName");
  let rawStatus: string | undefined;
  let status: JobState | undefined;
  if (runEventType === RUN_COMPLETED) {
    status = "completed";
    rawStatus = optionalString(data, "runStatus", "data.runStatus") ?? "Completed";
  } else {
    rawStatus = requireString(data, "runStatus", "data.runStatus");
    status = jobStateFromAzureMlStatus(rawStatus);
  }

  const tagsValue = data.runTags ?? {};
  if (!isObject(tagsValue)) throw new EventParseError("data.runTags", "an object of tags", describe(tagsValue));
  const common = { jobName, status, rawStatus, eventType: runEventType, eventId, eventTime, workspaceId, experimentName, schema };

  const appTag = tagValue(tagsValue, FLO_TAGS.app);
  if (appTag !== undefined && appTag !== FLO_APP_TAG_VALUE) {
    return { kind: "not-ours", reason: `job ${jobName} has ${FLO_TAGS.app}=${describe(appTag)}, not "${FLO_APP_TAG_VALUE}"`, eventType, eventId, jobName };
  }
  const tagKeys = [FLO_TAGS.federation, FLO_TAGS.round, FLO_TAGS.silo] as const;
  const present = tagKeys.filter((key) => tagValue(tagsValue, key) !== undefined);
  if (present.length > 0) {
    if (present.length < tagKeys.length) {
      const missing = tagKeys.find((key) => tagValue(tagsValue, key) === undefined)!;
      throw new EventParseError(`data.runTags.${missing}`, `a tag (the job has ${present.join(", ")})`, "nothing");
    }
    const federationId = tagValue(tagsValue, FLO_TAGS.federation);
    // Tags are strings in Azure ML; a number is accepted in case a producer serialized it as one.
    const roundTag = tagValue(tagsValue, FLO_TAGS.round);
    const roundText = typeof roundTag === "number" && Number.isSafeInteger(roundTag) && roundTag >= 0 ? String(roundTag) : roundTag;
    const silo = tagValue(tagsValue, FLO_TAGS.silo);
    if (typeof federationId !== "string" || federationId === "") {
      throw new EventParseError(`data.runTags.${FLO_TAGS.federation}`, "a non-empty string", describe(federationId));
    }
    if (typeof roundText !== "string" || !/^\d{1,9}$/.test(roundText)) {
      throw new EventParseError(`data.runTags.${FLO_TAGS.round}`, "a non-negative integer as a string", describe(roundText));
    }
    if (typeof silo !== "string" || silo === "") {
      throw new EventParseError(`data.runTags.${FLO_TAGS.silo}`, "a non-empty string", describe(silo));
    }
    const attempt = parseFloJobName(jobName)?.attempt;
    return {
      kind: "flo-job",
      federationId,
      round: Number(roundText),
      silo,
      ...(attempt === undefined ? {} : { attempt }),
      ...common,
      correlatedBy: "tags",
    };
  }

  const parts = parseFloJobName(jobName);
  if (!parts) {
    return { kind: "not-ours", reason: `job ${jobName} has no flo tags and its name is not a flo job name`, eventType, eventId, jobName };
  }
  return { kind: "flo-job", ...parts, ...common, correlatedBy: "jobName" };
}

export interface RunEventInit {
  /** ARM id of the workspace (`azureMlWorkspaceId(...)`); locally any stable id of the same shape. */
  workspaceId: string;
  jobName: string;
  experimentName: string;
  /** Azure ML's experiment GUID; derived from the experiment name when absent. */
  experimentId?: string;
  tags: Record<string, string>;
  properties?: Record<string, string>;
  runType?: string | null;
  /** Defaults to a random UUID (Event Grid ids are unique per event). */
  eventId?: string;
  /** Defaults to now. */
  eventTime?: Date | string;
}

export interface RunStatusChangedEventInit extends RunEventInit {
  /** A flo JobState or an Azure ML status word. */
  status: JobState | AzureMlJobStatus;
}

/** `/subscriptions/<sub>/resourceGroups/<rg>/providers/Microsoft.MachineLearningServices/workspaces/<ws>`. */
export function azureMlWorkspaceId(subscriptionId: string, resourceGroup: string, workspace: string): string {
  return `/subscriptions/${subscriptionId}/resourceGroups/${resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${workspace}`;
}

/** A stable GUID-shaped id for an experiment name (real events carry Azure ML's experiment GUID). */
function experimentGuid(experimentName: string): string {
  const hex = createHash("sha256").update(`flo-experiment:${experimentName}`).digest("hex");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

const JOB_STATES: readonly string[] = ["queued", "running", "completed", "failed", "canceled"];

function buildRunEvent(init: RunEventInit, eventType: AzureMlRunEventType, runStatus?: string): AzureMlEventGridEvent {
  const experimentId = init.experimentId ?? experimentGuid(init.experimentName);
  const eventTime = init.eventTime === undefined ? new Date().toISOString() : new Date(init.eventTime).toISOString();
  const data: AzureMlRunEventData = {
    experimentId,
    experimentName: init.experimentName,
    runId: init.jobName,
    runType: init.runType ?? null,
    runTags: { ...init.tags },
    runProperties: { ...(init.properties ?? {}) },
  };
  if (runStatus !== undefined) data.runStatus = runStatus;
  return {
    topic: init.workspaceId,
    subject: `experiments/${experimentId}/runs/${init.jobName}`,
    eventType,
    eventTime,
    id: init.eventId ?? randomUUID(),
    data,
    dataVersion: "",
    metadataVersion: "1",
  };
}

/** The Event Grid schema `RunStatusChanged` event Azure ML raises for a job, field for field. */
export function runStatusChangedEvent(init: RunStatusChangedEventInit): AzureMlEventGridEvent {
  const runStatus = JOB_STATES.includes(init.status) ? azureMlStatusFromJobState(init.status as JobState) : init.status;
  return buildRunEvent(init, RUN_STATUS_CHANGED, runStatus);
}

/** The Event Grid schema `RunCompleted` event (raised for successful completion only; no runStatus). */
export function runCompletedEvent(init: RunEventInit): AzureMlEventGridEvent {
  return buildRunEvent(init, RUN_COMPLETED);
}

/** The same event in CloudEvents 1.0 structured form (a subscription with `eventDeliverySchema: CloudEventSchemaV1_0`). */
export function toCloudEvent(event: AzureMlEventGridEvent): AzureMlCloudEvent {
  return {
    specversion: "1.0",
    id: event.id,
    source: event.topic,
    subject: event.subject,
    type: event.eventType,
    time: event.eventTime,
    data: event.data,
  };
}
