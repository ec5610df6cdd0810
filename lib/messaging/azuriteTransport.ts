/**
 * Embedded Service Bus transport on Azure Storage queues (Azurite locally), with peek-lock-like
 * semantics:
 * - lock = the queue message's visibility timeout (renewed while the handler runs, up to
 *   maxAutoLockRenewalDuration); deliveryCount = the storage dequeueCount (1 on first delivery);
 * - complete = delete; abandon = make visible again now (visibility 0);
 * - after maxDeliveryCount deliveries (failed, or lock lost, e.g. the host was killed) the message
 *   moves to the dead-letter queue `<queue>-deadletter` with DeadLetterReason
 *   `MaxDeliveryCountExceeded`;
 * - topics fan out: a send to a topic copies the message to one storage queue per declared
 *   subscription, named `<topic>-<subscription>`.
 * Entity names are mapped to storage queue names: lower-cased, characters outside [a-z0-9] become
 * "-", and a hash suffix is added when that mapping lost information or the name is too long.
 */
import { createHash, randomUUID } from "crypto";
import { QueueServiceClient, type QueueClient } from "@azure/storage-queue";
import type { DeadLetteredMessage, OutgoingServiceBusMessage, ReceivedServiceBusMessage } from "./message";
import { validateOutgoing } from "./message";
import { describeSource, normalizeSource, ServiceBusTransportError, type MessageHandler, type ServiceBusSource, type ServiceBusSubscription, type ServiceBusTransport } from "./transport";

/** What is stored as the queue message text (JSON). */
interface Envelope {
  flo: 1;
  body: unknown;
  /** json: body is the JSON value; text: a string; base64: binary. */
  bodyEncoding: "json" | "text" | "base64";
  messageId: string;
  contentType?: string;
  correlationId?: string;
  subject?: string;
  to?: string;
  replyTo?: string;
  replyToSessionId?: string;
  sessionId?: string;
  partitionKey?: string;
  applicationProperties?: Record<string, string | number | boolean | null>;
  enqueuedTimeUtc: string;
  expiresAtUtc?: string;
  sequenceNumber: number;
  deadLetterSource?: string;
  deadLetterReason?: string;
  deadLetterErrorDescription?: string;
  lastError?: string;
  /** Delivery count the message had when it was dead-lettered. */
  deliveryCount?: number;
}

/** Storage queue messages are limited to 64 KiB of text. */
const MAX_MESSAGE_TEXT = 64 * 1024;
const MAX_BASE_NAME = 52; // leaves room for "-deadletter" within the 63-character limit

function shortHash(text: string): string {
  return createHash("sha256").update(text).digest("hex").slice(0, 8);
}

/** Maps a Service Bus entity path to a valid storage queue name (deterministic, documented). */
export function storageQueueName(entityPath: string): string {
  const lowered = entityPath.toLowerCase();
  let name = lowered.replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "");
  const lossy = name !== lowered || name.length > MAX_BASE_NAME || name.length < 3;
  if (lossy) name = `${name.slice(0, MAX_BASE_NAME - 9).replace(/-+$/, "")}-${shortHash(entityPath.toLowerCase())}`.replace(/^-+/, "");
  return name;
}

export function deadLetterQueueName(entityPath: string): string {
  return `${storageQueueName(entityPath)}-deadletter`;
}

/** Storage queue carrying a subscription's copy of topic messages. */
export function subscriptionEntityPath(topicName: string, subscriptionName: string): string {
  return `${topicName}-${subscriptionName}`;
}

function sourceEntityPath(source: ServiceBusSource): string {
  return "queueName" in source ? source.queueName : subscriptionEntityPath(source.topicName, source.subscriptionName);
}

export interface AzuriteQueueTransportOptions {
  /** Storage connection string (Azurite's, or a real account's). */
  connectionString: string;
  maxDeliveryCount: number;
  lockDurationMs: number;
  maxAutoLockRenewalDurationMs: number;
  /** Idle poll interval (default 200 ms); local sends wake pollers immediately. */
  pollIntervalMs?: number;
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    }
    signal.addEventListener("abort", done, { once: true });
  });
}

export class AzuriteQueueTransport implements ServiceBusTransport {
  readonly kind = "azurite-queues" as const;
  private readonly service: QueueServiceClient;
  private readonly created = new Map<string, Promise<unknown>>();
  private readonly topics = new Map<string, Set<string>>();
  private readonly subscriptions = new Set<{ close(): Promise<void> }>();
  private readonly wakers = new Map<string, Set<() => void>>();
  private sequence = Date.now() * 1000;

  constructor(private readonly options: AzuriteQueueTransportOptions) {
    if (!(options.maxDeliveryCount >= 1)) throw new ServiceBusTransportError(`maxDeliveryCount: expected >= 1, got ${options.maxDeliveryCount}`);
    this.service = QueueServiceClient.fromConnectionString(options.connectionString);
  }

  /** Declares a topic subscription (from a topic trigger, or for tests): sends to the topic copy to it. */
  declareSubscription(topicName: string, subscriptionName: string): void {
    const key = topicName.toLowerCase();
    const subs = this.topics.get(key) ?? new Set<string>();
    subs.add(subscriptionName);
    this.topics.set(key, subs);
  }

  private async queue(name: string): Promise<QueueClient> {
    const client = this.service.getQueueClient(name);
    let ready = this.created.get(name);
    if (!ready) {
      ready = client.createIfNotExists();
      this.created.set(name, ready);
      ready.catch(() => this.created.delete(name));
    }
    await ready;
    return client;
  }

  private wake(entityPath: string): void {
    for (const wake of this.wakers.get(storageQueueName(entityPath)) ?? []) wake();
  }

  private toEnvelope(message: OutgoingServiceBusMessage): Envelope {
    const m = validateOutgoing(message);
    const now = new Date();
    let body: unknown = m.body;
    let bodyEncoding: Envelope["bodyEncoding"] = "json";
    if (Buffer.isBuffer(m.body) || m.body instanceof Uint8Array) {
      body = Buffer.from(m.body).toString("base64");
      bodyEncoding = "base64";
    } else if (typeof m.body === "string") bodyEncoding = "text";
    return {
      flo: 1,
      body,
      bodyEncoding,
      messageId: m.messageId ?? randomUUID().replace(/-/g, ""),
      contentType: m.contentType,
      correlationId: m.correlationId,
      subject: m.subject,
      to: m.to,
      replyTo: m.replyTo,
      replyToSessionId: m.replyToSessionId,
      sessionId: m.sessionId,
      partitionKey: m.partitionKey,
      applicationProperties: m.applicationProperties,
      enqueuedTimeUtc: now.toISOString(),
      expiresAtUtc: m.timeToLiveMs ? new Date(now.getTime() + m.timeToLiveMs).toISOString() : undefined,
      sequenceNumber: ++this.sequence,
    };
  }

  private async enqueue(queueName: string, envelope: Envelope): Promise<void> {
    const text = JSON.stringify(envelope);
    if (Buffer.byteLength(text) > MAX_MESSAGE_TEXT) {
      throw new ServiceBusTransportError(
        `Message ${envelope.messageId} is ${Buffer.byteLength(text)} bytes as stored; the local transport carries at most ${MAX_MESSAGE_TEXT} (storage queue limit). Send a reference (blob URI) instead.`,
      );
    }
    const queue = await this.queue(queueName);
    await queue.sendMessage(text, { messageTimeToLive: -1 });
  }

  async send(entityName: string, messages: OutgoingServiceBusMessage | OutgoingServiceBusMessage[]): Promise<void> {
    const list = Array.isArray(messages) ? messages : [messages];
    const envelopes = list.map((m) => this.toEnvelope(m)); // validate all before sending any
    const subs = this.topics.get(entityName.toLowerCase());
    const targets = subs ? [...subs].map((s) => subscriptionEntityPath(entityName, s)) : [entityName];
    for (const target of targets) {
      for (const envelope of envelopes) await this.enqueue(storageQueueName(target), envelope);
      this.wake(target);
    }
  }

  async peekDeadLetters(source: ServiceBusSource | string, max = 32): Promise<DeadLetteredMessage[]> {
    const queue = await this.queue(deadLetterQueueName(sourceEntityPath(normalizeSource(source))));
    const result = await queue.peekMessages({ numberOfMessages: Math.min(32, Math.max(1, max)) });
    return result.peekedMessageItems.map((item) => {
      const envelope = JSON.parse(item.messageText) as Envelope;
      const received = fromEnvelope(envelope, envelope.deliveryCount ?? item.dequeueCount, item.messageId);
      return {
        ...received,
        deadLetterReason: envelope.deadLetterReason ?? "",
        deadLetterErrorDescription: envelope.deadLetterErrorDescription ?? "",
        lastError: envelope.lastError,
      };
    });
  }

  private async deadLetter(source: ServiceBusSource, envelope: Envelope, deliveryCount: number, lastError: string | undefined): Promise<void> {
    const dead: Envelope = {
      ...envelope,
      deadLetterSource: describeSource(source),
      deadLetterReason: "MaxDeliveryCountExceeded",
      deadLetterErrorDescription: `Message could not be consumed after ${this.options.maxDeliveryCount} delivery attempts.`,
      lastError,
      deliveryCount,
    };
    await this.enqueue(deadLetterQueueName(sourceEntityPath(source)), dead);
  }

  subscribe(source: ServiceBusSource, handler: MessageHandler, options: { maxConcurrentCalls: number; onError?: (error: unknown) => void }): ServiceBusSubscription {
    if ("topicName" in source) this.declareSubscription(source.topicName, source.subscriptionName);
    const entityPath = sourceEntityPath(source);
    const queueName = storageQueueName(entityPath);
    const abort = new AbortController();
    const inflight = new Set<Promise<void>>();
    const lockSeconds = Math.max(1, Math.ceil(this.options.lockDurationMs / 1000));
    const pollMs = this.options.pollIntervalMs ?? 200;
    let wakeSleeper: (() => void) | undefined;
    const wake = (): void => wakeSleeper?.();
    const wakers = this.wakers.get(queueName) ?? new Set<() => void>();
    wakers.add(wake);
    this.wakers.set(queueName, wakers);
    const report = (err: unknown): void => {
      if (!abort.signal.aborted) options.onError?.(err);
    };

    const handleItem = async (queue: QueueClient, item: { messageId: string; popReceipt: string; messageText: string; dequeueCount: number }): Promise<void> => {
      let popReceipt = item.popReceipt;
      let envelope: Envelope;
      try {
        envelope = JSON.parse(item.messageText) as Envelope;
        if (envelope?.flo !== 1) throw new Error("not a flo Service Bus envelope");
      } catch (err) {
        // Not ours (written by another tool): dead-letter it untouched rather than loop forever.
        const raw: Envelope = { flo: 1, body: item.messageText, bodyEncoding: "text", messageId: item.messageId, enqueuedTimeUtc: new Date().toISOString(), sequenceNumber: ++this.sequence };
        await this.enqueue(deadLetterQueueName(entityPath), {
          ...raw,
          deadLetterReason: "DeserializationFailed",
          deadLetterErrorDescription: (err as Error).message,
          deadLetterSource: describeSource(source),
        });
        await queue.deleteMessage(item.messageId, popReceipt);
        return;
      }
      if (envelope.expiresAtUtc && Date.parse(envelope.expiresAtUtc) < Date.now()) {
        // Expired (time-to-live): dropped, as on a queue without dead-lettering on expiration.
        await queue.deleteMessage(item.messageId, popReceipt);
        return;
      }
      const deliveryCount = item.dequeueCount;
      if (deliveryCount > this.options.maxDeliveryCount) {
        // Locks expired without a settlement (e.g. the host died mid-handler) too often.
        await this.deadLetter(source, envelope, deliveryCount - 1, envelope.lastError);
        await queue.deleteMessage(item.messageId, popReceipt);
        return;
      }
      const renewUntil = Date.now() + this.options.maxAutoLockRenewalDurationMs;
      let renewal: Promise<unknown> = Promise.resolve();
      const renewTimer = setInterval(
        () => {
          if (Date.now() > renewUntil) return;
          renewal = renewal
            .then(async () => {
              const r = await queue.updateMessage(item.messageId, popReceipt, undefined, lockSeconds);
              if (r.popReceipt) popReceipt = r.popReceipt;
            })
            .catch(report);
        },
        Math.max(500, (lockSeconds * 1000) / 2),
      );
      renewTimer.unref();
      let failure: unknown;
      try {
        await handler(fromEnvelope(envelope, deliveryCount, popReceipt));
      } catch (err) {
        failure = err;
      } finally {
        clearInterval(renewTimer);
        await renewal;
      }
      if (failure === undefined) {
        await queue.deleteMessage(item.messageId, popReceipt);
      } else if (deliveryCount >= this.options.maxDeliveryCount) {
        await this.deadLetter(source, envelope, deliveryCount, errorMessage(failure));
        await queue.deleteMessage(item.messageId, popReceipt);
      } else {
        // Abandon: keep the last error with the message, visible again immediately.
        const updated: Envelope = { ...envelope, lastError: errorMessage(failure) };
        await queue.updateMessage(item.messageId, popReceipt, JSON.stringify(updated), 0);
        wake();
      }
    };

    const loop = async (): Promise<void> => {
      const queue = await this.queue(queueName);
      while (!abort.signal.aborted) {
        const free = options.maxConcurrentCalls - inflight.size;
        if (free <= 0) {
          await Promise.race(inflight);
          continue;
        }
        let items: Array<{ messageId: string; popReceipt: string; messageText: string; dequeueCount: number }> = [];
        try {
          const response = await queue.receiveMessages({ numberOfMessages: Math.min(32, free), visibilityTimeout: lockSeconds });
          items = response.receivedMessageItems;
        } catch (err) {
          report(err);
        }
        if (abort.signal.aborted) break;
        if (items.length === 0) {
          await new Promise<void>((resolve) => {
            wakeSleeper = resolve;
            void sleep(pollMs, abort.signal).then(resolve);
          });
          wakeSleeper = undefined;
          continue;
        }
        for (const item of items) {
          const p = handleItem(queue, item)
            .catch(report)
            .finally(() => inflight.delete(p));
          inflight.add(p);
        }
      }
    };
    const running = loop().catch(report);
    const subscription = {
      close: async (): Promise<void> => {
        abort.abort();
        wake();
        wakers.delete(wake);
        await running;
        await Promise.allSettled([...inflight]);
        this.subscriptions.delete(subscription);
      },
    };
    this.subscriptions.add(subscription);
    return subscription;
  }

  async close(): Promise<void> {
    await Promise.all([...this.subscriptions].map((s) => s.close()));
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? `${err.name}: ${err.message}` : String(err);
}

function fromEnvelope(envelope: Envelope, deliveryCount: number, lockToken: string): ReceivedServiceBusMessage {
  const body = envelope.bodyEncoding === "base64" ? Buffer.from(String(envelope.body), "base64") : envelope.body;
  return {
    body,
    messageId: envelope.messageId,
    contentType: envelope.contentType,
    correlationId: envelope.correlationId,
    subject: envelope.subject,
    to: envelope.to,
    replyTo: envelope.replyTo,
    replyToSessionId: envelope.replyToSessionId,
    sessionId: envelope.sessionId,
    partitionKey: envelope.partitionKey,
    applicationProperties: envelope.applicationProperties,
    deliveryCount,
    sequenceNumber: envelope.sequenceNumber,
    enqueuedTimeUtc: new Date(envelope.enqueuedTimeUtc),
    expiresAtUtc: envelope.expiresAtUtc ? new Date(envelope.expiresAtUtc) : undefined,
    // A GUID-shaped token derived from the pop receipt (storage has no lock tokens).
    lockToken: guidFrom(lockToken),
    deadLetterSource: envelope.deadLetterSource,
    deadLetterReason: envelope.deadLetterReason,
    deadLetterErrorDescription: envelope.deadLetterErrorDescription,
  };
}

function guidFrom(text: string): string {
  const h = createHash("sha256").update(text).digest("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}
