/**
 * Azure ML job completion events as Event Grid delivers them to the job-events Service Bus queue
 * (one event per message, Event Grid schema or CloudEvents 1.0 structured JSON), their correlation to
 * a federation round and silo, and a builder for the same JSON (test fakes of Azure ML raise it).
 */
import { createHash, randomUUID } from "node:crypto";
import type { JobState } from "../siloCompute";
import { correlateFloJob, decodeEventBody, describeValue, EventParseError, isJsonObject, optionalString, requireString, type FloJobEvent, type NotOursEvent } from "../jobEvents";
import { azureMlStatusFromJobState, jobStateFromAzureMlStatus, type AzureMlJobStatus } from "./status";

export const RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged";
export const RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted";
export type AzureMlRunEventType = typeof RUN_STATUS_CHANGED | typeof RUN_COMPLETED;

export type EventSchema = "EventGridSchema" | "CloudEventSchemaV1_0";

/** An Azure ML run event for one of flo's silo jobs: the neutral job event plus where it came from. */
export interface AzureMlJobEvent extends FloJobEvent {
  backend: "azureml";
  eventType: AzureMlRunEventType;
  /** ARM id of the workspace that raised it (Event Grid `topic` / CloudEvents `source`). */
  workspaceId: string;
  experimentName?: string;
  schema: EventSchema;
}

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

/**
 * Parses one job-events queue message body (object, JSON string or Buffer; a one-element array is
 * unwrapped) as an Azure ML run event in Event Grid or CloudEvents 1.0 form: a flo job event, or
 * "not ours" for any other Event Grid event. Throws EventParseError for malformed bodies
 * (dead-letter those). The status is a hint: confirm a terminal state with the compute's status call.
 */
export function parseAzureMlJobEvent(body: unknown): AzureMlJobEvent | NotOursEvent {
  const event = decodeEventBody(body);
  if (!isJsonObject(event)) throw new EventParseError("(body)", "a JSON object (an Event Grid or CloudEvents event)", describeValue(event));

  const isCloudEvent = !("eventType" in event) && ("specversion" in event || "type" in event);
  const schema: EventSchema = isCloudEvent ? "CloudEventSchemaV1_0" : "EventGridSchema";
  const typeKey = isCloudEvent ? "type" : "eventType";
  const eventType = requireString(event, typeKey, typeKey);
  const eventId = requireString(event, "id", "id");
  if (isCloudEvent) {
    const specVersion = event.specversion;
    if (specVersion !== "1.0") throw new EventParseError("specversion", '"1.0"', describeValue(specVersion));
  }

  if (eventType.toLowerCase() !== RUN_STATUS_CHANGED.toLowerCase() && eventType.toLowerCase() !== RUN_COMPLETED.toLowerCase()) {
    return { kind: "not-ours", reason: `event type ${eventType} is not an Azure ML run event`, eventType, eventId };
  }
  const runEventType: AzureMlRunEventType = eventType.toLowerCase() === RUN_COMPLETED.toLowerCase() ? RUN_COMPLETED : RUN_STATUS_CHANGED;

  const workspaceKey = isCloudEvent ? "source" : "topic";
  const workspaceId = requireString(event, workspaceKey, workspaceKey);
  const subject = optionalString(event, "subject", "subject");
  const eventTime = optionalString(event, isCloudEvent ? "time" : "eventTime", isCloudEvent ? "time" : "eventTime");
  const data = event.data;
  if (!isJsonObject(data)) throw new EventParseError("data", "an object with the run's fields", describeValue(data));

  const runIdFromSubject = subject ? /(?:^|\/)runs\/([^/]+)$/.exec(subject)?.[1] : undefined;
  const runIdValue = data.runId;
  let jobName: string;
  if (typeof runIdValue === "string" && runIdValue.trim() !== "") jobName = runIdValue;
  else if ((runIdValue === undefined || runIdValue === null) && runIdFromSubject) jobName = runIdFromSubject;
  else throw new EventParseError("data.runId", "a non-empty string (the job name)", describeValue(runIdValue));

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

  const tags = data.runTags ?? {};
  if (!isJsonObject(tags)) throw new EventParseError("data.runTags", "an object of tags", describeValue(tags));
  const job = correlateFloJob({ jobName, tags, tagsPath: "data.runTags" });
  if ("notOurs" in job) return { kind: "not-ours", reason: job.notOurs, eventType, eventId, jobName };
  return {
    kind: "flo-job",
    ...job,
    jobName,
    status,
    rawStatus,
    eventType: runEventType,
    eventId,
    eventTime,
    workspaceId,
    experimentName,
    schema,
    backend: "azureml",
  };
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
