/**
 * Service Bus queue/topic triggers: finds the app's `serviceBusTrigger` registrations, picks a
 * transport per trigger `connection` (real Service Bus when the connection setting is configured,
 * else the embedded Azurite-queue transport), and dispatches each message through the
 * worker-faithful invoke path. The same dispatcher serves both transports.
 */
import type { FunctionRegistry } from "../../functionsCore";
import type { Invoker, TypedData } from "../../invoke";
import { triggerBinding, durableClientBindings } from "../../invoke";
import { resolveAppSettingExpression, type ServiceBusHostOptions } from "../../settings";
import type { DeadLetteredMessage, OutgoingServiceBusMessage, ReceivedServiceBusMessage } from "../../../messaging/message";
import { AzuriteQueueTransport } from "../../../messaging/azuriteTransport";
import { defaultCredentialFactory, openMessageTransport, resolveServiceBusConnection, type CredentialFactory, type ServiceBusConnection } from "../../../messaging/connection";
import { describeSource, normalizeSource, type ServiceBusSource, type ServiceBusSubscription, type ServiceBusTransport } from "../../../messaging/transport";
import { bodyToTypedData, toTriggerMetadata } from "./triggerData";

export const DEFAULT_SERVICE_BUS_CONNECTION = "AzureWebJobsServiceBus";

export interface ServiceBusTriggerInfo {
  functionName: string;
  source: ServiceBusSource;
  /** App-setting name of the connection (binding `connection`, default AzureWebJobsServiceBus). */
  connection: string;
  cardinality: "one" | "many";
  durableClientInputs: string[];
}

/** A trigger registration the host cannot serve. */
export class ServiceBusTriggerError extends Error {
  constructor(
    readonly functionName: string,
    message: string,
  ) {
    super(`Service Bus function "${functionName}": ${message}`);
    this.name = "ServiceBusTriggerError";
  }
}

export function collectServiceBusTriggers(registry: FunctionRegistry, settings: Record<string, string | undefined>): ServiceBusTriggerInfo[] {
  const out: ServiceBusTriggerInfo[] = [];
  for (const [name, fn] of registry.functions) {
    let trigger;
    try {
      trigger = triggerBinding(fn.metadata);
    } catch {
      continue;
    }
    if (trigger.type.toLowerCase() !== "servicebustrigger") continue;
    const b = trigger.binding as Record<string, unknown>;
    const resolve = (field: string): string | undefined => {
      const v = b[field];
      if (v === undefined) return undefined;
      if (typeof v !== "string" || v === "") throw new ServiceBusTriggerError(name, `${field}: expected a non-empty string, got ${JSON.stringify(v)}`);
      return resolveAppSettingExpression(v, settings, `${name}.${field}`);
    };
    const queueName = resolve("queueName");
    const topicName = resolve("topicName");
    const subscriptionName = resolve("subscriptionName");
    let source: ServiceBusSource;
    if (queueName && !topicName) source = { queueName };
    else if (topicName && subscriptionName && !queueName) source = { topicName, subscriptionName };
    else
      throw new ServiceBusTriggerError(
        name,
        `expected either queueName, or topicName + subscriptionName; got queueName=${JSON.stringify(queueName)}, topicName=${JSON.stringify(topicName)}, subscriptionName=${JSON.stringify(subscriptionName)}`,
      );
    const cardinality = typeof b.cardinality === "string" && b.cardinality.toLowerCase() === "many" ? "many" : "one";
    out.push({ functionName: name, source, connection: resolve("connection") ?? DEFAULT_SERVICE_BUS_CONNECTION, cardinality, durableClientInputs: durableClientBindings(fn.metadata) });
  }
  return out;
}

/** Trigger TypedData + metadata for one message (cardinality "many": a batch of one, `*Array` keys). */
export function toInvocation(message: ReceivedServiceBusMessage, cardinality: "one" | "many"): { triggerData: TypedData; triggerMetadata: Record<string, TypedData> } {
  const metadata = toTriggerMetadata(message);
  if (cardinality === "one") return { triggerData: bodyToTypedData(message.body), triggerMetadata: metadata };
  const body = Buffer.isBuffer(message.body) || message.body instanceof Uint8Array ? Buffer.from(message.body).toString("base64") : message.body;
  const arrays: Record<string, TypedData> = {};
  for (const [key, value] of Object.entries(metadata)) {
    const plain: unknown = value.json !== undefined ? JSON.parse(value.json) : (value.int ?? value.string);
    arrays[`${key}Array`] = { json: JSON.stringify([plain]) };
  }
  return { triggerData: { json: JSON.stringify([body]) }, triggerMetadata: arrays };
}

export interface LocalServiceBusOptions {
  registry: FunctionRegistry;
  invoker: Invoker;
  settings: Record<string, string | undefined>;
  options: ServiceBusHostOptions;
  /** Storage account for the embedded transport (Azurite's connection string). */
  storageConnectionString: string;
  clientBindingData?: () => unknown;
  credentialFactory?: CredentialFactory;
  pollIntervalMs?: number;
  onError?: (where: string, error: unknown) => void;
  onInvoked?: (functionName: string, message: ReceivedServiceBusMessage, outcome: "completed" | "failed") => void;
}

/** Key for the embedded transport in the transport map. */
const EMBEDDED = "";

/**
 * The host's Service Bus side: triggers, and a producer API (`send`, `peekDeadLetters`) for tests and
 * for flo's local job events. Without `connection`, `send` uses the transport of the trigger that
 * listens on that entity, else the embedded one.
 */
export class LocalServiceBus {
  readonly triggers: ServiceBusTriggerInfo[];
  private readonly transports = new Map<string, ServiceBusTransport>();
  private readonly subscriptions: ServiceBusSubscription[] = [];
  private stopping: Promise<void> | undefined;

  constructor(private readonly opts: LocalServiceBusOptions) {
    this.triggers = collectServiceBusTriggers(opts.registry, opts.settings);
    for (const trigger of this.triggers) {
      const key = this.transportKey(trigger.connection);
      const transport = this.transportFor(key, trigger.connection);
      if ("topicName" in trigger.source && transport instanceof AzuriteQueueTransport) {
        transport.declareSubscription(trigger.source.topicName, trigger.source.subscriptionName);
      }
    }
  }

  /** The embedded transport (always available). */
  get embedded(): AzuriteQueueTransport {
    return this.transportFor(EMBEDDED, EMBEDDED) as AzuriteQueueTransport;
  }

  /** Which transport each trigger uses (for the startup banner). */
  describeTriggers(): Array<{ functionName: string; source: string; transport: ServiceBusTransport["kind"] }> {
    return this.triggers.map((t) => ({ functionName: t.functionName, source: describeSource(t.source), transport: this.transportFor(this.transportKey(t.connection), t.connection).kind }));
  }

  private transportKey(connectionName: string): string {
    return resolveServiceBusConnection(connectionName, this.opts.settings, this.opts.credentialFactory ?? defaultCredentialFactory) ? connectionName : EMBEDDED;
  }

  private transportFor(key: string, connectionName: string): ServiceBusTransport {
    let transport = this.transports.get(key);
    if (transport) return transport;
    let connection: ServiceBusConnection | undefined;
    if (key !== EMBEDDED) {
      connection = resolveServiceBusConnection(connectionName, this.opts.settings, this.opts.credentialFactory ?? defaultCredentialFactory);
      if (!connection) throw new ServiceBusTriggerError(connectionName, "connection vanished");
    }
    transport = openMessageTransport(connection, () => ({
      connectionString: this.opts.storageConnectionString,
      maxDeliveryCount: this.opts.options.maxDeliveryCount,
      lockDurationMs: this.opts.options.lockDurationMs,
      maxAutoLockRenewalDurationMs: this.opts.options.maxAutoLockRenewalDurationMs,
      pollIntervalMs: this.opts.pollIntervalMs,
    }));
    this.transports.set(key, transport);
    return transport;
  }

  /** Starts one receiver per trigger. */
  start(): void {
    for (const trigger of this.triggers) {
      const transport = this.transportFor(this.transportKey(trigger.connection), trigger.connection);
      const subscription = transport.subscribe(trigger.source, (message) => this.dispatch(trigger, message), {
        maxConcurrentCalls: this.opts.options.maxConcurrentCalls,
        onError: (err) => this.opts.onError?.(`${trigger.functionName} receiver`, err),
      });
      this.subscriptions.push(subscription);
    }
  }

  /** Invokes the trigger's function for one message; throwing makes the transport abandon it. */
  async dispatch(trigger: ServiceBusTriggerInfo, message: ReceivedServiceBusMessage): Promise<void> {
    const { triggerData, triggerMetadata } = toInvocation(message, trigger.cardinality);
    const extraInputs: Record<string, TypedData> = {};
    if (trigger.durableClientInputs.length > 0 && this.opts.clientBindingData) {
      const payload = JSON.stringify(this.opts.clientBindingData());
      for (const name of trigger.durableClientInputs) extraInputs[name] = { string: payload };
    }
    try {
      await this.opts.invoker.invoke(trigger.functionName, triggerData, extraInputs, { triggerMetadata });
    } catch (err) {
      this.opts.onInvoked?.(trigger.functionName, message, "failed");
      this.opts.onError?.(trigger.functionName, err);
      throw err;
    }
    this.opts.onInvoked?.(trigger.functionName, message, "completed");
  }

  private transportForEntity(entityName: string, connection?: string): ServiceBusTransport {
    if (connection !== undefined) return this.transportFor(this.transportKey(connection), connection);
    const lower = entityName.toLowerCase();
    const listener = this.triggers.find((t) => ("queueName" in t.source ? t.source.queueName : t.source.topicName).toLowerCase() === lower);
    return listener ? this.transportFor(this.transportKey(listener.connection), listener.connection) : this.embedded;
  }

  /** Sends to a queue or topic. */
  async send(entityName: string, messages: OutgoingServiceBusMessage | OutgoingServiceBusMessage[], options: { connection?: string } = {}): Promise<void> {
    await this.transportForEntity(entityName, options.connection).send(entityName, messages);
  }

  /** Dead-lettered messages of a queue (name) or topic subscription. */
  async peekDeadLetters(source: ServiceBusSource | string, options: { connection?: string; max?: number } = {}): Promise<DeadLetteredMessage[]> {
    const s = normalizeSource(source);
    const entity = "queueName" in s ? s.queueName : s.topicName;
    return this.transportForEntity(entity, options.connection).peekDeadLetters(s, options.max);
  }

  /** Stops receivers (waiting for in-flight handlers), then closes transports. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      await Promise.allSettled(this.subscriptions.splice(0).map((s) => s.close()));
      await Promise.allSettled([...this.transports.values()].map((t) => t.close()));
    })();
    return this.stopping;
  }
}
