import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ServiceBusClient, type ServiceBusReceivedMessage, type ServiceBusReceiver } from "@azure/service-bus";
import {
  InvalidNotificationError,
  NotificationConfigError,
  NotificationPublishError,
  NotificationPublisher,
  notificationJsonSchemaText,
  notificationMessageId,
  toNotification,
  toServiceBusMessage,
} from "../lib/messaging/notifications";
import { startFakeServiceBus, type FakeServiceBus } from "./fakes/servicebus/broker";
import { federationServices, resetFederationServices } from "../lib/federation/services";
import { notifyPartners } from "../lib/federation/notify";
import { useAzurite } from "./helpers/azurite";

jest.setTimeout(30_000);

const SHA = "a".repeat(64);

describe("notification message ids", () => {
  test("federation + type + round, readable when short", () => {
    expect(notificationMessageId("fraud-2026-01", "round-completed", 3)).toBe("fraud-2026-01:round-completed:3");
    expect(notificationMessageId("fraud-2026-01", "federation-completed")).toBe("fraud-2026-01:federation-completed");
  });

  test("too long -> federation id hashed, <= 128 chars, deterministic, round still distinguishes", () => {
    const long = "f".repeat(200);
    const id3 = notificationMessageId(long, "round-completed", 3);
    expect(id3).toMatch(/^sha256-[0-9a-f]{64}:round-completed:3$/);
    expect(id3.length).toBeLessThanOrEqual(128);
    expect(notificationMessageId(long, "round-completed", 3)).toBe(id3);
    expect(notificationMessageId(long, "round-completed", 4)).not.toBe(id3);
    expect(notificationMessageId("g".repeat(200), "round-completed", 3)).not.toBe(id3);
    // exactly at the limit stays plain
    const atLimit = "x".repeat(128 - ":round-completed:9".length);
    expect(notificationMessageId(atLimit, "round-completed", 9)).toBe(`${atLimit}:round-completed:9`);
  });
});

describe("notification validation", () => {
  const time = "2026-11-28T08:00:00.000Z";

  test("fills specVersion and time; keeps the documented fields", () => {
    const n = toNotification(
      { type: "round-completed", federationId: "fed-1", round: 2, modelUri: "https://acct.blob.core.windows.net/models/fed-1/round-2/", modelSha256: SHA, metrics: { auc: 0.91 } },
      () => new Date(time),
    );
    expect(n).toEqual({
      specVersion: "1.0",
      type: "round-completed",
      federationId: "fed-1",
      round: 2,
      time,
      modelUri: "https://acct.blob.core.windows.net/models/fed-1/round-2/",
      modelSha256: SHA,
      metrics: { auc: 0.91 },
    });
  });

  test.each([
    [{ type: "round-completed", federationId: "fed-1" }, "round"],
    [{ type: "federation-failed", federationId: "fed-1", round: 2 }, "reason"],
    [{ type: "round-completed", federationId: "fed-1", round: 0 }, "round"],
    [{ type: "round-completed", federationId: "fed 1", round: 1 }, "federationId"],
    [{ type: "round-completed", federationId: "fed-1", round: 1, modelSha256: "ABC" }, "modelSha256"],
    [{ type: "round-completed", federationId: "fed-1", round: 1, modelUri: "https://a.blob.core.windows.net/c/m?sv=2024&sig=abc" }, "modelUri"],
    [{ type: "round-completed", federationId: "fed-1", round: 1, connectionString: "Endpoint=sb://x" }, ""],
    [{ type: "round-completed", federationId: "fed-1", round: 1, metrics: { auc: "high" } }, "metrics.auc"],
    [{ type: "round-started", federationId: "fed-1", round: 1 }, "type"],
  ])("rejects %j at path %s", (input, path) => {
    let error: unknown;
    try {
      toNotification(input as never, () => new Date(time));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(InvalidNotificationError);
    expect((error as InvalidNotificationError).issues.map((i) => i.path)).toContain(path);
  });

  test("a failure reason longer than 1024 characters is truncated, not rejected", () => {
    const n = toNotification({ type: "federation-failed", federationId: "f", reason: "x".repeat(5000) }, () => new Date(time));
    expect(n.type === "federation-failed" && n.reason).toBe(`${"x".repeat(1021)}...`);
  });

  test("SAS-bearing URIs are rejected with a message that says why", () => {
    expect(() => toNotification({ type: "federation-completed", federationId: "f", modelUri: "https://a.blob.core.windows.net/c/m?sig=s3cret" } as never)).toThrow(
      /modelUri: a URI without query string or fragment \(no SAS tokens/,
    );
  });

  test("Service Bus message: deterministic id, subject = type, JSON content type, filterable properties", () => {
    const n = toNotification({ type: "federation-failed", federationId: "fed-9", round: 4, reason: "quorum not met: 1 of 3 silos succeeded, minSilos 2" }, () => new Date(time));
    expect(toServiceBusMessage(n)).toEqual({
      messageId: "fed-9:federation-failed:4",
      subject: "federation-failed",
      contentType: "application/json",
      body: n,
      applicationProperties: { floFederation: "fed-9", floType: "federation-failed", floRound: 4 },
    });
    const done = toNotification({ type: "federation-completed", federationId: "fed-9" }, () => new Date(time));
    expect(toServiceBusMessage(done).applicationProperties).toEqual({ floFederation: "fed-9", floType: "federation-completed" });
  });

  test("schema/notification.schema.json is the generated schema (regenerate: node dist/lib/messaging/notifications/writeJsonSchema.js)", () => {
    const onDisk = readFileSync(join(__dirname, "..", "schema", "notification.schema.json"), "utf8");
    expect(onDisk).toBe(notificationJsonSchemaText());
    const schema = JSON.parse(onDisk);
    expect(schema.oneOf.map((s: { properties: { type: { const: string } } }) => s.properties.type.const)).toEqual(["round-completed", "federation-completed", "federation-failed"]);
    expect(schema.oneOf[0].required).toEqual(expect.arrayContaining(["specVersion", "federationId", "time", "type", "round"]));
    expect(schema.oneOf[2].required).toEqual(expect.arrayContaining(["reason"]));
    for (const variant of schema.oneOf) expect(variant.additionalProperties).toBe(false);
  });
});

describe("NotificationPublisher options", () => {
  test("missing topic / connection -> config errors that never echo a connection string", () => {
    expect(() => new NotificationPublisher({ topicName: "", connection: { connectionString: "Endpoint=sb://h;SharedAccessKey=k" } })).toThrow(NotificationConfigError);
    let error: Error | undefined;
    try {
      new NotificationPublisher({ topicName: "t", connection: { connectionString: "" } });
    } catch (e) {
      error = e as Error;
    }
    expect(error).toBeInstanceOf(NotificationConfigError);
    expect(error!.message).toBe("invalid notification publisher option connection: expected {connectionString} or {fullyQualifiedNamespace, credential}, got an object with keys [connectionString]");
  });
});

describe("NotificationPublisher through the fake broker (real SDK receivers)", () => {
  let bus: FakeServiceBus;
  let client: ServiceBusClient;
  let publisher: NotificationPublisher;
  const logLines: string[] = [];

  beforeAll(async () => {
    bus = await startFakeServiceBus({ topics: { "flo-notifications": { subscriptions: ["partner-a", "partner-b"], duplicateDetectionWindowMs: 10 * 60_000 } } });
    client = new ServiceBusClient(bus.connectionString);
    publisher = new NotificationPublisher({
      topicName: "flo-notifications",
      connection: { connectionString: bus.connectionString },
      clientOptions: { retryOptions: { maxRetries: 0, timeoutInMs: 5000 } },
      log: (l) => logLines.push(l),
    });
  });

  afterAll(async () => {
    await publisher?.close();
    await client?.close();
    await bus?.stop();
  });

  async function drain(receiver: ServiceBusReceiver, n: number): Promise<ServiceBusReceivedMessage[]> {
    const got: ServiceBusReceivedMessage[] = [];
    for (let i = 0; i < 10 && got.length < n; i++) got.push(...(await receiver.receiveMessages(n - got.length, { maxWaitTimeInMs: 300 })));
    for (const m of got) await receiver.completeMessage(m);
    return got;
  }

  test("each subscription receives every notification with the right id, subject, properties and body", async () => {
    const time = "2026-11-28T08:00:00.000Z";
    await publisher.publish({
      type: "round-completed",
      federationId: "fraud-1",
      round: 1,
      time,
      modelUri: "https://orch.blob.core.windows.net/models/fraud-1/round-1/",
      modelSha256: SHA,
      metrics: { auc: 0.8, loss: 0.4 },
    });
    await publisher.publish({ type: "round-completed", federationId: "fraud-1", round: 2, time });
    await publisher.publish({ type: "federation-completed", federationId: "fraud-1", round: 2, time, modelSha256: SHA });
    await publisher.publish({ type: "federation-failed", federationId: "fraud-2", round: 1, time, reason: "quorum not met" });

    for (const sub of ["partner-a", "partner-b"]) {
      const receiver = client.createReceiver("flo-notifications", sub);
      const got = await drain(receiver, 4);
      await receiver.close();
      expect(got.map((m) => m.messageId)).toEqual(["fraud-1:round-completed:1", "fraud-1:round-completed:2", "fraud-1:federation-completed:2", "fraud-2:federation-failed:1"]);
      expect(got.map((m) => m.subject)).toEqual(["round-completed", "round-completed", "federation-completed", "federation-failed"]);
      for (const m of got) expect(m.contentType).toBe("application/json");
      expect(got[0].applicationProperties).toEqual({ floFederation: "fraud-1", floType: "round-completed", floRound: 1 });
      expect(got[3].applicationProperties).toEqual({ floFederation: "fraud-2", floType: "federation-failed", floRound: 1 });
      expect(got[0].body).toEqual({
        specVersion: "1.0",
        type: "round-completed",
        federationId: "fraud-1",
        round: 1,
        time,
        modelUri: "https://orch.blob.core.windows.net/models/fraud-1/round-1/",
        modelSha256: SHA,
        metrics: { auc: 0.8, loss: 0.4 },
      });
      expect(got[3].body).toEqual({ specVersion: "1.0", type: "federation-failed", federationId: "fraud-2", round: 1, time, reason: "quorum not met" });
    }
    expect(logLines.join("\n")).not.toMatch(/SharedAccessKey|https:\/\//);
  });

  test("a re-send (retried activity) is dropped by the topic's duplicate detection", async () => {
    const first = await publisher.publish({ type: "round-completed", federationId: "dup-1", round: 7, metrics: { auc: 0.5 } });
    const second = await publisher.publish({ type: "round-completed", federationId: "dup-1", round: 7, metrics: { auc: 0.5 } });
    expect(second.messageId).toBe(first.messageId);
    expect(bus.messages("flo-notifications/Subscriptions/partner-a").filter((m) => m.messageId === "dup-1:round-completed:7")).toHaveLength(1);
    const receiver = client.createReceiver("flo-notifications", "partner-b");
    const got = await drain(receiver, 1);
    expect(got.map((m) => m.messageId)).toEqual(["dup-1:round-completed:7"]);
    expect(await receiver.receiveMessages(1, { maxWaitTimeInMs: 300 })).toEqual([]);
    await receiver.close();
    const other = client.createReceiver("flo-notifications", "partner-a");
    await drain(other, 1);
    await other.close();
  });

  test("an invalid notification is never sent", async () => {
    await expect(publisher.publish({ type: "federation-failed", federationId: "bad" } as never)).rejects.toThrow(InvalidNotificationError);
    expect(bus.messages("flo-notifications/Subscriptions/partner-a").filter((m) => m.messageId?.startsWith("bad:"))).toEqual([]);
  });

  test("an aborted signal rejects with NotificationPublishError and sends nothing", async () => {
    const controller = new AbortController();
    controller.abort();
    const attempt = publisher.publish({ type: "round-completed", federationId: "abort-1", round: 1 }, { signal: controller.signal });
    await expect(attempt).rejects.toThrow(NotificationPublishError);
    await expect(attempt).rejects.toThrow('publishing notification abort-1:round-completed:1 to topic "flo-notifications" failed: aborted');
    expect(bus.messages("flo-notifications/Subscriptions/partner-a").filter((m) => m.messageId === "abort-1:round-completed:1")).toEqual([]);
  });

  test("an unreachable namespace fails with NotificationPublishError without leaking the key", async () => {
    const dead = await startFakeServiceBus();
    const connectionString = dead.connectionString;
    await dead.stop();
    const key = /SharedAccessKey=([^;]+)/.exec(connectionString)![1];
    const p = new NotificationPublisher({ topicName: "t", connection: { connectionString }, clientOptions: { retryOptions: { maxRetries: 0, timeoutInMs: 2000 } } });
    let error: Error | undefined;
    try {
      await p.publish({ type: "federation-completed", federationId: "gone" });
    } catch (e) {
      error = e as Error;
    }
    await p.close();
    expect(error).toBeInstanceOf(NotificationPublishError);
    expect(error!.message).toMatch(/^publishing notification gone:federation-completed to topic "t" failed: /);
    expect(error!.message).not.toContain(key);
  });
});

describe("notifications as a member of the federation's services port", () => {
  const azurite = useAzurite();
  let bus: FakeServiceBus;
  const notice = { type: "round-completed", federationId: "port-1", round: 2 } as const;

  beforeAll(async () => {
    bus = await startFakeServiceBus({ topics: { "flo-notifications": { subscriptions: ["partner-a"] } } });
  });

  afterAll(async () => {
    await resetFederationServices();
    await bus?.stop();
  });

  test("no topic configured: no publisher, the notice is logged as not published", async () => {
    const services = await federationServices({ AzureWebJobsStorage: azurite.connectionString });
    expect(services.notifications).toBeUndefined();
    const log: string[] = [];
    await expect(notifyPartners(services, notice, (l) => log.push(l))).resolves.toEqual({ sent: false });
    expect(log).toEqual(["no FLO_NOTIFICATIONS_TOPIC configured: round-completed for port-1 round 2 not published"]);
  });

  test("a topic without a Service Bus connection fails the notification only, naming the missing setting", async () => {
    const services = await federationServices({ AzureWebJobsStorage: azurite.connectionString, FLO_NOTIFICATIONS_TOPIC: "flo-notifications" });
    expect(services.messages.kind).toBe("azurite-queues");
    const attempt = notifyPartners(services, notice, () => undefined);
    await expect(attempt).rejects.toThrow(NotificationConfigError);
    await expect(attempt).rejects.toThrow(
      'invalid notification publisher option ServiceBusConnection: expected a Service Bus connection for topic "flo-notifications" (FLO_NOTIFICATIONS_TOPIC is set), got none configured',
    );
  });

  test("topic + connection: the port's publisher sends on the same namespace as the bus", async () => {
    const services = await federationServices({ AzureWebJobsStorage: azurite.connectionString, FLO_NOTIFICATIONS_TOPIC: "flo-notifications", ServiceBusConnection: bus.connectionString });
    expect(services.messages.kind).toBe("service-bus");
    expect(services.notifications?.topicName).toBe("flo-notifications");
    const sent = await notifyPartners(services, notice, () => undefined);
    expect(sent).toEqual({ sent: true, messageId: "port-1:round-completed:2" });
    const delivered = bus.messages("flo-notifications/Subscriptions/partner-a").filter((m) => m.messageId === "port-1:round-completed:2");
    expect(delivered).toHaveLength(1);
  });
});
