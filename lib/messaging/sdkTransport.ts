/**
 * Real Service Bus (Azure, the official emulator's `UseDevelopmentEmulator=true` connection string,
 * or a loopback AMQP fake) through `@azure/service-bus`: peekLock receivers, complete on success,
 * abandon on throw. Dead-lettering after maxDeliveryCount is the broker's job (a queue property).
 */
import { ServiceBusClient, type ServiceBusReceivedMessage, type ServiceBusReceiver, type ServiceBusSender, type ServiceBusMessage } from "@azure/service-bus";
import { randomUUID } from "crypto";
import type { DeadLetteredMessage, OutgoingServiceBusMessage, ReceivedServiceBusMessage } from "./message";
import { validateOutgoing } from "./message";
import type { ServiceBusConnection } from "./connection";
import { normalizeSource, type MessageHandler, type ServiceBusSource, type ServiceBusSubscription, type ServiceBusTransport } from "./transport";

export function toSdkMessage(message: OutgoingServiceBusMessage): ServiceBusMessage {
  const m = validateOutgoing(message);
  return {
    body: m.body instanceof Uint8Array && !Buffer.isBuffer(m.body) ? Buffer.from(m.body) : m.body,
    messageId: m.messageId,
    contentType: m.contentType ?? (typeof m.body === "object" && !Buffer.isBuffer(m.body) && !(m.body instanceof Uint8Array) ? "application/json" : undefined),
    correlationId: m.correlationId,
    subject: m.subject,
    to: m.to,
    replyTo: m.replyTo,
    replyToSessionId: m.replyToSessionId,
    sessionId: m.sessionId,
    partitionKey: m.partitionKey,
    timeToLive: m.timeToLiveMs,
    applicationProperties: m.applicationProperties,
  };
}

/** Converts an SDK message to the transport-neutral shape (deliveryCount made 1-based like .NET). */
export function fromSdkMessage(message: ServiceBusReceivedMessage): ReceivedServiceBusMessage {
  const optional = (v: string | number | Buffer | undefined): string | undefined => (v === undefined || v === null ? undefined : String(v));
  return {
    body: message.body,
    messageId: optional(message.messageId) ?? "",
    contentType: message.contentType,
    correlationId: optional(message.correlationId),
    subject: message.subject,
    to: message.to,
    replyTo: message.replyTo,
    replyToSessionId: message.replyToSessionId,
    sessionId: message.sessionId,
    partitionKey: message.partitionKey,
    applicationProperties: message.applicationProperties as ReceivedServiceBusMessage["applicationProperties"],
    deliveryCount: (message.deliveryCount ?? 0) + 1,
    sequenceNumber: message.sequenceNumber ? Number(message.sequenceNumber.toString()) : 0,
    enqueuedTimeUtc: message.enqueuedTimeUtc ?? new Date(),
    expiresAtUtc: message.expiresAtUtc,
    lockToken: message.lockToken ?? randomUUID(),
    deadLetterSource: message.deadLetterSource,
    deadLetterReason: message.deadLetterReason,
    deadLetterErrorDescription: message.deadLetterErrorDescription,
  };
}

export class ServiceBusSdkTransport implements ServiceBusTransport {
  readonly kind = "service-bus" as const;
  private readonly client: ServiceBusClient;
  private readonly senders = new Map<string, ServiceBusSender>();
  private readonly open = new Set<ServiceBusSubscription>();

  constructor(connection: ServiceBusConnection) {
    this.client = "connectionString" in connection ? new ServiceBusClient(connection.connectionString) : new ServiceBusClient(connection.fullyQualifiedNamespace, connection.credential);
  }

  async send(entityName: string, messages: OutgoingServiceBusMessage | OutgoingServiceBusMessage[]): Promise<void> {
    const list = (Array.isArray(messages) ? messages : [messages]).map(toSdkMessage);
    let sender = this.senders.get(entityName);
    if (!sender) {
      sender = this.client.createSender(entityName);
      this.senders.set(entityName, sender);
    }
    await sender.sendMessages(list);
  }

  subscribe(source: ServiceBusSource, handler: MessageHandler, options: { maxConcurrentCalls: number; onError?: (error: unknown) => void }): ServiceBusSubscription {
    const receiver: ServiceBusReceiver =
      "queueName" in source
        ? this.client.createReceiver(source.queueName, { receiveMode: "peekLock" })
        : this.client.createReceiver(source.topicName, source.subscriptionName, { receiveMode: "peekLock" });
    const handle = receiver.subscribe(
      {
        processMessage: async (message) => {
          try {
            await handler(fromSdkMessage(message));
          } catch {
            await receiver.abandonMessage(message);
            return;
          }
          await receiver.completeMessage(message);
        },
        processError: async (args) => options.onError?.(args.error),
      },
      { autoCompleteMessages: false, maxConcurrentCalls: options.maxConcurrentCalls },
    );
    const subscription: ServiceBusSubscription = {
      close: async () => {
        await handle.close();
        await receiver.close();
        this.open.delete(subscription);
      },
    };
    this.open.add(subscription);
    return subscription;
  }

  async peekDeadLetters(source: ServiceBusSource | string, max = 32): Promise<DeadLetteredMessage[]> {
    const s = normalizeSource(source);
    const receiver =
      "queueName" in s ? this.client.createReceiver(s.queueName, { subQueueType: "deadLetter" }) : this.client.createReceiver(s.topicName, s.subscriptionName, { subQueueType: "deadLetter" });
    try {
      const messages = await receiver.peekMessages(max);
      return messages.map((m) => ({
        ...fromSdkMessage(m),
        deadLetterReason: m.deadLetterReason ?? "",
        deadLetterErrorDescription: m.deadLetterErrorDescription ?? "",
      }));
    } finally {
      await receiver.close();
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.open].map((s) => s.close()));
    await Promise.all([...this.senders.values()].map((s) => s.close()));
    await this.client.close();
  }
}
