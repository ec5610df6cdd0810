/**
 * The envelopes flo puts on the bus around its own payloads: job events on the job-events queue, and
 * rejected messages. A message that can never succeed is not retried: it is moved, with its reason, to
 * the queue's rejected queue (`<queue>-rejected`, application properties DeadLetterReason and
 * DeadLetterErrorDescription) and the original is completed. The Functions Node worker cannot
 * dead-letter a message itself without the preview SDK binding, so this is the portable way to
 * "dead-letter with a reason" on Azure and on the embedded transport alike.
 */
import type { OutgoingServiceBusMessage } from "./message";

/** Service Bus's limit for a dead-letter description; longer descriptions are cut. */
const MAX_REJECTION_DESCRIPTION = 4096;

/** A job event as sent to the job-events queue: JSON, with the event id as MessageId (duplicate detection). */
export function jobEventMessage(event: { id: string }): OutgoingServiceBusMessage {
  return { body: event, messageId: event.id, contentType: "application/json" };
}

/** Where a queue's rejected messages go, with their reason. */
export function rejectedQueueName(queue: string): string {
  return `${queue}-rejected`;
}

/** A received message that can never succeed, as it is sent to its queue's rejected queue. */
export interface RejectedMessage {
  queue: string;
  body: unknown;
  messageId?: string;
  /** Machine-readable, e.g. `InvalidJobEvent`. */
  reason: string;
  /** For humans: what was wrong, with the field path. */
  description: string;
}

/** The message for `rejectedQueueName(rejected.queue)`: the original body (bytes as base64) and the reason. */
export function rejectedMessage(rejected: RejectedMessage): OutgoingServiceBusMessage {
  const { body: original, messageId, queue } = rejected;
  const body = original === undefined ? null : Buffer.isBuffer(original) ? original.toString("base64") : original;
  return {
    body,
    messageId,
    contentType: typeof body === "string" ? "text/plain" : "application/json",
    applicationProperties: {
      DeadLetterReason: rejected.reason,
      DeadLetterErrorDescription: rejected.description.slice(0, MAX_REJECTION_DESCRIPTION),
      originalQueue: queue,
      ...(messageId ? { originalMessageId: messageId } : {}),
    },
  };
}
