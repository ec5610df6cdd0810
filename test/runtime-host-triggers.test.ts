import * as path from "path";
import { startLocalHost, type LocalHost } from "../lib/runtime/host";
import { VirtualClock } from "../lib/runtime/clock";
import { formatFunctionTable, parsePort, parseStorage, HostCliError } from "../lib/cli/host";

const APP = path.join(__dirname, "apps", "host-triggers", "index.js");
const SETTINGS = { FLO_FUNCTION_KEY: "test-function-key", FLO_MASTER_KEY: "test-master-key", YEARLY_SCHEDULE: "0 0 0 1 1 *", FLO_SERVICEBUS_MAX_DELIVERY_COUNT: "3" };

interface Call {
  kind: string;
  name: string;
  [k: string]: unknown;
}

async function calls(host: LocalHost): Promise<Call[]> {
  const res = await fetch(`${host.url}/api/_calls`);
  return (await res.json()) as Call[];
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("local host: HTTP front door", () => {
  let host: LocalHost;
  const clock = new VirtualClock("2025-03-01T10:00:30.000Z");
  const logs: string[] = [];
  beforeAll(async () => {
    host = await startLocalHost({ appEntry: APP, port: 0, storage: "memory", settings: SETTINGS, clock, serviceBusPollIntervalMs: 50, log: (l) => logs.push(l) });
  });
  afterAll(async () => host?.stop());

  test("route table lists every http function with its prefixed template", () => {
    const table = host.routes.map((r) => `${r.methods.join(",")} ${r.template} ${r.authLevel}`);
    expect(table).toEqual(expect.arrayContaining(["GET products/{category:alpha}/{id:int?} anonymous", "POST,PUT echo anonymous", "GET secret function", "GET admin-only admin"]));
    expect(host.routes.findIndex((r) => r.template === "products/latest")).toBeLessThan(host.routes.findIndex((r) => r.template.startsWith("products/{")));
  });

  test("flo host's function table lists HTTP URLs, timers, Service Bus sources and the management URL", () => {
    const lines = formatFunctionTable(host);
    expect(lines).toContain(`        products: [GET] ${host.url}/api/products/{category:alpha}/{id:int?}`);
    expect(lines).toContain(`        secret: [GET] ${host.url}/api/secret (authLevel function)`);
    expect(lines).toContain("        everyMinute: timerTrigger (0 * * * * *)");
    expect(lines).toContain("        onStartup: timerTrigger (0 0 0 1 1 *, runOnStartup)");
    expect(lines).toContain("        jobEvents: serviceBusTrigger (job-events via azurite-queues)");
    expect(lines[lines.length - 1]).toBe(`Durable management API: ${host.url}/runtime/webhooks/durabletask`);
  });

  test("optional parameter present and absent; constraint failure is 404; literal route wins", async () => {
    const withId = await (await fetch(`${host.url}/api/products/shoes/42?color=red`)).json();
    expect(withId).toEqual({ params: { category: "shoes", id: "42" }, query: { color: "red" } });
    const without = await (await fetch(`${host.url}/api/products/shoes`)).json();
    expect(without).toEqual({ params: { category: "shoes" }, query: {} });
    const bad = await fetch(`${host.url}/api/products/shoes/forty-two`);
    expect(bad.status).toBe(404);
    expect(bad.headers.get("content-type")).toMatch(/application\/problem\+json/);
    expect(await bad.json()).toMatchObject({ status: 404, title: "Not Found" });
    expect(await (await fetch(`${host.url}/api/products/latest`)).text()).toBe("latest");
  });

  test("route prefix is required", async () => {
    expect((await fetch(`${host.url}/products/shoes`)).status).toBe(404);
  });

  test("wrong method is 405 with Allow", async () => {
    const res = await fetch(`${host.url}/api/echo`);
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST, PUT");
  });

  test("authLevel function: 401 without key, 200 with header or ?code=, admin needs the master key", async () => {
    expect((await fetch(`${host.url}/api/secret`)).status).toBe(401);
    expect((await fetch(`${host.url}/api/secret`, { headers: { "x-functions-key": "nope" } })).status).toBe(401);
    const ok = await fetch(`${host.url}/api/secret`, { headers: { "x-functions-key": "test-function-key" } });
    expect(ok.status).toBe(200);
    expect(await ok.json()).toEqual({ ok: true });
    expect((await fetch(`${host.url}/api/secret?code=test-function-key`)).status).toBe(200);
    expect((await fetch(`${host.url}/api/admin-only?code=test-function-key`)).status).toBe(401);
    expect((await fetch(`${host.url}/api/admin-only?code=test-master-key`)).status).toBe(200);
    expect(host.functionKey).toBe("test-function-key");
  });

  test("request body, headers, status, response headers and cookies round-trip through the worker conversions", async () => {
    const res = await fetch(`${host.url}/api/echo`, { method: "POST", headers: { "content-type": "application/json", "x-custom": "hello" }, body: JSON.stringify({ a: [1, 2] }) });
    expect(res.status).toBe(201);
    expect(res.headers.get("x-echo")).toBe("hello");
    expect(res.headers.get("set-cookie")).toBe("session=abc; HttpOnly");
    expect(await res.json()).toEqual({ got: { a: [1, 2] }, method: "POST", url: `${host.url}/api/echo` });
  });

  test("a throwing handler is a 500; no response is a 204", async () => {
    expect((await fetch(`${host.url}/api/boom`)).status).toBe(500);
    expect(logs).toContain("[error] boom: Error: handler exploded");
    expect((await fetch(`${host.url}/api/nothing`)).status).toBe(204);
  });

  test("timers: runOnStartup fired at start; NCRONTAB occurrences fire on the virtual clock with status", async () => {
    const startup = (await calls(host)).filter((c) => c.kind === "timer");
    expect(startup).toEqual([{ kind: "timer", name: "onStartup", isPastDue: false }]);
    await clock.advance(90_000); // 10:00:30 -> 10:02:00: occurrences at 10:01:00 and 10:02:00
    const fired = (await calls(host)).filter((c) => c.name === "everyMinute");
    expect(fired).toHaveLength(2);
    expect(fired[0]).toMatchObject({ isPastDue: false, schedule: { adjustForDST: true }, scheduleStatus: { last: "0001-01-01T00:00:00.000Z", next: "2025-03-01T10:01:00.000Z" } });
    expect(fired[1]).toMatchObject({ isPastDue: false, scheduleStatus: { last: "2025-03-01T10:01:00.000Z", next: "2025-03-01T10:02:00.000Z" } });
  });

  test("timer retry policy: fixed-delay retries with retryContext, then the schedule resumes", async () => {
    const flaky = async (): Promise<Call[]> => (await calls(host)).filter((c) => c.name === "flakyTimer");
    await clock.advanceTo(new Date("2025-03-01T11:00:00.000Z"));
    expect((await flaky()).map((c) => c.retryContext)).toEqual([{ retryCount: 0, maxRetryCount: 2 }]);
    await clock.advance(10_000);
    await clock.advance(10_000);
    expect((await flaky()).map((c) => (c.retryContext as { retryCount: number }).retryCount)).toEqual([0, 1, 2]);
    await clock.advance(30 * 60_000);
    expect(await flaky()).toHaveLength(3); // retries exhausted; next occurrence is 12:00
    expect(logs.filter((l) => l === "[error] flakyTimer: Error: timer failed")).toHaveLength(3);
  });
});

describe("local host: Service Bus triggers on the embedded transport", () => {
  let host: LocalHost;
  beforeAll(async () => {
    host = await startLocalHost({ appEntry: APP, port: 0, storage: "memory", settings: SETTINGS, clock: new VirtualClock(), serviceBusPollIntervalMs: 50, log: () => undefined });
  });
  afterAll(async () => host?.stop());

  const sbCalls = async (name: string, id: string): Promise<Call[]> => (await calls(host)).filter((c) => c.kind === "sb" && c.name === name && (c.md as { messageId: string }).messageId === id);

  test("JSON body arrives parsed; metadata keys camel-cased recursively incl. applicationProperties; success completes", async () => {
    await host.serviceBus.send("job-events", {
      body: { runId: "r1", status: "Completed" },
      messageId: "msg-ok",
      contentType: "application/json",
      correlationId: "corr-1",
      subject: "RunStatusChanged",
      applicationProperties: { FlRound: 3, "aeg-delivery-count": "0", Nested: "x" },
    });
    const [call] = await waitFor("delivery", async () => ((await sbCalls("jobEvents", "msg-ok")).length ? sbCalls("jobEvents", "msg-ok") : undefined));
    expect(call.body).toEqual({ runId: "r1", status: "Completed" });
    const md = call.md as Record<string, unknown>;
    expect(md).toMatchObject({ messageId: "msg-ok", deliveryCount: 1, contentType: "application/json", correlationId: "corr-1", subject: "RunStatusChanged", label: "RunStatusChanged" });
    expect(md.applicationProperties).toEqual({ flRound: 3, "aeg-delivery-count": "0", nested: "x" });
    expect(md.userProperties).toEqual(md.applicationProperties);
    expect(typeof md.sequenceNumber).toBe("number");
    expect(md.lockToken).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(Date.parse(md.enqueuedTimeUtc as string)).toBeGreaterThan(Date.now() - 60_000);
    await new Promise((r) => setTimeout(r, 300));
    expect(await sbCalls("jobEvents", "msg-ok")).toHaveLength(1); // completed: not redelivered
    expect(await host.serviceBus.peekDeadLetters("job-events")).toEqual([]);
  });

  test("a throwing handler abandons: redelivered with deliveryCount + 1, then completes", async () => {
    await host.serviceBus.send("job-events", { body: { failUntil: 2 }, messageId: "msg-retry" });
    const seen = await waitFor("two deliveries", async () => {
      const c = await sbCalls("jobEvents", "msg-retry");
      return c.length >= 2 ? c : undefined;
    });
    expect(seen.map((c) => (c.md as { deliveryCount: number }).deliveryCount)).toEqual([1, 2]);
    await new Promise((r) => setTimeout(r, 300));
    expect(await sbCalls("jobEvents", "msg-retry")).toHaveLength(2);
  });

  test("after maxDeliveryCount failed deliveries the message is dead-lettered with the reason", async () => {
    await host.serviceBus.send("job-events", { body: { failUntil: 99 }, messageId: "msg-poison", applicationProperties: { kind: "poison" } });
    const dead = await waitFor("dead letter", async () => {
      const d = await host.serviceBus.peekDeadLetters("job-events");
      return d.length ? d : undefined;
    });
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatchObject({
      messageId: "msg-poison",
      body: { failUntil: 99 },
      applicationProperties: { kind: "poison" },
      deadLetterReason: "MaxDeliveryCountExceeded",
      deadLetterErrorDescription: "Message could not be consumed after 3 delivery attempts.",
      lastError: "Error: refusing delivery 3",
      deliveryCount: 3,
      deadLetterSource: "job-events",
    });
    expect((await sbCalls("jobEvents", "msg-poison")).map((c) => (c.md as { deliveryCount: number }).deliveryCount)).toEqual([1, 2, 3]);
  });

  test("a topic send fans out to one copy per subscription", async () => {
    await host.serviceBus.send("rounds", { body: "round 7 done", messageId: "topic-1" });
    const [a, b] = await waitFor("both subscriptions", async () => {
      const ca = await sbCalls("roundsA", "topic-1");
      const cb = await sbCalls("roundsB", "topic-1");
      return ca.length && cb.length ? [ca, cb] : undefined;
    });
    expect(a).toHaveLength(1);
    expect(b).toHaveLength(1);
    expect(a[0].body).toBe("round 7 done");
    expect(host.serviceBus.describeTriggers()).toEqual(expect.arrayContaining([{ functionName: "roundsB", source: "rounds/Subscriptions/b", transport: "azurite-queues" }]));
  });

  test("output bindings: an extra output array sends one message each; a return binding sends to a topic", async () => {
    const res = await fetch(`${host.url}/api/forward`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify([{ tag: "out-1" }, { tag: "out-2" }]) });
    expect(res.status).toBe(202);
    const forwarded = await waitFor("forwarded messages", async () => {
      const c = (await calls(host)).filter((x) => x.name === "jobEvents" && String((x.body as { tag?: string })?.tag).startsWith("out-"));
      return c.length >= 2 ? c : undefined;
    });
    expect(forwarded.map((c) => (c.body as { tag: string }).tag).sort()).toEqual(["out-1", "out-2"]);
    await host.serviceBus.send("relay-in", { body: "hello", messageId: "relay-1" });
    const relayed = await waitFor("relayed to both subscriptions", async () => {
      const c = (await calls(host)).filter((x) => (x.name === "roundsA" || x.name === "roundsB") && x.body === "relayed hello");
      return c.length >= 2 ? c : undefined;
    });
    expect(relayed.map((c) => c.name).sort()).toEqual(["roundsA", "roundsB"]);
  });

  test("bad producer input is rejected before anything is sent", async () => {
    await expect(host.serviceBus.send("job-events", [{ body: 1 }, { body: undefined }])).rejects.toThrow("Service Bus message body: expected a value");
  });
});

describe("local host: timer isPastDue after downtime", () => {
  test("a missed occurrence fires once with isPastDue=true after a restart; status persisted in blob storage", async () => {
    const { startAzurite } = await import("../lib/storage/azurite");
    const azurite = await startAzurite();
    try {
      const storage = azurite.connectionString; // the plain connection-string form of the option
      const clock1 = new VirtualClock("2025-03-01T10:00:30.000Z");
      const first = await startLocalHost({ appEntry: APP, port: 0, storage, settings: SETTINGS, clock: clock1, log: () => undefined });
      await clock1.advance(60_000); // fires 10:01:00; Next recorded = 10:02:00
      const before = (await calls(first)).filter((c) => c.name === "everyMinute");
      await first.stop();
      expect(before).toHaveLength(1);

      // Down from 10:01:30 until 10:07:10: occurrences 10:02..10:07 were missed.
      const clock2 = new VirtualClock("2025-03-01T10:07:10.000Z");
      const second = await startLocalHost({ appEntry: APP, port: 0, storage, settings: SETTINGS, clock: clock2, log: () => undefined });
      try {
        const atStart = (await calls(second)).filter((c) => c.name === "everyMinute");
        expect(atStart).toEqual([expect.objectContaining({ isPastDue: true, scheduleStatus: expect.objectContaining({ last: "2025-03-01T10:01:00.000Z", next: "2025-03-01T10:02:00.000Z" }) })]);
        await clock2.advance(60_000);
        const after = (await calls(second)).filter((c) => c.name === "everyMinute");
        expect(after).toHaveLength(2);
        expect(after[1]).toMatchObject({ isPastDue: false, scheduleStatus: { last: "2025-03-01T10:02:00.000Z", next: "2025-03-01T10:08:00.000Z" } });
      } finally {
        await second.stop();
      }
    } finally {
      await azurite.stop();
    }
  });
});

describe("flo host options", () => {
  test("port and storage values are validated with the option name", () => {
    expect(parsePort("0")).toBe(0);
    expect(() => parsePort("70000")).toThrow(new HostCliError("--port", "an integer 0..65535", '"70000"'));
    expect(() => parsePort("abc")).toThrow('--port: expected an integer 0..65535, got "abc"');
    expect(parseStorage("memory")).toBe("memory");
    expect(parseStorage("DefaultEndpointsProtocol=http;AccountName=a;AccountKey=b")).toEqual({ connectionString: "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=b" });
    expect(() => parseStorage("disk")).toThrow(HostCliError);
  });

  test("a missing app entry or settings file is a clear startup error", async () => {
    await expect(startLocalHost({ appEntry: "/nope/index.js", port: 0, storage: "memory" })).rejects.toThrow(
      "appEntry: expected an existing compiled .js file or app folder, got /nope/index.js (not found)",
    );
    await expect(startLocalHost({ appEntry: APP, port: 0, storage: "disk" })).rejects.toThrow('storage: expected "memory", "persisted" or a storage connection string, got "disk"');
    await expect(startLocalHost({ appEntry: APP, port: 0, storage: "memory", settings: "/nope/local.settings.json" })).rejects.toThrow(
      "/nope/local.settings.json: (file): expected an existing local.settings.json, got no such file",
    );
  });
});

describe("Service Bus transport selection", () => {
  test("a configured connection (emulator form) puts the triggers using it on real Service Bus (unconfigured: embedded, see above)", async () => {
    const { loadFunctionsApp } = await import("../lib/runtime/functionsCore");
    const { createInvoker } = await import("../lib/runtime/invoke");
    const { LocalServiceBus } = await import("../lib/runtime/triggers/serviceBus/serviceBusTriggers");
    const { parseHostJson } = await import("../lib/runtime/settings");
    const registry = loadFunctionsApp(APP);
    const emulator = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true";
    const bus = new LocalServiceBus({
      registry,
      invoker: createInvoker(registry),
      settings: { JobEventsBus: emulator },
      options: parseHostJson(undefined).serviceBus,
      storageConnectionString: "UseDevelopmentStorage=true",
    });
    try {
      // no receivers are started: nothing connects
      expect(bus.describeTriggers()).toEqual(
        expect.arrayContaining([
          { functionName: "jobEvents", source: "job-events", transport: "service-bus" },
          { functionName: "roundsA", source: "rounds/Subscriptions/a", transport: "service-bus" },
        ]),
      );
      expect(bus.describeTriggers().every((t) => t.transport === "service-bus")).toBe(true);
    } finally {
      await bus.stop();
    }
  });
});
