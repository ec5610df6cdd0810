// flo host's Service Bus transport (the real @azure/service-bus SDK path) against the fake broker:
// the trigger contract of lib/messaging/transport.ts holds end to end.
import { ServiceBusSdkTransport } from "../lib/messaging/sdkTransport";
import type { ReceivedServiceBusMessage } from "../lib/messaging/message";
import { startFakeServiceBus, type FakeServiceBus } from "./fakes/servicebus/broker";

jest.setTimeout(30_000);

async function until(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe("ServiceBusSdkTransport over the fake broker", () => {
  let bus: FakeServiceBus;
  let transport: ServiceBusSdkTransport;

  beforeAll(async () => {
    bus = await startFakeServiceBus({ maxDeliveryCount: 3, topics: { notifications: { subscriptions: ["p1", "p2"] } } });
    transport = new ServiceBusSdkTransport({ connectionString: bus.connectionString });
  });

  afterAll(async () => {
    await transport?.close();
    await bus?.stop();
  });

  test("a resolving handler completes: the queue is empty afterwards and the message arrived intact", async () => {
    const got: ReceivedServiceBusMessage[] = [];
    const sub = transport.subscribe({ queueName: "job-events" }, async (m) => void got.push(m), { maxConcurrentCalls: 2 });
    await transport.send("job-events", [
      { body: { eventType: "Microsoft.MachineLearningServices.RunStatusChanged", data: { runId: "flo-f1-r1-a" } }, messageId: "eg-1", applicationProperties: { "aeg-event-type": "Notification" } },
      { body: { eventType: "Microsoft.MachineLearningServices.RunCompleted", data: { runId: "flo-f1-r1-b" } }, messageId: "eg-2" },
    ]);
    await until(() => got.length === 2 && bus.messages("job-events").length === 0);
    await sub.close();
    expect(got.map((m) => m.messageId).sort()).toEqual(["eg-1", "eg-2"]);
    const first = got.find((m) => m.messageId === "eg-1")!;
    expect(first.body).toEqual({ eventType: "Microsoft.MachineLearningServices.RunStatusChanged", data: { runId: "flo-f1-r1-a" } });
    expect(first.applicationProperties).toEqual({ "aeg-event-type": "Notification" });
    expect(first.deliveryCount).toBe(1); // the transport reports 1-based counts like .NET
    expect(bus.deadLetters("job-events")).toEqual([]);
  });

  test("a throwing handler is retried until maxDeliveryCount, then the message is dead-lettered and peekable", async () => {
    const attempts: number[] = [];
    const sub = transport.subscribe(
      { queueName: "partner-commands" },
      async (m) => {
        attempts.push(m.deliveryCount);
        throw new Error("cannot handle");
      },
      { maxConcurrentCalls: 1 },
    );
    await transport.send("partner-commands", { body: { kind: "start-federation" }, messageId: "cmd-1" });
    await until(() => bus.deadLetters("partner-commands").length === 1);
    await sub.close();
    expect(attempts).toEqual([1, 2, 3]);
    const [dead] = await transport.peekDeadLetters("partner-commands");
    expect(dead).toMatchObject({ messageId: "cmd-1", body: { kind: "start-federation" }, deadLetterReason: "MaxDeliveryCountExceeded" });
  });

  test("topic subscriptions each receive what is sent to the topic", async () => {
    const seen: Record<string, unknown[]> = { p1: [], p2: [] };
    const subs = ["p1", "p2"].map((name) => transport.subscribe({ topicName: "notifications", subscriptionName: name }, async (m) => void seen[name].push(m.body), { maxConcurrentCalls: 1 }));
    await transport.send("notifications", { body: { type: "round-completed", round: 1 }, messageId: "n-1" });
    await until(() => seen.p1.length === 1 && seen.p2.length === 1);
    await Promise.all(subs.map((s) => s.close()));
    expect(seen).toEqual({ p1: [{ type: "round-completed", round: 1 }], p2: [{ type: "round-completed", round: 1 }] });
  });
});
