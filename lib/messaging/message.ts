/**
 * Service Bus messages as flo's transports carry them: what producers send (validated before any is
 * sent), what a transport hands a handler, and what a dead-letter queue holds. Pure logic.
 */

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
  constructor(
    readonly field: string,
    readonly expected: string,
    readonly got: string,
  ) {
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
