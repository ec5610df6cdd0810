/**
 * Service Bus messages as the local host sees them: what producers send, what a transport hands the
 * dispatcher, and how one is turned into the worker's trigger TypedData + `triggerMetadata` (keys as
 * the .NET Service Bus extension names them; the `@azure/functions` library then lower-cases the first
 * letter of every key recursively, including inside applicationProperties — the documented quirk).
 * Pure logic.
 */
import type { TypedData } from "../../invoke";

/** What a producer sends (the subset of `@azure/service-bus` `ServiceBusMessage` flo supports). */
export interface OutgoingServiceBusMessage {
  /** Objects/arrays/numbers/booleans are JSON; strings are text; Buffers/Uint8Arrays are binary. */
  body: unknown;
  messageId?: string;
  contentType?: string;
  correlationId?: string;
  subject?: string;
  to?: string;
  replyTo?: string;
  replyToSessionId?: string;
  sessionId?: string;
  partitionKey?: string;
  timeToLiveMs?: number;
  applicationProperties?: Record<string, string | number | boolean | null>;
}

/** A message as delivered to a handler (transport-neutral). */
export interface ReceivedServiceBusMessage extends OutgoingServiceBusMessage {
  messageId: string;
  /** 1 on the first delivery (the .NET convention the Functions host exposes). */
  deliveryCount: number;
  sequenceNumber: number;
  enqueuedTimeUtc: Date;
  expiresAtUtc?: Date;
  lockToken: string;
  deadLetterSource?: string;
  deadLetterReason?: string;
  deadLetterErrorDescription?: string;
}

/** A message found in a dead-letter queue. */
export interface DeadLetteredMessage extends ReceivedServiceBusMessage {
  deadLetterReason: string;
  deadLetterErrorDescription: string;
  /** Local transport only: the last handler error message (never sent to real Service Bus). */
  lastError?: string;
}

/** Bad producer input (e.g. a body that cannot be carried). */
export class ServiceBusMessageError extends Error {
  constructor(readonly field: string, readonly expected: string, readonly got: string) {
    super(`Service Bus message ${field}: expected ${expected}, got ${got}`);
    this.name = "ServiceBusMessageError";
  }
}

/** Validates a producer message; returns it normalized (never mutates the input). */
export function validateOutgoing(message: OutgoingServiceBusMessage): OutgoingServiceBusMessage {
  if (message === null || typeof message !== "object") throw new ServiceBusMessageError("(message)", "an object with a body", String(message));
  if (!("body" in message) || message.body === undefined) throw new ServiceBusMessageError("body", "a value (object, string or bytes)", "undefined");
  for (const key of ["messageId", "contentType", "correlationId", "subject", "to", "replyTo", "replyToSessionId", "sessionId", "partitionKey"] as const) {
    const value = message[key];
    if (value !== undefined && typeof value !== "string") throw new ServiceBusMessageError(key, "string", typeof value);
  }
  if (message.messageId !== undefined && (message.messageId.length === 0 || message.messageId.length > 128)) {
    throw new ServiceBusMessageError("messageId", "1..128 characters", `${message.messageId.length} characters`);
  }
  if (message.timeToLiveMs !== undefined && !(message.timeToLiveMs > 0)) throw new ServiceBusMessageError("timeToLiveMs", "a positive number", String(message.timeToLiveMs));
  for (const [name, value] of Object.entries(message.applicationProperties ?? {})) {
    if (value !== null && !["string", "number", "boolean"].includes(typeof value)) {
      throw new ServiceBusMessageError(`applicationProperties.${name}`, "string, number, boolean or null", typeof value);
    }
  }
  return { ...message };
}

/** Trigger TypedData for a body: JSON values as json, text as string (the worker JSON-parses it if it can), bytes as bytes. */
export function bodyToTypedData(body: unknown): TypedData {
  if (Buffer.isBuffer(body) || body instanceof Uint8Array) return { bytes: Buffer.from(body) };
  if (typeof body === "string") return { string: body };
  return { json: JSON.stringify(body ?? null) };
}

function str(value: string | undefined): TypedData | undefined {
  return value === undefined ? undefined : { string: value };
}

/**
 * The triggerMetadata the Service Bus extension (5.x) binds for one message, PascalCase like the
 * host sends it. `applicationProperties`/`userProperties` go as json so the worker's recursive
 * camel-casing applies inside them too.
 */
export function toTriggerMetadata(message: ReceivedServiceBusMessage): Record<string, TypedData> {
  const enqueued = message.enqueuedTimeUtc.toISOString();
  const expires = (message.expiresAtUtc ?? new Date(8640000000000000)).toISOString();
  const props = JSON.stringify(message.applicationProperties ?? {});
  const entries: Record<string, TypedData | undefined> = {
    DeliveryCount: { int: message.deliveryCount },
    DeadLetterSource: str(message.deadLetterSource),
    LockToken: { string: message.lockToken },
    ExpiresAtUtc: { string: expires },
    ExpiresAt: { string: expires },
    EnqueuedTimeUtc: { string: enqueued },
    EnqueuedTime: { string: enqueued },
    MessageId: { string: message.messageId },
    ContentType: str(message.contentType),
    ReplyTo: str(message.replyTo),
    SequenceNumber: { int: message.sequenceNumber },
    To: str(message.to),
    Subject: str(message.subject),
    Label: str(message.subject),
    CorrelationId: str(message.correlationId),
    SessionId: str(message.sessionId),
    ReplyToSessionId: str(message.replyToSessionId),
    PartitionKey: str(message.partitionKey),
    ApplicationProperties: { json: props },
    UserProperties: { json: props },
  };
  const out: Record<string, TypedData> = {};
  for (const [key, value] of Object.entries(entries)) if (value !== undefined) out[key] = value;
  return out;
}
