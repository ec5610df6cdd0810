/**
 * The embedded Service Bus transport on its own (Azurite queues): lock expiry (a handler that never
 * settles, as when the host dies mid-message), dead-lettering after too many lost locks, and the
 * concurrency limit.
 */
import { startAzurite, type AzuriteHandle } from "../lib/storage/azurite";
import { AzuriteQueueTransport } from "../lib/messaging/azuriteTransport";
import type { ReceivedServiceBusMessage } from "../lib/messaging/message";

let azurite: AzuriteHandle;
beforeAll(async () => {
  azurite = await startAzurite({ services: ["queue"] });
});
afterAll(async () => azurite?.stop());

async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

test("an unsettled message comes back after its lock expires with deliveryCount + 1, then dead-letters", async () => {
  const transport = new AzuriteQueueTransport({
    connectionString: azurite.connectionString,
    maxDeliveryCount: 2,
    lockDurationMs: 1000,
    maxAutoLockRenewalDurationMs: 0,
    pollIntervalMs: 50,
  });
  const seen: ReceivedServiceBusMessage[] = [];
  const release: Array<() => void> = [];
  const errors: unknown[] = [];
  const sub = transport.subscribe(
    { queueName: "lock-expiry" },
    (m) => {
      seen.push(m);
      return new Promise<void>((resolve) => release.push(resolve)); // never settles on its own
    },
    { maxConcurrentCalls: 4, onError: (e) => errors.push(e) },
  );
  try {
    await transport.send("lock-expiry", { body: { job: 1 }, messageId: "stuck" });
    await until("second delivery", () => seen.length >= 2);
    expect(seen.map((m) => [m.messageId, m.deliveryCount])).toEqual([
      ["stuck", 1],
      ["stuck", 2],
    ]);
    expect(seen[1].enqueuedTimeUtc.getTime() - seen[0].enqueuedTimeUtc.getTime()).toBe(0);
    let dead = await transport.peekDeadLetters("lock-expiry");
    for (const deadline = Date.now() + 10_000; dead.length === 0 && Date.now() < deadline; dead = await transport.peekDeadLetters("lock-expiry")) {
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(dead[0]).toMatchObject({ messageId: "stuck", deadLetterReason: "MaxDeliveryCountExceeded", deliveryCount: 2, body: { job: 1 } });
    expect(seen).toHaveLength(2); // not handed out a third time
  } finally {
    release.forEach((r) => r());
    await sub.close();
    await transport.close();
  }
});

test("maxConcurrentCalls bounds the handlers running at once", async () => {
  const transport = new AzuriteQueueTransport({
    connectionString: azurite.connectionString,
    maxDeliveryCount: 5,
    lockDurationMs: 30_000,
    maxAutoLockRenewalDurationMs: 60_000,
    pollIntervalMs: 20,
  });
  let running = 0;
  let peak = 0;
  let done = 0;
  const sub = transport.subscribe(
    { queueName: "bounded" },
    async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise((r) => setTimeout(r, 40));
      running--;
      done++;
    },
    { maxConcurrentCalls: 2 },
  );
  try {
    await transport.send(
      "bounded",
      Array.from({ length: 8 }, (_, i) => ({ body: i })),
    );
    await until("all handled", () => done === 8);
    expect(peak).toBe(2);
  } finally {
    await sub.close();
    await transport.close();
  }
});

test("binary and text bodies survive the envelope; oversized messages are refused with the limit", async () => {
  const transport = new AzuriteQueueTransport({ connectionString: azurite.connectionString, maxDeliveryCount: 5, lockDurationMs: 30_000, maxAutoLockRenewalDurationMs: 0, pollIntervalMs: 20 });
  const got: unknown[] = [];
  const sub = transport.subscribe({ queueName: "bodies" }, async (m) => void got.push(m.body), { maxConcurrentCalls: 1 });
  try {
    await transport.send("bodies", [{ body: Buffer.from([0, 1, 254, 255]) }, { body: 'plain <text> & "quotes"' }]);
    await until("both", () => got.length === 2);
    expect(got[0]).toEqual(Buffer.from([0, 1, 254, 255]));
    expect(got[1]).toBe('plain <text> & "quotes"');
    await expect(transport.send("bodies", { body: "x".repeat(70_000), messageId: "big" })).rejects.toThrow(/Message big is \d+ bytes as stored; the local transport carries at most 65536/);
  } finally {
    await sub.close();
    await transport.close();
  }
});
