/**
 * Backend-neutral job completion events: what each backend's event parser yields from a
 * job-events queue message, and the helpers those parsers share to read a message body.
 */
import { DEFAULT_JOB_KIND, FLO_APP_TAG_VALUE, FLO_TAGS, JOB_KINDS, isJobKind, parseFloJobName, type JobKind, type JobState } from "./siloCompute";

/** A message body that cannot be a job event: dead-letter it with `message`. */
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

/** A job event of one of flo's silo jobs, whatever backend ran it. */
export interface FloJobEvent {
  kind: "flo-job";
  federationId: string;
  round: number;
  silo: string;
  jobKind: JobKind;
  jobName: string;
  /** Resubmission attempt, when the job name carries one. */
  attempt?: number;
  /** A secure round's re-run session, when the job's tags carry one (its orchestrations' ids say `.s<rerun>`). */
  rerun?: number;
  /** flo's state for the reported status. Absent if the event has none. */
  status?: JobState;
  /** The status word as the event spelled it. */
  rawStatus?: string;
  eventId: string;
  eventTime?: string;
  /** The compute `type` whose parser read it (backends.ts). */
  backend: string;
  correlatedBy: "tags" | "jobName";
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

export type JsonObject = Record<string, unknown>;

/** How a value is shown in a parse error's "got". */
export function describeValue(value: unknown): string {
  if (value === undefined) return "nothing";
  if (value === null) return "null";
  if (Array.isArray(value)) return `an array of ${value.length}`;
  if (typeof value === "string") return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
  if (typeof value === "object") return "an object";
  return typeof value === "number" || typeof value === "boolean" || typeof value === "bigint" ? `${typeof value} ${value}` : typeof value;
}

export function isJsonObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * A queue message body as one JSON value: Service Bus may hand it over as an object (JSON already
 * parsed), a string, or bytes; a one-element array (an Event Grid batch of one) is unwrapped.
 */
export function decodeEventBody(body: unknown): unknown {
  let event: unknown = body;
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) event = parseJsonText(Buffer.from(body).toString("utf8"));
  else if (typeof body === "string") event = parseJsonText(body);
  if (Array.isArray(event)) {
    if (event.length !== 1) {
      throw new EventParseError("(body)", "one event (Service Bus delivers one event per message)", describeValue(event));
    }
    event = event[0];
  }
  return event;
}

function parseJsonText(text: string): unknown {
  const trimmed = text.replace(/^\uFEFF/, "").trim();
  try {
    return JSON.parse(trimmed) as unknown;
  } catch (error) {
    throw new EventParseError("(body)", "JSON text", `unparseable text (${(error as Error).message}): ${describeValue(trimmed)}`);
  }
}

export function requireString(object: JsonObject, key: string, path: string): string {
  const value = object[key];
  if (typeof value !== "string" || value.trim() === "") {
    throw new EventParseError(path, "a non-empty string", describeValue(value));
  }
  return value;
}

export function optionalString(object: JsonObject, key: string, path: string): string | undefined {
  const value = object[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new EventParseError(path, "a string", describeValue(value));
  return value;
}

/** Tag keys are looked up case-insensitively: some delivery paths re-case JSON keys. */
function tagValue(tags: JsonObject, key: string): unknown {
  if (key in tags) return tags[key];
  const lower = key.toLowerCase();
  const found = Object.keys(tags).find((candidate) => candidate.toLowerCase() === lower);
  return found === undefined ? undefined : tags[found];
}

/** Which flo job an event is about. */
export type JobCorrelation = Pick<FloJobEvent, "federationId" | "round" | "silo" | "jobKind" | "attempt" | "rerun" | "correlatedBy">;

/**
 * Finds the flo job an event is about from the job's tags (`floJobTags`), or from its name when it
 * has no flo tags. Returns `{ notOurs }` for another application's job; throws EventParseError for
 * flo tags that are incomplete or malformed (`tagsPath` prefixes the field path).
 */
export function correlateFloJob(args: { jobName: string; tags: JsonObject; tagsPath: string }): JobCorrelation | { notOurs: string } {
  const { jobName, tags, tagsPath } = args;
  const appTag = tagValue(tags, FLO_TAGS.app);
  if (appTag !== undefined && appTag !== FLO_APP_TAG_VALUE) {
    return { notOurs: `job ${jobName} has ${FLO_TAGS.app}=${describeValue(appTag)}, not "${FLO_APP_TAG_VALUE}"` };
  }
  const tagKeys = [FLO_TAGS.federation, FLO_TAGS.round, FLO_TAGS.silo] as const;
  const present = tagKeys.filter((key) => tagValue(tags, key) !== undefined);
  if (present.length === 0) {
    const parts = parseFloJobName(jobName);
    if (!parts) return { notOurs: `job ${jobName} has no flo tags and its name is not a flo job name` };
    const { kind, ...rest } = parts;
    return { ...rest, jobKind: kind, correlatedBy: "jobName" };
  }
  if (present.length < tagKeys.length) {
    const missing = tagKeys.find((key) => tagValue(tags, key) === undefined)!;
    throw new EventParseError(`${tagsPath}.${missing}`, `a tag (the job has ${present.join(", ")})`, "nothing");
  }
  const federationId = tagValue(tags, FLO_TAGS.federation);
  // Tags are strings; a number is accepted in case a producer serialized it as one.
  const roundTag = tagValue(tags, FLO_TAGS.round);
  const roundText = typeof roundTag === "number" && Number.isSafeInteger(roundTag) && roundTag >= 0 ? String(roundTag) : roundTag;
  const silo = tagValue(tags, FLO_TAGS.silo);
  const kindTag = tagValue(tags, FLO_TAGS.kind) ?? DEFAULT_JOB_KIND;
  if (typeof federationId !== "string" || federationId === "") {
    throw new EventParseError(`${tagsPath}.${FLO_TAGS.federation}`, "a non-empty string", describeValue(federationId));
  }
  if (typeof roundText !== "string" || !/^\d{1,9}$/.test(roundText)) {
    throw new EventParseError(`${tagsPath}.${FLO_TAGS.round}`, "a non-negative integer as a string", describeValue(roundText));
  }
  if (typeof silo !== "string" || silo === "") {
    throw new EventParseError(`${tagsPath}.${FLO_TAGS.silo}`, "a non-empty string", describeValue(silo));
  }
  if (!isJobKind(kindTag)) {
    throw new EventParseError(`${tagsPath}.${FLO_TAGS.kind}`, `one of ${Object.keys(JOB_KINDS).join(", ")}`, describeValue(kindTag));
  }
  const rerunTag = tagValue(tags, FLO_TAGS.rerun);
  if (rerunTag !== undefined && !(typeof rerunTag === "string" && /^\d{1,9}$/.test(rerunTag))) {
    throw new EventParseError(`${tagsPath}.${FLO_TAGS.rerun}`, "a non-negative integer as a string", describeValue(rerunTag));
  }
  const rerun = rerunTag === undefined ? 0 : Number(rerunTag);
  const attempt = parseFloJobName(jobName)?.attempt;
  return {
    federationId,
    round: Number(roundText),
    silo,
    jobKind: kindTag,
    ...(attempt === undefined ? {} : { attempt }),
    ...(rerun > 0 ? { rerun } : {}),
    correlatedBy: "tags",
  };
}
