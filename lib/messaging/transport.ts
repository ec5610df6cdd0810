/**
 * The port between flo (the federation's producers, the local host's Service Bus triggers) and whatever
 * carries the messages: the embedded Azurite queue transport, or real Service Bus (incl. the emulator)
 * through `@azure/service-bus`.
 * Contract: a handler that resolves completes the message; one that throws abandons it (redelivery
 * with deliveryCount + 1) until maxDeliveryCount, then the message is dead-lettered with
 * reason `MaxDeliveryCountExceeded`.
 */
import type { DeadLetteredMessage, OutgoingServiceBusMessage, ReceivedServiceBusMessage } from "./message";

export type ServiceBusSource = { queueName: string } | { topicName: string; subscriptionName: string };

export type MessageHandler = (message: ReceivedServiceBusMessage) => Promise<void>;

export interface ServiceBusSubscription {
  close(): Promise<void>;
}

export interface ServiceBusTransport {
  readonly kind: "azurite-queues" | "service-bus";
  /** Sends to a queue or a topic (a topic fans out to its subscriptions). */
  send(entityName: string, messages: OutgoingServiceBusMessage | OutgoingServiceBusMessage[]): Promise<void>;
  /** Starts delivering messages of `source` to `handler`, at most `maxConcurrentCalls` at a time. */
  subscribe(source: ServiceBusSource, handler: MessageHandler, options: { maxConcurrentCalls: number; onError?: (error: unknown) => void }): ServiceBusSubscription;
  /** Reads (without removing) up to `max` dead-lettered messages of a queue or subscription. */
  peekDeadLetters(source: ServiceBusSource | string, max?: number): Promise<DeadLetteredMessage[]>;
  close(): Promise<void>;
}

/** A transport-level failure (entity name not mappable, message too large, ...). */
export class ServiceBusTransportError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ServiceBusTransportError";
  }
}

export function describeSource(source: ServiceBusSource): string {
  return "queueName" in source ? source.queueName : `${source.topicName}/Subscriptions/${source.subscriptionName}`;
}

export function normalizeSource(source: ServiceBusSource | string): ServiceBusSource {
  return typeof source === "string" ? { queueName: source } : source;
}
