/**
 * Loopback fake Azure Service Bus broker (AMQP 1.0 on rhea) for tests. Test-only: never import from lib/.
 *
 * The real `@azure/service-bus` SDK talks to it through the connection string it returns
 * (`UseDevelopmentEmulator=true` makes the SDK use plain TCP on the given port).
 *
 *   const bus = await startFakeServiceBus({ maxDeliveryCount: 3, lockDurationMs: 500,
 *     queues: { "job-events": { duplicateDetectionWindowMs: 60_000 } },
 *     topics: { notifications: { subscriptions: ["partner-a"], duplicateDetectionWindowMs: 60_000 } } });
 *   new ServiceBusClient(bus.connectionString) ...
 *   bus.messages("job-events")            // snapshots of active/locked/deferred/scheduled messages
 *   bus.deadLetters("job-events")         // snapshots of the dead-letter queue (reason, description)
 *   bus.queues / bus.topics               // names; bus.createQueue(...) / bus.createTopic(...) to declare more
 *   await bus.stop()
 *
 * Behaviour (what @azure/service-bus needs): SASL accepts any mechanism; CBS `put-token` always
 * succeeds; queues are created on first use; a topic fans each message out to its subscriptions
 * (`<topic>/Subscriptions/<sub>`); batches (format 0x80013700) are unbatched; the broker assigns message_id
 * (when absent), sequence number, enqueued time, locked-until and delivery_count; peek-lock and
 * receive-and-delete; credit + drain; complete / abandon / defer / dead-letter over the link or
 * `$management` update-disposition; lock expiry redelivers and dead-letters with `MaxDeliveryCountExceeded`
 * once the delivery count reaches maxDeliveryCount; `$management` renew-lock, schedule-message,
 * cancel-scheduled-message, peek-message, receive-by-sequence-number; duplicate detection by MessageId
 * within a window on entities configured with it; message TTL (the message's or the entity default),
 * expired messages dropped or dead-lettered (`TTLExpiredException`), checked lazily on delivery and
 * inspection. Not supported: sessions, filters/rules, transactions, auto-forwarding.
 */
import { randomBytes } from "node:crypto";
import type { AddressInfo, Server } from "node:net";
// rhea's typings model the client side; the broker side uses fields they do not declare.
// eslint-disable-next-line @typescript-eslint/no-require-imports -- untyped on purpose, see above
const rhea = require("rhea");

export interface FakeEntityOptions {
  /** Drop a message whose MessageId was already accepted by this entity within the window. */
  duplicateDetectionWindowMs?: number;
  maxDeliveryCount?: number;
  lockDurationMs?: number;
  /** Messages without their own TTL expire after this long (default: never). */
  defaultMessageTimeToLiveMs?: number;
  /** Expired messages go to the DLQ with reason `TTLExpiredException` instead of being dropped. */
  deadLetteringOnMessageExpiration?: boolean;
}

export interface FakeTopicOptions {
  subscriptions?: string[];
  duplicateDetectionWindowMs?: number;
  /** Applied to each subscription. */
  maxDeliveryCount?: number;
  lockDurationMs?: number;
  defaultMessageTimeToLiveMs?: number;
  deadLetteringOnMessageExpiration?: boolean;
}

export interface FakeServiceBusOptions {
  /** 0 (default) picks a free port. */
  port?: number;
  /** Default for every queue/subscription; Service Bus's default is 10. */
  maxDeliveryCount?: number;
  /** Default peek-lock duration; Service Bus's default is 60 s. */
  lockDurationMs?: number;
  queues?: Record<string, FakeEntityOptions>;
  topics?: Record<string, FakeTopicOptions>;
}

export interface BrokerMessageSnapshot {
  messageId: string | undefined;
  sequenceNumber: number;
  state: "active" | "locked" | "deferred" | "scheduled";
  deliveryCount: number;
  body: unknown;
  subject: string | undefined;
  applicationProperties: Record<string, unknown>;
  deadLetterReason?: string;
  deadLetterErrorDescription?: string;
}

export interface FakeServiceBus {
  connectionString: string;
  port: number;
  /** Names of queues and subscriptions (`<topic>/Subscriptions/<sub>`) that exist, lower-cased. */
  readonly queues: string[];
  /** Topic name -> its subscription names. */
  readonly topics: Record<string, string[]>;
  createQueue(name: string, options?: FakeEntityOptions): void;
  createTopic(name: string, options?: FakeTopicOptions): void;
  /** Messages still held by a queue or subscription (not completed, not dead-lettered). */
  messages(entity: string): BrokerMessageSnapshot[];
  /** Messages in `<entity>/$DeadLetterQueue`. */
  deadLetters(entity: string): BrokerMessageSnapshot[];
  /** Every message the entity ever accepted (completed ones included), oldest first: what travelled through it. */
  accepted(entity: string): BrokerMessageSnapshot[];
  stop(): Promise<void>;
}

/* ----------------------------------------------------------------------------------------------- */

type RheaMessage = Record<string, any>;
type RheaSender = any;
type RheaDelivery = any;

const DLQ_SUFFIX = "/$deadletterqueue";
const MANAGEMENT_SUFFIX = "/$management";
const BATCH_FORMAT = 0x80013700;
const MESSAGE_STATE_ANNOTATION = "x-opt-message-state"; // 0 active, 1 deferred, 2 scheduled

interface StoredMessage {
  sequenceNumber: number;
  message: RheaMessage;
  enqueuedAt: Date;
  /** Number of deliveries so far (the next delivery carries this as delivery_count). */
  deliveries: number;
  state: "active" | "locked" | "deferred" | "scheduled";
  /** Epoch ms after which an unlocked message expires (from its TTL or the entity default). */
  expiresAt?: number;
  lock?: { token: string; until: number; timer: NodeJS.Timeout };
  scheduleTimer?: NodeJS.Timeout;
}

interface Entity {
  name: string; // lower-cased address
  options: { maxDeliveryCount: number; lockDurationMs: number } & Omit<FakeEntityOptions, "maxDeliveryCount" | "lockDurationMs">;
  messages: StoredMessage[];
  consumers: RheaSender[];
  deadLetter?: Entity; // absent on a DLQ itself
  isDeadLetterQueue: boolean;
  seenMessageIds: Map<string, number>;
}

interface Topic {
  name: string;
  subscriptions: Map<string, Entity>;
  duplicateDetectionWindowMs?: number;
  seenMessageIds: Map<string, number>;
  defaults: Omit<FakeEntityOptions, "duplicateDetectionWindowMs">;
}

class ManagementError extends Error {
  constructor(
    readonly statusCode: number,
    readonly condition: string,
    message: string,
  ) {
    super(message);
  }
}

function normalize(address: string): string {
  return address.replace(/^\/+/, "").toLowerCase();
}

/** The SDK shows the delivery tag as a GUID with bytes 0-3, 4-5, 6-7 reversed (.NET byte order). */
function reorderGuidBytes(bytes: Buffer): Buffer {
  const b = Buffer.from(bytes);
  return Buffer.concat([b.subarray(0, 4).reverse(), b.subarray(4, 6).reverse(), b.subarray(6, 8).reverse(), b.subarray(8)]);
}

function bodyToValue(message: RheaMessage): unknown {
  const body = message.body;
  if (body && typeof body === "object" && body.typecode === 0x75 && Buffer.isBuffer(body.content)) {
    const text = body.content.toString("utf8");
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  return body;
}

export async function startFakeServiceBus(options: FakeServiceBusOptions = {}): Promise<FakeServiceBus> {
  const defaults = {
    maxDeliveryCount: options.maxDeliveryCount ?? 10,
    lockDurationMs: options.lockDurationMs ?? 60_000,
  };
  const entities = new Map<string, Entity>();
  const topics = new Map<string, Topic>();
  const locks = new Map<string, { entity: Entity; stored: StoredMessage }>();
  let nextSequenceNumber = 1;
  const acceptedHistory = new Map<string, StoredMessage[]>();
  let stopped = false;

  function makeEntity(name: string, entityOptions: FakeEntityOptions = {}): Entity {
    const key = normalize(name);
    const existing = entities.get(key);
    if (existing) {
      for (const [k, v] of Object.entries(entityOptions)) if (v !== undefined) (existing.options as Record<string, unknown>)[k] = v;
      existing.deadLetter!.options.lockDurationMs = existing.options.lockDurationMs;
      return existing;
    }
    const entity: Entity = {
      name: key,
      options: {
        maxDeliveryCount: entityOptions.maxDeliveryCount ?? defaults.maxDeliveryCount,
        lockDurationMs: entityOptions.lockDurationMs ?? defaults.lockDurationMs,
        duplicateDetectionWindowMs: entityOptions.duplicateDetectionWindowMs,
        defaultMessageTimeToLiveMs: entityOptions.defaultMessageTimeToLiveMs,
        deadLetteringOnMessageExpiration: entityOptions.deadLetteringOnMessageExpiration,
      },
      messages: [],
      consumers: [],
      isDeadLetterQueue: false,
      seenMessageIds: new Map(),
    };
    entity.deadLetter = {
      name: key + DLQ_SUFFIX,
      options: { maxDeliveryCount: Number.MAX_SAFE_INTEGER, lockDurationMs: entity.options.lockDurationMs },
      messages: [],
      consumers: [],
      isDeadLetterQueue: true,
      seenMessageIds: new Map(),
    };
    entities.set(key, entity);
    return entity;
  }

  function createTopic(name: string, topicOptions: FakeTopicOptions = {}): void {
    const key = normalize(name);
    if (entities.has(key)) throw new Error(`fake Service Bus: "${name}" is already a queue, cannot also be a topic`);
    let topic = topics.get(key);
    if (!topic) {
      topic = { name: key, subscriptions: new Map(), seenMessageIds: new Map(), defaults: {} };
      topics.set(key, topic);
    }
    if (topicOptions.duplicateDetectionWindowMs !== undefined) topic.duplicateDetectionWindowMs = topicOptions.duplicateDetectionWindowMs;
    const { subscriptions: _subscriptions, duplicateDetectionWindowMs: _window, ...subscriptionDefaults } = topicOptions;
    topic.defaults = subscriptionDefaults;
    for (const sub of topicOptions.subscriptions ?? []) ensureSubscription(topic, sub);
  }

  function ensureSubscription(topic: Topic, subscription: string): Entity {
    const subKey = normalize(subscription);
    let entity = topic.subscriptions.get(subKey);
    if (!entity) {
      entity = makeEntity(`${topic.name}/subscriptions/${subKey}`, { ...topic.defaults });
      topic.subscriptions.set(subKey, entity);
    }
    return entity;
  }

  /** Resolves a link address (queue, subscription, or either's DLQ) to the entity holding messages. */
  function resolveReceiveEntity(address: string): Entity {
    let key = normalize(address);
    const dlq = key.endsWith(DLQ_SUFFIX);
    if (dlq) key = key.slice(0, -DLQ_SUFFIX.length);
    const subMatch = /^(.+)\/subscriptions\/([^/]+)$/.exec(key);
    let entity: Entity;
    if (subMatch) {
      if (!topics.has(subMatch[1])) createTopic(subMatch[1]);
      entity = ensureSubscription(topics.get(subMatch[1])!, subMatch[2]);
    } else {
      if (topics.has(key)) throw new Error(`cannot receive from topic "${key}"; use "${key}/Subscriptions/<name>"`);
      entity = entities.get(key) ?? makeEntity(key);
    }
    return dlq ? entity.deadLetter! : entity;
  }

  function isDuplicate(seen: Map<string, number>, windowMs: number | undefined, messageId: unknown, now: number): boolean {
    if (windowMs === undefined || messageId === undefined || messageId === null) return false;
    // eslint-disable-next-line @typescript-eslint/no-base-to-string -- AMQP message ids are strings, numbers, uuids or binaries: all print themselves
    const id = String(messageId);
    for (const [k, at] of seen) if (now - at > windowMs) seen.delete(k);
    if (seen.has(id)) return true;
    seen.set(id, now);
    return false;
  }

  /** Entry point for every sent or scheduled message. */
  function accept(address: string, message: RheaMessage): void {
    const key = normalize(address);
    const now = Date.now();
    if (message.message_id === undefined || message.message_id === null) {
      message.message_id = randomBytes(16).toString("hex"); // the SDK's lock renewer needs an id
    }
    const topic = topics.get(key);
    if (topic) {
      if (isDuplicate(topic.seenMessageIds, topic.duplicateDetectionWindowMs, message.message_id, now)) return;
      for (const sub of topic.subscriptions.values()) enqueue(sub, structuredCloneMessage(message));
      return;
    }
    const entity = resolveSendEntity(key);
    if (isDuplicate(entity.seenMessageIds, entity.options.duplicateDetectionWindowMs, message.message_id, now)) return;
    enqueue(entity, message);
  }

  function resolveSendEntity(key: string): Entity {
    if (key.includes("/")) throw new Error(`cannot send to "${key}": only queues and topics accept messages`);
    return entities.get(key) ?? makeEntity(key);
  }

  function structuredCloneMessage(message: RheaMessage): RheaMessage {
    // Re-decoding gives each subscription an independent copy (annotations are mutated per delivery).
    return rhea.message.decode(rhea.message.encode(message));
  }

  function enqueue(entity: Entity, message: RheaMessage, state: StoredMessage["state"] = "active"): StoredMessage {
    const stored: StoredMessage = {
      sequenceNumber: nextSequenceNumber++,
      message,
      enqueuedAt: new Date(),
      deliveries: 0,
      state,
    };
    const ttl = typeof message.ttl === "number" && message.ttl > 0 ? message.ttl : entity.options.defaultMessageTimeToLiveMs;
    if (ttl !== undefined && !entity.isDeadLetterQueue) stored.expiresAt = stored.enqueuedAt.getTime() + ttl;
    entity.messages.push(stored);
    const history = acceptedHistory.get(entity.name) ?? [];
    history.push(stored);
    acceptedHistory.set(entity.name, history);
    if (state === "active") pump(entity);
    return stored;
  }

  function annotate(entity: Entity, stored: StoredMessage): RheaMessage {
    const annotations: Record<string, unknown> = { ...(stored.message.message_annotations ?? {}) };
    annotations["x-opt-sequence-number"] = rhea.types.wrap_long(stored.sequenceNumber);
    annotations["x-opt-enqueued-time"] = stored.enqueuedAt;
    if (stored.lock) annotations["x-opt-locked-until"] = new Date(stored.lock.until);
    if (stored.state === "deferred") annotations[MESSAGE_STATE_ANNOTATION] = 1;
    else if (stored.state === "scheduled") annotations[MESSAGE_STATE_ANNOTATION] = 2;
    if (entity.isDeadLetterQueue) annotations["x-opt-deadletter-source"] = entity.name.slice(0, -DLQ_SUFFIX.length);
    return { ...stored.message, message_annotations: annotations, delivery_count: stored.deliveries };
  }

  function lockMessage(entity: Entity, stored: StoredMessage): Buffer {
    const tag = randomBytes(16);
    const token = tag.toString("hex");
    stored.state = "locked";
    const timer = setTimeout(() => releaseLock(entity, stored, "expired"), entity.options.lockDurationMs);
    timer.unref();
    stored.lock = { token, until: Date.now() + entity.options.lockDurationMs, timer };
    locks.set(token, { entity, stored });
    return tag;
  }

  function clearLock(stored: StoredMessage): void {
    if (!stored.lock) return;
    clearTimeout(stored.lock.timer);
    locks.delete(stored.lock.token);
    stored.lock = undefined;
  }

  function remove(entity: Entity, stored: StoredMessage): void {
    clearLock(stored);
    if (stored.scheduleTimer) clearTimeout(stored.scheduleTimer);
    const index = entity.messages.indexOf(stored);
    if (index >= 0) entity.messages.splice(index, 1);
  }

  function deadLetter(entity: Entity, stored: StoredMessage, reason: string, description: string | undefined, extra?: Record<string, unknown>): void {
    remove(entity, stored);
    if (!entity.deadLetter) {
      // Dead-lettering from a DLQ keeps the message where it is (Service Bus has no DLQ of a DLQ).
      stored.state = "active";
      entity.messages.push(stored);
      pump(entity);
      return;
    }
    const message = stored.message;
    message.application_properties = {
      ...(message.application_properties ?? {}),
      ...(extra ?? {}),
      DeadLetterReason: reason,
      ...(description !== undefined ? { DeadLetterErrorDescription: description } : {}),
    };
    stored.state = "active";
    stored.expiresAt = undefined;
    entity.deadLetter.messages.push(stored);
    pump(entity.deadLetter);
  }

  /** Abandon or lock expiry: the delivery counted; past the limit the message is dead-lettered. */
  function releaseLock(entity: Entity, stored: StoredMessage, why: "abandoned" | "expired", annotationsToModify?: Record<string, unknown>): void {
    if (stored.state !== "locked") return;
    clearLock(stored);
    if (annotationsToModify) stored.message.message_annotations = { ...(stored.message.message_annotations ?? {}), ...annotationsToModify };
    if (stored.deliveries >= entity.options.maxDeliveryCount) {
      deadLetter(entity, stored, "MaxDeliveryCountExceeded", `Message could not be consumed after ${entity.options.maxDeliveryCount} delivery attempts (last lock ${why}).`);
      return;
    }
    stored.state = "active";
    pump(entity);
  }

  function settle(
    lockToken: string,
    outcome: "completed" | "abandoned" | "deferred" | "deadlettered",
    details: { reason?: string; description?: string; properties?: Record<string, unknown> } = {},
  ): void {
    const held = locks.get(lockToken);
    if (!held || held.stored.state !== "locked") {
      throw new ManagementError(410, "com.microsoft:message-lock-lost", "The lock supplied is invalid. Either the lock expired, or the message has already been removed from the queue.");
    }
    const { entity, stored } = held;
    switch (outcome) {
      case "completed":
        remove(entity, stored);
        pump(entity);
        return;
      case "abandoned":
        releaseLock(entity, stored, "abandoned", details.properties);
        return;
      case "deferred":
        clearLock(stored);
        if (details.properties) stored.message.message_annotations = { ...(stored.message.message_annotations ?? {}), ...details.properties };
        stored.state = "deferred";
        return;
      case "deadlettered":
        deadLetter(entity, stored, details.reason ?? "", details.description, details.properties);
        return;
    }
  }

  /** Deliver available messages to consumers with credit, round-robin. */
  /** Expires unlocked messages past their TTL (lazily: whenever the entity is delivered from or inspected). */
  function expire(entity: Entity): void {
    const now = Date.now();
    for (const stored of [...entity.messages]) {
      if (stored.expiresAt === undefined || stored.expiresAt > now || stored.state === "locked" || stored.state === "scheduled") continue;
      if (entity.options.deadLetteringOnMessageExpiration) {
        deadLetter(entity, stored, "TTLExpiredException", `The message expired (time to live ${stored.expiresAt - stored.enqueuedAt.getTime()} ms) and was dead-lettered.`);
      } else {
        remove(entity, stored);
      }
    }
  }

  function pump(entity: Entity): void {
    if (stopped) return;
    expire(entity);
    let progressed = true;
    while (progressed) {
      progressed = false;
      for (const sender of entity.consumers) {
        if (!sender.sendable()) continue;
        const stored = entity.messages.find((m) => m.state === "active");
        if (!stored) return;
        deliver(entity, stored, sender);
        progressed = true;
      }
    }
  }

  function deliver(entity: Entity, stored: StoredMessage, sender: RheaSender): void {
    const receiveAndDelete = sender.local.attach.snd_settle_mode === 1;
    if (receiveAndDelete) {
      const outgoing = annotate(entity, stored);
      stored.deliveries += 1;
      remove(entity, stored);
      sender.send(outgoing, randomBytes(16));
      return;
    }
    const tag = lockMessage(entity, stored);
    const outgoing = annotate(entity, stored);
    stored.deliveries += 1;
    sender.send(outgoing, tag);
  }

  /* ------------------------------------------- $management ------------------------------------------ */

  function lockTokenCandidates(raw: unknown): string[] {
    const bytes = Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw).replace(/-/g, ""), "hex");
    // Link deliveries hand the SDK a reordered GUID; receive-by-sequence-number hands it raw bytes.
    return [reorderGuidBytes(bytes).toString("hex"), bytes.toString("hex")];
  }

  function findLockToken(raw: unknown): string {
    const candidates = lockTokenCandidates(raw);
    return candidates.find((c) => locks.has(c)) ?? candidates[0];
  }

  function asArray(value: unknown): unknown[] {
    if (Array.isArray(value)) return value;
    if (value === undefined || value === null) return [];
    return [value];
  }

  function handleManagement(entityAddress: string, request: RheaMessage): { statusCode: number; body?: unknown } {
    const operation = request.application_properties?.operation;
    const body = (request.body ?? {}) as Record<string, unknown>;
    const key = normalize(entityAddress);
    switch (operation) {
      case "com.microsoft:renew-lock": {
        const expirations = asArray(body["lock-tokens"]).map((raw) => {
          const held = locks.get(findLockToken(raw));
          if (!held || !held.stored.lock) throw new ManagementError(410, "com.microsoft:message-lock-lost", "The lock supplied is invalid.");
          const { entity, stored } = held;
          clearTimeout(stored.lock!.timer);
          stored.lock!.until = Date.now() + entity.options.lockDurationMs;
          stored.lock!.timer = setTimeout(() => releaseLock(entity, stored, "expired"), entity.options.lockDurationMs);
          stored.lock!.timer.unref();
          return new Date(stored.lock!.until);
        });
        return { statusCode: 200, body: { expirations } };
      }
      case "com.microsoft:schedule-message": {
        const sequenceNumbers = asArray(body.messages).map((entry) => {
          const encoded = (entry as Record<string, unknown>).message as Buffer;
          const message = rhea.message.decode(encoded);
          return schedule(key, message);
        });
        return { statusCode: 200, body: { "sequence-numbers": rhea.types.wrap_array(sequenceNumbers, 0x81, undefined) } };
      }
      case "com.microsoft:cancel-scheduled-message": {
        for (const raw of asArray(body["sequence-numbers"])) {
          const seq = Buffer.isBuffer(raw) ? Number(raw.readBigInt64BE()) : Number(raw);
          for (const entity of scheduleTargets(key)) {
            const stored = entity.messages.find((m) => m.sequenceNumber === seq && m.state === "scheduled");
            if (stored) remove(entity, stored);
          }
        }
        return { statusCode: 200, body: {} };
      }
      case "com.microsoft:peek-message": {
        const entity = resolveReceiveEntity(key);
        expire(entity);
        const fromRaw = body["from-sequence-number"];
        const from = Buffer.isBuffer(fromRaw) ? Number(fromRaw.readBigInt64BE()) : Number(fromRaw ?? 0);
        const count = Number(body["message-count"] ?? 1);
        const peeked = entity.messages
          .filter((m) => m.sequenceNumber >= from)
          .sort((a, b) => a.sequenceNumber - b.sequenceNumber)
          .slice(0, count);
        if (peeked.length === 0) return { statusCode: 204 };
        return { statusCode: 200, body: { messages: peeked.map((m) => ({ message: rhea.message.encode(annotate(entity, m)) })) } };
      }
      case "com.microsoft:receive-by-sequence-number": {
        const entity = resolveReceiveEntity(key);
        const receiveAndDelete = Number(body["receiver-settle-mode"] ?? 1) === 0;
        const messages = asArray(body["sequence-numbers"]).map((raw) => {
          const seq = Buffer.isBuffer(raw) ? Number(raw.readBigInt64BE()) : Number(raw);
          const stored = entity.messages.find((m) => m.sequenceNumber === seq && m.state === "deferred");
          if (!stored) throw new ManagementError(404, "com.microsoft:message-not-found", `no deferred message with sequence number ${seq} in "${entity.name}"`);
          stored.state = "active"; // so that lockMessage/annotate treat it as a fresh delivery
          let tag: Buffer;
          if (receiveAndDelete) {
            tag = randomBytes(16);
          } else {
            tag = lockMessage(entity, stored);
          }
          const encoded = rhea.message.encode(annotate(entity, stored));
          stored.deliveries += 1;
          if (receiveAndDelete) remove(entity, stored);
          return { message: encoded, "lock-token": rhea.types.wrap_uuid(tag) };
        });
        return { statusCode: 200, body: { messages } };
      }
      case "com.microsoft:update-disposition": {
        const status = String(body["disposition-status"]);
        const outcome = ({ completed: "completed", abandoned: "abandoned", defered: "deferred", suspended: "deadlettered" } as const)[status as "completed"];
        if (!outcome) throw new ManagementError(400, "amqp:invalid-field", `unknown disposition-status "${status}"`);
        for (const raw of asArray(body["lock-tokens"])) {
          settle(findLockToken(raw), outcome, {
            reason: body["deadletter-reason"] as string | undefined,
            description: body["deadletter-description"] as string | undefined,
            properties: body["properties-to-modify"] as Record<string, unknown> | undefined,
          });
        }
        return { statusCode: 200, body: {} };
      }
      default:
        throw new ManagementError(501, "amqp:not-implemented", `fake Service Bus does not implement management operation "${operation}"`);
    }
  }

  function scheduleTargets(key: string): Entity[] {
    const topic = topics.get(key);
    return topic ? [...topic.subscriptions.values()] : [resolveSendEntity(key)];
  }

  function schedule(key: string, message: RheaMessage): number {
    const at = message.message_annotations?.["x-opt-scheduled-enqueue-time"];
    const when = at instanceof Date ? at.getTime() : Number(at ?? Date.now());
    if (message.message_id === undefined || message.message_id === null) message.message_id = randomBytes(16).toString("hex");
    const targets = scheduleTargets(key);
    const seq = nextSequenceNumber; // the scheduled message's number (shared by its subscription copies)
    const storedCopies = targets.map((entity, i) => ({ entity, stored: enqueue(entity, i === 0 ? message : structuredCloneMessage(message), "scheduled") }));
    for (const { stored } of storedCopies) stored.sequenceNumber = seq;
    nextSequenceNumber = seq + 1;
    for (const { entity, stored } of storedCopies) {
      stored.scheduleTimer = setTimeout(
        () => {
          stored.scheduleTimer = undefined;
          if (stored.state !== "scheduled") return;
          stored.state = "active";
          const enqueuedAt = new Date();
          // TTL counts from when the message becomes visible, not from when it was scheduled.
          if (stored.expiresAt !== undefined) stored.expiresAt += enqueuedAt.getTime() - stored.enqueuedAt.getTime();
          stored.enqueuedAt = enqueuedAt;
          pump(entity);
        },
        Math.max(0, when - Date.now()),
      );
      stored.scheduleTimer.unref();
    }
    return seq;
  }

  /* ------------------------------------------- AMQP wiring ------------------------------------------ */

  const container = rhea.create_container({ id: "fake-servicebus" });
  container.sasl_server_mechanisms.enable_anonymous();
  container.sasl_server_mechanisms.enable_plain(() => true);
  container.sasl.server_add_external(container.sasl_server_mechanisms);
  container.sasl_server_mechanisms["MSSBCBS"] = container.sasl_server_mechanisms["EXTERNAL"];

  function reply(connection: any, node: string, request: RheaMessage, statusCode: number, body: unknown, description = "", condition?: string): void {
    // The reply link is the client's receiver on the same node ($cbs or <entity>/$management); match its
    // target (= reply_to) or name, else the only receiver on that node (the CBS receiver has no target).
    const sender =
      connection.find_sender((s: RheaSender) => s.target?.address !== undefined && s.target?.address === request.reply_to) ??
      connection.find_sender((s: RheaSender) => s.name === request.reply_to) ??
      connection.find_sender((s: RheaSender) => s.source?.address === node);
    if (!sender) return; // client went away
    const properties: Record<string, unknown> = { statusCode, "status-code": statusCode, "status-description": description };
    if (condition) properties["error-condition"] = condition;
    sender.send({ correlation_id: request.message_id, to: request.reply_to, application_properties: properties, body: body ?? {} });
  }

  container.on("receiver_open", (context: any) => {
    // The client opened a sender: we receive on this link.
    const receiver = context.receiver;
    receiver.set_target(receiver.target ?? {});
    const address: string = receiver.target?.address ?? "";
    receiver.on("message", (ctx: any) => {
      const delivery: RheaDelivery = ctx.delivery;
      try {
        if (address === "$cbs") {
          reply(ctx.connection, address, ctx.message, 202, undefined, "Accepted");
        } else if (normalize(address).endsWith(MANAGEMENT_SUFFIX)) {
          const entityAddress = address.slice(0, -MANAGEMENT_SUFFIX.length);
          try {
            const result = handleManagement(entityAddress, ctx.message);
            reply(ctx.connection, address, ctx.message, result.statusCode, result.body, result.statusCode === 204 ? "No Content" : "OK");
          } catch (e) {
            const err = e instanceof ManagementError ? e : new ManagementError(500, "amqp:internal-error", String((e as Error).message));
            reply(ctx.connection, address, ctx.message, err.statusCode, undefined, err.message, err.condition);
          }
        } else {
          const messages: RheaMessage[] = ctx.format === BATCH_FORMAT ? unbatch(ctx.message as Buffer) : [ctx.message];
          for (const m of messages) accept(address, m);
        }
        delivery.update(true, rhea.message.accepted().described());
      } catch (e) {
        delivery.update(true, rhea.message.rejected({ error: { condition: "amqp:not-allowed", description: (e as Error).message } }).described());
      }
    });
  });

  container.on("sender_open", (context: any) => {
    // The client opened a receiver: we deliver on this link.
    const sender: RheaSender = context.sender;
    sender.set_source(sender.source ?? {});
    const remote = sender.remote.attach;
    sender.local.attach.snd_settle_mode = remote.snd_settle_mode;
    sender.local.attach.rcv_settle_mode = remote.rcv_settle_mode;
    const address: string = sender.source?.address ?? "";
    const key = normalize(address);
    if (address === "$cbs" || key.endsWith(MANAGEMENT_SUFFIX)) return; // reply links
    let entity: Entity;
    try {
      entity = resolveReceiveEntity(address);
    } catch (e) {
      sender.close({ condition: "amqp:not-found", description: (e as Error).message });
      return;
    }
    entity.consumers.push(sender);
    const onCredit = () => pump(entity);
    sender.on("sendable", onCredit);
    sender.on("sender_flow", onCredit);
    sender.on("sender_draining", () => {
      pump(entity);
      sender.set_drained(true);
    });
    const outcomeHandler = (kind: "accepted" | "released" | "modified" | "rejected") => (ctx: any) => {
      const delivery: RheaDelivery = ctx.delivery;
      const token = Buffer.from(delivery.tag).toString("hex");
      const state = delivery.remote_state ?? {};
      try {
        if (kind === "accepted") settle(token, "completed");
        else if (kind === "released") settle(token, "abandoned");
        else if (kind === "modified") {
          settle(token, state.undeliverable_here ? "deferred" : "abandoned", { properties: state.message_annotations });
        } else {
          const error = state.error ?? {};
          const info = (error.info ?? {}) as Record<string, unknown>;
          const { DeadLetterReason, DeadLetterErrorDescription, ...rest } = info;
          settle(token, "deadlettered", { reason: DeadLetterReason as string | undefined, description: DeadLetterErrorDescription as string | undefined, properties: rest });
        }
        // Always settle with a non-error outcome (echoing the dead-letter error makes the SDK throw).
        const outcome = kind === "accepted" ? rhea.message.accepted() : kind === "rejected" ? rhea.message.rejected({}) : kind === "released" ? rhea.message.released() : rhea.message.modified(state);
        delivery.update(true, outcome.described());
      } catch (e) {
        delivery.update(true, rhea.message.rejected({ error: { condition: (e as ManagementError).condition ?? "amqp:internal-error", description: (e as Error).message } }).described());
      }
    };
    sender.on("accepted", outcomeHandler("accepted"));
    sender.on("released", outcomeHandler("released"));
    sender.on("modified", outcomeHandler("modified"));
    sender.on("rejected", outcomeHandler("rejected"));
    const detach = () => {
      const i = entity.consumers.indexOf(sender);
      if (i >= 0) entity.consumers.splice(i, 1);
    };
    sender.on("sender_close", detach);
    sender.on("sender_error", detach);
  });
  container.on("disconnected", (context: any) => {
    for (const entity of allEntities()) entity.consumers = entity.consumers.filter((s) => s.connection !== context.connection);
  });
  container.on("error", () => {
    /* a client vanished mid-operation; nothing to clean beyond "disconnected" */
  });
  container.on("connection_error", () => undefined);
  container.on("protocol_error", () => undefined);

  function unbatch(buffer: Buffer): RheaMessage[] {
    const envelope = rhea.message.decode(buffer);
    const content = envelope.body?.content;
    if (Array.isArray(content)) return content.map((b: Buffer) => rhea.message.decode(b));
    if (Buffer.isBuffer(content)) return [rhea.message.decode(content)];
    return [envelope];
  }

  function allEntities(): Entity[] {
    return [...entities.values()].flatMap((e) => (e.deadLetter ? [e, e.deadLetter] : [e]));
  }

  for (const [name, opts] of Object.entries(options.queues ?? {})) makeEntity(name, opts);
  for (const [name, opts] of Object.entries(options.topics ?? {})) createTopic(name, opts);

  const server: Server = container.listen({
    host: "127.0.0.1",
    port: options.port ?? 0,
    treat_modified_as_released: false,
    sender_options: { treat_modified_as_released: false, autosettle: false },
    // max_message_size: the SDK sizes batches from it (256 KB = the Standard tier limit).
    receiver_options: { autoaccept: false, credit_window: 1000, max_message_size: 256 * 1024 },
  });
  await new Promise<void>((resolve, reject) => {
    server.once("listening", () => resolve());
    server.once("error", reject);
  });
  const port = (server.address() as AddressInfo).port;
  // Not a secret: the broker accepts any token. Random so nothing looks like a real key.
  const sharedAccessKey = randomBytes(32).toString("base64");
  const sockets = new Set<import("node:net").Socket>();
  server.on("connection", (socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });

  function snapshot(entity: Entity, stored: StoredMessage[] = entity.messages): BrokerMessageSnapshot[] {
    if (!entity.isDeadLetterQueue) expire(entity);
    return stored.map((m) => ({
      messageId: m.message.message_id === undefined ? undefined : String(m.message.message_id),
      sequenceNumber: m.sequenceNumber,
      state: m.state,
      deliveryCount: m.deliveries,
      body: bodyToValue(m.message),
      subject: m.message.subject,
      applicationProperties: { ...(m.message.application_properties ?? {}) },
      deadLetterReason: m.message.application_properties?.DeadLetterReason,
      deadLetterErrorDescription: m.message.application_properties?.DeadLetterErrorDescription,
    }));
  }

  function existing(name: string): Entity {
    const entity = entities.get(normalize(name));
    if (!entity) throw new Error(`fake Service Bus: no queue or subscription named "${name}" (have: ${[...entities.keys()].join(", ") || "none"})`);
    return entity;
  }

  return {
    connectionString: `Endpoint=sb://127.0.0.1:${port};SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${sharedAccessKey};UseDevelopmentEmulator=true`,
    port,
    get queues() {
      return [...entities.keys()];
    },
    get topics() {
      return Object.fromEntries([...topics.values()].map((t) => [t.name, [...t.subscriptions.keys()]]));
    },
    createQueue: (name, opts) => void makeEntity(name, opts),
    createTopic,
    messages: (name) => snapshot(existing(name)),
    deadLetters: (name) => {
      const entity = existing(name);
      expire(entity);
      return snapshot(entity.deadLetter!);
    },
    accepted: (name) => {
      const entity = existing(name);
      return snapshot(entity, acceptedHistory.get(entity.name) ?? []);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const entity of allEntities())
        for (const m of entity.messages) {
          clearLock(m);
          if (m.scheduleTimer) clearTimeout(m.scheduleTimer);
        }
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    },
  };
}
