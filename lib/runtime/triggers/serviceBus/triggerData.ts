/**
 * How a received Service Bus message becomes the worker's trigger TypedData + `triggerMetadata` (keys
 * as the .NET Service Bus extension names them; the `@azure/functions` library then lower-cases the
 * first letter of every key recursively, including inside applicationProperties — the documented
 * quirk). Pure logic.
 */
import type { TypedData } from "../../invoke";
import type { ReceivedServiceBusMessage } from "../../../messaging/message";

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
