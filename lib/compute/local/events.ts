/**
 * The local backend's job event: what LocalSiloCompute publishes to the job-events queue when a
 * job is queued and when it ends, and its parser.
 */
import { randomUUID } from "node:crypto";
import { TERMINAL_JOB_STATES, type JobState } from "../siloCompute";
import { correlateFloJob, decodeEventBody, describeValue, EventParseError, isJsonObject, optionalString, requireString, type FloJobEvent, type NotOursEvent } from "../jobEvents";

export const LOCAL_JOB_EVENT_TYPE = "flo.local.JobStateChanged";

const JOB_STATES: readonly JobState[] = ["queued", "running", ...TERMINAL_JOB_STATES];

/** A local job changed state. */
export interface LocalJobEvent {
  type: typeof LOCAL_JOB_EVENT_TYPE;
  id: string;
  /** ISO time of the change. */
  time: string;
  jobName: string;
  state: JobState;
  /** The job's tags as submitted (`floJobTags`). */
  tags: Record<string, string>;
}

export function localJobEvent(init: { jobName: string; state: JobState; tags: Record<string, string>; id?: string; time?: Date }): LocalJobEvent {
  return {
    type: LOCAL_JOB_EVENT_TYPE,
    id: init.id ?? randomUUID(),
    time: (init.time ?? new Date()).toISOString(),
    jobName: init.jobName,
    state: init.state,
    tags: { ...init.tags },
  };
}

/**
 * Parses a job-events message body as a local job event. Returns undefined when the body is not
 * one (another backend's event); throws EventParseError when it is one but malformed.
 */
export function parseLocalJobEvent(body: unknown): FloJobEvent | NotOursEvent | undefined {
  const event = decodeEventBody(body);
  if (!isJsonObject(event) || event.type !== LOCAL_JOB_EVENT_TYPE) return undefined;
  const eventId = requireString(event, "id", "id");
  const jobName = requireString(event, "jobName", "jobName");
  const eventTime = optionalString(event, "time", "time");
  const state = event.state;
  if (typeof state !== "string" || !(JOB_STATES as readonly string[]).includes(state)) {
    throw new EventParseError("state", `one of ${JOB_STATES.join(", ")}`, describeValue(state));
  }
  const tags = event.tags ?? {};
  if (!isJsonObject(tags)) throw new EventParseError("tags", "an object of tags", describeValue(tags));
  const job = correlateFloJob({ jobName, tags, tagsPath: "tags" });
  if ("notOurs" in job) return { kind: "not-ours", reason: job.notOurs, eventType: LOCAL_JOB_EVENT_TYPE, eventId, jobName };
  return { kind: "flo-job", ...job, jobName, status: state as JobState, rawStatus: state, eventId, eventTime, backend: "local" };
}
