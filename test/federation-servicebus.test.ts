/**
 * A federation whose messaging travels through Service Bus end to end: `flo host` (child process) with
 * `ServiceBusConnection` pointing at the loopback fake broker, so the real @azure/service-bus SDK carries
 * the partner command that starts it (on the partner's own queue partner-acme), every silo job event, the rejected-message queue and the partner
 * notifications on the topic.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ServiceBusClient, type ServiceBusReceivedMessage } from "@azure/service-bus";
import { ModelStore } from "../lib/models/store";
import { notificationMessageId } from "../lib/messaging/notifications/messageId";
import { LOCAL_JOB_EVENT_TYPE, type LocalJobEvent } from "../lib/compute/local/events";
import { startFakeServiceBus, type FakeServiceBus } from "./fakes/servicebus/broker";
import { expectedToyModel, finished, readToyModel, startFloHost, toySpec, writeToyData, type FloHost, type ToySilo } from "./helpers/flo";

const silos: ToySilo[] = [
  { name: "sb-east", target: [1, 1, 1, 1], n: 100 },
  { name: "sb-west", target: [3, 3, 3, 3], n: 300 },
  { name: "sb-north", target: [2, 0, 2, 0], n: 100 },
];
const ROUNDS = 2;
const FEDERATION = "sbspec-run7";

let broker: FakeServiceBus;
let flo: FloHost;
let sdk: ServiceBusClient;

beforeAll(async () => {
  broker = await startFakeServiceBus({
    queues: {
      "job-events": { duplicateDetectionWindowMs: 600_000 },
      "job-events-rejected": {},
      "partner-acme": {},
      "partner-acme-rejected": {},
    },
    topics: { notifications: { subscriptions: ["acme"], duplicateDetectionWindowMs: 600_000 } },
  });
  const dir = mkdtempSync(join(tmpdir(), "flo-sb-e2e-"));
  writeToyData(dir, silos);
  mkdirSync(join(dir, "registry"), { recursive: true });
  writeFileSync(join(dir, "registry", "sbspec.json"), JSON.stringify(toySpec("sbspec", silos, { rounds: ROUNDS })));
  flo = await startFloHost({
    dir,
    settings: {
      ServiceBusConnection: broker.connectionString,
      FLO_NOTIFICATIONS_TOPIC: "notifications",
      FLO_PARTNER_ALLOWLIST: "acme",
      FLO_SPEC_REGISTRY: join(dir, "registry"),
    },
  });
  sdk = new ServiceBusClient(broker.connectionString);
}, 60_000);

afterAll(async () => {
  await flo?.stop();
  await sdk?.close();
  await broker?.stop();
}, 30_000);

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; host log:\n${flo.logs.slice(-25).join("\n")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Sends on the partner's own queue; `claimedPartner` sets the floPartner property (only a claim). */
async function sendPartnerCommand(partner: string, body: unknown, messageId: string, claimedPartner?: string): Promise<void> {
  const sender = sdk.createSender(`partner-${partner}`);
  try {
    await sender.sendMessages({ body, messageId, contentType: "application/json", ...(claimedPartner ? { applicationProperties: { floPartner: claimedPartner } } : {}) });
  } finally {
    await sender.close();
  }
}

it("a partner's start-federation message runs a 2-round toy federation; job events and notifications travel through the broker", async () => {
  await sendPartnerCommand("acme", { type: "start-federation", spec: "sbspec", runId: "run7" }, "cmd-sb-start");
  const status = await flo.waitFor(FEDERATION, finished, 90_000);
  expect(status.runtimeStatus).toBe("Completed");

  // The final model is FedAvg of the toy trainers' moves.
  const store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
  const w = readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
  expectedToyModel(silos, ROUNDS).forEach((v, i) => expect(w[i]).toBeCloseTo(v, 6));

  // The partner command went through the broker and was consumed.
  expect(broker.accepted("partner-acme").map((m) => m.messageId)).toContain("cmd-sb-start");

  // Every job's event went through the broker: the local compute publishes the final state only.
  const jobEvents = broker
    .accepted("job-events")
    .map((m) => m.body as LocalJobEvent)
    .filter((e) => e.jobName.startsWith(`flo-${FEDERATION}-`));
  const jobNames = [1, 2].flatMap((r) => silos.map((s) => `flo-${FEDERATION}-r${r}-${s.name}`));
  expect(jobEvents.map((e) => `${e.jobName} ${e.state}`).sort()).toEqual(jobNames.map((j) => `${j} completed`).sort());
  expect(jobEvents.every((e) => e.type === LOCAL_JOB_EVENT_TYPE && e.tags.floKind === "train")).toBe(true);
  // ... and were consumed (completed) by the host's jobEvents trigger.
  await until("job-events drained", () => (broker.messages("job-events").length === 0 ? true : undefined));
  expect(broker.deadLetters("job-events")).toEqual([]);

  // Partner notifications on the acme subscription, with the documented message ids.
  const receiver = sdk.createReceiver("notifications", "acme");
  const received: ServiceBusReceivedMessage[] = [];
  try {
    await until("3 notifications", async () => {
      const batch = await receiver.receiveMessages(10, { maxWaitTimeInMs: 500 });
      for (const m of batch) {
        received.push(m);
        await receiver.completeMessage(m);
      }
      return received.length >= 3 ? true : undefined;
    });
  } finally {
    await receiver.close();
  }
  const ids = received.map((m) => m.messageId).sort();
  expect(ids).toEqual(
    [notificationMessageId(FEDERATION, "round-completed", 1), notificationMessageId(FEDERATION, "round-completed", 2), notificationMessageId(FEDERATION, "federation-completed", 2)].sort(),
  );
  expect(ids).toContain(`${FEDERATION}:round-completed:1`);
  const completed = received.find((m) => m.subject === "federation-completed")!;
  expect(completed.contentType).toBe("application/json");
  expect(completed.applicationProperties).toMatchObject({ floFederation: FEDERATION, floType: "federation-completed", floRound: 2 });
  expect(completed.body).toMatchObject({ specVersion: "1.0", type: "federation-completed", federationId: FEDERATION, round: 2, modelSha256: status.output.finalModel.sha256 });
  const round1 = received.find((m) => m.messageId === `${FEDERATION}:round-completed:1`)!;
  expect(round1.body).toMatchObject({ type: "round-completed", round: 1 });
  // the model round 1 produced is the one round 2 trains from
  expect(round1.body.modelUri).toMatch(new RegExp(`federations/${FEDERATION}/rounds/2/global/model.safetensors$`));
}, 120_000);

it("an invalid partner message lands in partner-acme-rejected with its DeadLetterReason, readable with an SDK receiver", async () => {
  await sendPartnerCommand("acme", { type: "launch-rockets" }, "cmd-sb-invalid");
  const receiver = sdk.createReceiver("partner-acme-rejected");
  try {
    const message = await until("the rejected message", async () => {
      const [m] = await receiver.receiveMessages(1, { maxWaitTimeInMs: 500 });
      return m;
    });
    await receiver.completeMessage(message);
    expect(message.messageId).toBe("cmd-sb-invalid");
    expect(message.body).toEqual({ type: "launch-rockets" });
    expect(message.applicationProperties?.DeadLetterReason).toBe("InvalidCommand");
    expect(String(message.applicationProperties?.DeadLetterErrorDescription)).toContain("type");
    expect(message.applicationProperties?.originalQueue).toBe("partner-acme");
  } finally {
    await receiver.close();
  }
  // Rejected once, not retried into the broker's own dead-letter queue.
  await until("partner-acme drained", () => (broker.messages("partner-acme").length === 0 ? true : undefined));
  expect(broker.deadLetters("partner-acme")).toEqual([]);
  expect(broker.accepted("partner-acme-rejected").map((m) => m.messageId)).toEqual(["cmd-sb-invalid"]);
}, 60_000);

it("an unparsable job event lands in job-events-rejected with reason InvalidJobEvent; a command claiming another partner is rejected too", async () => {
  const sender = sdk.createSender("job-events");
  try {
    await sender.sendMessages({ body: { hello: "not an event" }, messageId: "evt-sb-garbage", contentType: "application/json" });
  } finally {
    await sender.close();
  }
  await sendPartnerCommand("acme", { type: "start-federation", spec: "sbspec" }, "cmd-sb-evil", "initech");
  const rejected = await until("both rejections", () => {
    const event = broker.accepted("job-events-rejected").find((m) => m.messageId === "evt-sb-garbage");
    const command = broker.accepted("partner-acme-rejected").find((m) => m.messageId === "cmd-sb-evil");
    return event && command ? { event, command } : undefined;
  });
  expect(rejected.event.applicationProperties).toMatchObject({ DeadLetterReason: "InvalidJobEvent", originalQueue: "job-events" });
  expect(rejected.event.body).toEqual({ hello: "not an event" });
  expect(rejected.command.applicationProperties).toMatchObject({ DeadLetterReason: "PartnerMismatch", originalQueue: "partner-acme" });
  expect(String(rejected.command.applicationProperties?.DeadLetterErrorDescription)).toContain('claims "initech"');
  await until("both queues drained", () => (broker.messages("job-events").length === 0 && broker.messages("partner-acme").length === 0 ? true : undefined));
  expect(broker.deadLetters("job-events")).toEqual([]);
  expect(broker.deadLetters("partner-acme")).toEqual([]);
}, 60_000);
