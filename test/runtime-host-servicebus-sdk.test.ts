/**
 * The host's Service Bus triggers on the REAL @azure/service-bus path (a connection string in the
 * trigger's connection setting), against the loopback fake broker in test/fakes/servicebus: the same
 * dispatcher, so the handler sees the same body and triggerMetadata as on the embedded transport.
 */
import * as path from "path";
import { startLocalHost, type LocalHost } from "../lib/runtime/host";
import { VirtualClock } from "../lib/runtime/clock";
import { startFakeServiceBus, type FakeServiceBus } from "./fakes/servicebus/broker";

const APP = path.join(__dirname, "apps", "host-triggers", "index.js");
interface Call {
  kind: string;
  name: string;
  body: unknown;
  md: Record<string, unknown>;
}

let broker: FakeServiceBus;
let host: LocalHost;
beforeAll(async () => {
  broker = await startFakeServiceBus({ maxDeliveryCount: 3, topics: { rounds: { subscriptions: ["a", "b"] } } });
  host = await startLocalHost({
    appEntry: APP,
    port: 0,
    storage: "memory",
    clock: new VirtualClock(),
    log: () => undefined,
    settings: { JobEventsBus: broker.connectionString, YEARLY_SCHEDULE: "0 0 0 1 1 *" },
  });
});
afterAll(async () => {
  await host?.stop();
  await broker?.stop();
});

async function sbCalls(name: string, messageId: string): Promise<Call[]> {
  const all = (await (await fetch(`${host.url}/api/_calls`)).json()) as Call[];
  return all.filter((c) => c.kind === "sb" && c.name === name && c.md.messageId === messageId);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("the triggers run on the SDK transport", () => {
  expect(host.serviceBus.describeTriggers().find((t) => t.functionName === "jobEvents")).toEqual({ functionName: "jobEvents", source: "job-events", transport: "service-bus" });
});

test("body parsed, metadata camel-cased incl. applicationProperties, deliveryCount 1-based; completed on success", async () => {
  await host.serviceBus.send("job-events", { body: { runId: "r9" }, messageId: "sdk-ok", correlationId: "c9", applicationProperties: { FlRound: 4 } });
  const [call] = await until("delivery", async () => ((await sbCalls("jobEvents", "sdk-ok")).length ? sbCalls("jobEvents", "sdk-ok") : undefined));
  expect(call.body).toEqual({ runId: "r9" });
  expect(call.md).toMatchObject({ messageId: "sdk-ok", deliveryCount: 1, correlationId: "c9", applicationProperties: { flRound: 4 } });
  await until("completed", async () => (broker.messages("job-events").length === 0 ? true : undefined));
});

test("a throwing handler abandons (redelivery with deliveryCount + 1); the broker dead-letters after its max", async () => {
  await host.serviceBus.send("job-events", { body: { failUntil: 99 }, messageId: "sdk-poison" });
  const dead = await until("dead letter", async () => {
    const d = await host.serviceBus.peekDeadLetters("job-events");
    return d.length ? d : undefined;
  });
  expect(dead[0]).toMatchObject({ messageId: "sdk-poison", deadLetterReason: "MaxDeliveryCountExceeded" });
  expect((await sbCalls("jobEvents", "sdk-poison")).map((c) => c.md.deliveryCount)).toEqual([1, 2, 3]);
});

test("topic subscriptions each get the message", async () => {
  await host.serviceBus.send("rounds", { body: "round 2 done", messageId: "sdk-topic" });
  await until("both subscriptions", async () => ((await sbCalls("roundsA", "sdk-topic")).length && (await sbCalls("roundsB", "sdk-topic")).length ? true : undefined));
});
