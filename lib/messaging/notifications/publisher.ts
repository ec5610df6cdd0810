/**
 * Publishes partner notifications (round-completed, federation-completed, federation-failed) to a Service
 * Bus topic partners subscribe to. JSON bodies per schema/notification.schema.json; deterministic
 * MessageIds so the topic's duplicate detection drops re-sends; no secrets in messages, errors or logs.
 */
import { ServiceBusClient, type ServiceBusClientOptions, type ServiceBusMessage, type ServiceBusSender } from "@azure/service-bus";
import type { ServiceBusConnection } from "../connection";
import { InvalidNotificationError, NotificationConfigError, NotificationPublishError } from "./errors";
import { notificationMessageId } from "./messageId";
import { MAX_REASON_LENGTH, NOTIFICATION_SPEC_VERSION, notificationSchema, type Notification } from "./schema";

/** A notification as callers write it: specVersion is filled in, time defaults to now. */
export type NotificationInput = Notification extends infer N ? (N extends Notification ? Omit<N, "specVersion" | "time"> & { time?: string | Date } : never) : never;

export interface NotificationPublisherOptions {
  topicName: string;
  /** Identity-based connections (managed identity in Azure) need Azure Service Bus Data Sender on the topic. */
  connection: ServiceBusConnection;
  /** Retry/timeouts of the SDK client (e.g. `{ retryOptions: { maxRetries: 3 } }`). */
  clientOptions?: ServiceBusClientOptions;
  /** Receives one line per published message (ids and types only: never bodies' URIs or credentials). */
  log?: (line: string) => void;
}

export interface PublishOptions {
  signal?: AbortSignal;
}

export interface PublishedNotification {
  messageId: string;
  notification: Notification;
}

/** Validates a notification (filling specVersion and time), reporting every problem with its field path. */
export function toNotification(input: NotificationInput, now: () => Date = () => new Date()): Notification {
  const time = input.time instanceof Date ? input.time.toISOString() : (input.time ?? now().toISOString());
  const candidate: Record<string, unknown> = { ...input, specVersion: NOTIFICATION_SPEC_VERSION, time };
  // A long failure reason (e.g. every excluded silo's error) must not make the notification unsendable.
  if (typeof candidate.reason === "string" && candidate.reason.length > MAX_REASON_LENGTH) {
    candidate.reason = `${candidate.reason.slice(0, MAX_REASON_LENGTH - 3)}...`;
  }
  const result = notificationSchema.safeParse(candidate);
  if (!result.success) {
    throw new InvalidNotificationError(result.error.issues.map((issue) => ({ path: issue.path.map(String).join("."), message: issue.message })));
  }
  return result.data;
}

/** The Service Bus message for a validated notification (pure). */
export function toServiceBusMessage(notification: Notification): ServiceBusMessage {
  const round = "round" in notification ? notification.round : undefined;
  const applicationProperties: Record<string, string | number> = {
    floFederation: notification.federationId,
    floType: notification.type,
  };
  if (round !== undefined) applicationProperties.floRound = round;
  return {
    messageId: notificationMessageId(notification.federationId, notification.type, round),
    subject: notification.type,
    contentType: "application/json",
    body: notification,
    applicationProperties,
  };
}

function describeConnection(connection: ServiceBusConnection | undefined): string {
  if (!connection) return "undefined";
  return `an object with keys [${Object.keys(connection).join(", ")}]`;
}

/** What the federation needs of a publisher (the services port's `notifications`). */
export interface NotificationSender {
  readonly topicName: string;
  publish(input: NotificationInput, options?: PublishOptions): Promise<PublishedNotification>;
  close(): Promise<void>;
}

export class NotificationPublisher implements NotificationSender {
  private readonly client: ServiceBusClient;
  private readonly sender: ServiceBusSender;
  readonly topicName: string;
  private readonly log?: (line: string) => void;

  constructor(options: NotificationPublisherOptions) {
    if (typeof options?.topicName !== "string" || options.topicName.trim() === "") {
      throw new NotificationConfigError("topicName", "a non-empty topic name", JSON.stringify(options?.topicName));
    }
    const connection = options.connection;
    if (connection && "connectionString" in connection && typeof connection.connectionString === "string" && connection.connectionString !== "") {
      this.client = new ServiceBusClient(connection.connectionString, options.clientOptions);
    } else if (connection && "fullyQualifiedNamespace" in connection && typeof connection.fullyQualifiedNamespace === "string" && connection.fullyQualifiedNamespace !== "" && connection.credential) {
      this.client = new ServiceBusClient(connection.fullyQualifiedNamespace, connection.credential, options.clientOptions);
    } else {
      // Never echo the values: a connection string is a secret.
      throw new NotificationConfigError("connection", "{connectionString} or {fullyQualifiedNamespace, credential}", describeConnection(connection));
    }
    this.topicName = options.topicName;
    this.sender = this.client.createSender(options.topicName);
    this.log = options.log;
  }

  /** Validates and sends one notification; resolves once Service Bus accepted it (or dropped it as a duplicate). */
  async publish(input: NotificationInput, options: PublishOptions = {}): Promise<PublishedNotification> {
    const notification = toNotification(input);
    const message = toServiceBusMessage(notification);
    const messageId = message.messageId as string;
    try {
      await this.sender.sendMessages(message, { abortSignal: options.signal });
    } catch (error) {
      const reason = options.signal?.aborted ? "aborted" : ((error as { code?: string }).code ?? (error as Error).name ?? "send failed");
      throw new NotificationPublishError(this.topicName, messageId, reason, { cause: error });
    }
    this.log?.(`notification ${notification.type} sent to topic ${this.topicName} (messageId ${messageId})`);
    return { messageId, notification };
  }

  async close(): Promise<void> {
    await this.sender.close();
    await this.client.close();
  }
}
