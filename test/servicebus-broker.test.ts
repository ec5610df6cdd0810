// Drives the fake broker only through the real @azure/service-bus SDK.
import { ServiceBusClient, type ServiceBusReceivedMessage } from "@azure/service-bus";
import { startFakeServiceBus, type FakeServiceBus } from "./fakes/servicebus/broker";

jest.setTimeout(30_000);

describe("fake Service Bus broker (real SDK)", () => {
  let bus: FakeServiceBus;
  let client: ServiceBusClient;

  beforeAll(async () => {
    bus = await startFakeServiceBus({
      maxDeliveryCount: 2,
      lockDurationMs: 400,
      queues: { dedup: { duplicateDetectionWindowMs: 60_000 } },
      topics: { notifications: { subscriptions: ["partner-a", "partner-b"] } },
    });
    client = new ServiceBusClient(bus.connectionString, { retryOptions: { maxRetries: 0, timeoutInMs: 5000 } });
  });

  afterAll(async () => {
    await client?.close();
    await bus?.stop();
  });

  const noAutoRenew = { maxAutoLockRenewalDurationInMs: 0 } as const;

  async function receiveExactly(queueOrReceiver: ReturnType<ServiceBusClient["createReceiver"]>, n: number): Promise<ServiceBusReceivedMessage[]> {
    const got: ServiceBusReceivedMessage[] = [];
    for (let attempt = 0; attempt < 10 && got.length < n; attempt++) {
      got.push(...(await queueOrReceiver.receiveMessages(n - got.length, { maxWaitTimeInMs: 300 })));
    }
    return got;
  }

  test("connection string targets loopback with the emulator flag", () => {
    expect(bus.connectionString).toMatch(/^Endpoint=sb:\/\/127\.0\.0\.1:\d+;SharedAccessKeyName=[^;]+;SharedAccessKey=[^;]+;UseDevelopmentEmulator=true$/);
  });

  test("single + batch send; receive with broker-assigned fields; complete removes", async () => {
    const sender = client.createSender("events");
    await sender.sendMessages({ body: { kind: "single" }, messageId: "m-1", subject: "s", applicationProperties: { "aeg-event-type": "Notification" } });
    const batch = await sender.createMessageBatch();
    for (const i of [1, 2, 3]) expect(batch.tryAddMessage({ body: { kind: "batch", i } })).toBe(true);
    await sender.sendMessages(batch);
    await sender.close();
    expect(bus.messages("events")).toHaveLength(4);

    const receiver = client.createReceiver("events", noAutoRenew);
    const got = await receiveExactly(receiver, 4);
    expect(got.map((m) => m.body)).toEqual([{ kind: "single" }, { kind: "batch", i: 1 }, { kind: "batch", i: 2 }, { kind: "batch", i: 3 }]);
    expect(got[0].messageId).toBe("m-1");
    expect(got[0].subject).toBe("s");
    expect(got[0].applicationProperties).toEqual({ "aeg-event-type": "Notification" });
    for (const m of got.slice(1)) expect(typeof m.messageId).toBe("string"); // broker-assigned
    const seqs = got.map((m) => m.sequenceNumber!.toNumber());
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(4);
    for (const m of got) {
      expect(m.deliveryCount).toBe(0);
      expect(m.enqueuedTimeUtc).toBeInstanceOf(Date);
      expect(m.lockedUntilUtc!.getTime()).toBeGreaterThan(Date.now() - 100);
      expect(m.lockToken).toMatch(/^[0-9a-f-]{36}$/);
    }
    for (const m of got) await receiver.completeMessage(m);
    expect(bus.messages("events")).toEqual([]);
    await receiver.close();
  });

  test("abandon redelivers with deliveryCount 1; dead-letter keeps reason/description in the DLQ", async () => {
    await client.createSender("work").sendMessages({ body: "payload", messageId: "w-1" });
    const receiver = client.createReceiver("work", noAutoRenew);
    const [first] = await receiveExactly(receiver, 1);
    expect(first.deliveryCount).toBe(0);
    await receiver.abandonMessage(first);
    const [again] = await receiveExactly(receiver, 1);
    expect(again.messageId).toBe("w-1");
    expect(again.deliveryCount).toBe(1);
    await receiver.deadLetterMessage(again, { deadLetterReason: "BadEvent", deadLetterErrorDescription: "cannot correlate" });
    expect(bus.messages("work")).toEqual([]);
    expect(bus.deadLetters("work")).toMatchObject([{ messageId: "w-1", deadLetterReason: "BadEvent", deadLetterErrorDescription: "cannot correlate" }]);

    const dlq = client.createReceiver("work", { subQueueType: "deadLetter", ...noAutoRenew });
    const [dead] = await receiveExactly(dlq, 1);
    expect(dead.body).toBe("payload");
    expect(dead.deadLetterReason).toBe("BadEvent");
    expect(dead.deadLetterErrorDescription).toBe("cannot correlate");
    expect(dead.deadLetterSource).toBe("work");
    await dlq.completeMessage(dead);
    expect(bus.deadLetters("work")).toEqual([]);
    await Promise.all([receiver.close(), dlq.close()]);
  });

  test("lock expiry redelivers, then dead-letters with MaxDeliveryCountExceeded", async () => {
    await client.createSender("expiring").sendMessages({ body: { n: 1 }, messageId: "e-1" });
    const receiver = client.createReceiver("expiring", noAutoRenew);
    const [first] = await receiveExactly(receiver, 1);
    expect(first.deliveryCount).toBe(0);
    await new Promise((r) => setTimeout(r, 600)); // lock (400 ms) expires
    const [second] = await receiveExactly(receiver, 1);
    expect(second.messageId).toBe("e-1");
    expect(second.deliveryCount).toBe(1);
    await new Promise((r) => setTimeout(r, 600)); // second expiry reaches maxDeliveryCount 2
    expect(await receiver.receiveMessages(1, { maxWaitTimeInMs: 200 })).toEqual([]);
    const [dead] = bus.deadLetters("expiring");
    expect(dead).toMatchObject({ messageId: "e-1", deadLetterReason: "MaxDeliveryCountExceeded" });
    await expect(receiver.completeMessage(second)).rejects.toThrow();
    await receiver.close();
  });

  test("renewMessageLock extends the lock past its original expiry", async () => {
    bus.createQueue("renew", { lockDurationMs: 2000 });
    await client.createSender("renew").sendMessages({ body: "r" });
    const receiver = client.createReceiver("renew", noAutoRenew);
    const [m] = await receiveExactly(receiver, 1);
    const before = m.lockedUntilUtc!.getTime();
    await new Promise((r) => setTimeout(r, 200));
    const renewed = await receiver.renewMessageLock(m);
    expect(renewed.getTime()).toBeGreaterThanOrEqual(before + 150);
    while (Date.now() < before + 100) await new Promise((r) => setTimeout(r, 50)); // original lock is over
    await receiver.completeMessage(m);
    expect(bus.messages("renew")).toEqual([]);
    expect(bus.deadLetters("renew")).toEqual([]);
    await receiver.close();
  });

  test("defer + receiveDeferredMessages; scheduled messages appear at their time; peek sees without locking", async () => {
    const sender = client.createSender("sched");
    await sender.sendMessages({ body: "deferred-one" });
    const receiver = client.createReceiver("sched", noAutoRenew);
    const [d] = await receiveExactly(receiver, 1);
    await receiver.deferMessage(d);
    expect(bus.messages("sched")).toMatchObject([{ state: "deferred" }]);
    const [back] = await receiver.receiveDeferredMessages(d.sequenceNumber!);
    expect(back.body).toBe("deferred-one");
    await receiver.completeMessage(back);
    expect(bus.messages("sched")).toEqual([]);

    const at = new Date(Date.now() + 1500);
    const [seq] = await sender.scheduleMessages({ body: "later", messageId: "later-1" }, at);
    const [cancelSeq] = await sender.scheduleMessages({ body: "cancelled" }, at);
    await sender.cancelScheduledMessages(cancelSeq);
    const peeked = await receiver.peekMessages(10);
    expect(peeked.map((p) => [p.body, p.state, p.sequenceNumber!.toNumber()])).toEqual([["later", "scheduled", seq.toNumber()]]);
    expect(await receiver.receiveMessages(1, { maxWaitTimeInMs: 100 })).toEqual([]);
    while (Date.now() < at.getTime() + 50) await new Promise((r) => setTimeout(r, 50));
    const [later] = await receiveExactly(receiver, 1);
    expect(later.body).toBe("later");
    expect(later.sequenceNumber!.toNumber()).toBe(seq.toNumber());
    await receiver.completeMessage(later);
    await Promise.all([sender.close(), receiver.close()]);
  });

  test("receiveAndDelete removes on delivery", async () => {
    await client.createSender("rad").sendMessages([{ body: 1 }, { body: 2 }]);
    const receiver = client.createReceiver("rad", { receiveMode: "receiveAndDelete" });
    const got = await receiveExactly(receiver, 2);
    expect(got.map((m) => m.body)).toEqual([1, 2]);
    expect(bus.messages("rad")).toEqual([]);
    await receiver.close();
  });

  test("topic fans out to every subscription; each is settled independently", async () => {
    const sender = client.createSender("notifications");
    await sender.sendMessages({ body: { type: "round-completed" }, messageId: "n-1" });
    const a = client.createReceiver("notifications", "partner-a", noAutoRenew);
    const b = client.createReceiver("notifications", "partner-b", noAutoRenew);
    const [ma] = await receiveExactly(a, 1);
    const [mb] = await receiveExactly(b, 1);
    expect([ma.body, mb.body]).toEqual([{ type: "round-completed" }, { type: "round-completed" }]);
    expect([ma.messageId, mb.messageId]).toEqual(["n-1", "n-1"]);
    await a.completeMessage(ma);
    expect(bus.messages("notifications/Subscriptions/partner-a")).toEqual([]);
    expect(bus.messages("notifications/Subscriptions/partner-b")).toHaveLength(1);
    await b.completeMessage(mb);
    expect(bus.topics).toEqual({ notifications: ["partner-a", "partner-b"] });
    await Promise.all([sender.close(), a.close(), b.close()]);
  });

  test("duplicate detection drops a re-send with the same MessageId within the window", async () => {
    const sender = client.createSender("dedup");
    await sender.sendMessages({ body: "first", messageId: "same" });
    await sender.sendMessages({ body: "second", messageId: "same" });
    await sender.sendMessages({ body: "other", messageId: "different" });
    expect(bus.messages("dedup").map((m) => m.body)).toEqual(["first", "other"]);
    // Without duplicate detection configured both copies are kept.
    const plain = client.createSender("no-dedup");
    await plain.sendMessages({ body: 1, messageId: "same" });
    await plain.sendMessages({ body: 2, messageId: "same" });
    expect(bus.messages("no-dedup")).toHaveLength(2);
    await Promise.all([sender.close(), plain.close()]);
  });

  test("message TTL: expired messages are dead-lettered (TTLExpiredException) or dropped, per queue setting", async () => {
    bus.createQueue("ttl-dlq", { deadLetteringOnMessageExpiration: true });
    bus.createQueue("ttl-drop", { defaultMessageTimeToLiveMs: 150 });
    await client.createSender("ttl-dlq").sendMessages([
      { body: "short", messageId: "t-1", timeToLive: 150 },
      { body: "long", messageId: "t-2", timeToLive: 60_000 },
    ]);
    await client.createSender("ttl-drop").sendMessages({ body: "default ttl", messageId: "t-3" });
    await new Promise((r) => setTimeout(r, 300));
    const receiver = client.createReceiver("ttl-dlq", noAutoRenew);
    const got = await receiveExactly(receiver, 1);
    expect(got.map((m) => m.messageId)).toEqual(["t-2"]);
    await receiver.completeMessage(got[0]);
    expect(bus.deadLetters("ttl-dlq")).toMatchObject([{ messageId: "t-1", deadLetterReason: "TTLExpiredException" }]);
    expect(bus.messages("ttl-drop")).toEqual([]);
    expect(bus.deadLetters("ttl-drop")).toEqual([]);
    await receiver.close();
  });

  test("subscribe() streaming with autoComplete drains the queue", async () => {
    await client.createSender("stream").sendMessages([{ body: "a" }, { body: "b" }, { body: "c" }]);
    const receiver = client.createReceiver("stream");
    const seen: unknown[] = [];
    await new Promise<void>((resolve, reject) => {
      const sub = receiver.subscribe({
        processMessage: async (m) => {
          seen.push(m.body);
          if (seen.length === 3) {
            setTimeout(() => void sub.close().then(resolve), 50);
          }
        },
        processError: async (args) => reject(args.error),
      });
    });
    expect(seen).toEqual(["a", "b", "c"]);
    expect(bus.messages("stream")).toEqual([]);
    await receiver.close();
  });
});
