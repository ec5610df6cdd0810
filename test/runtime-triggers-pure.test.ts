import { compileRoute, compareRoutePrecedence, RouteTemplateError } from "../lib/runtime/triggers/http/routeTemplate";
import { parseTimerSchedule, decideStartup, timerPayload, TimerScheduleError, NEVER } from "../lib/runtime/triggers/timer/schedule";
import { parseHostJson, parseLocalSettings, applySettingsToEnv, parseTimeSpan, SettingsError, resolveHostKeys, resolveAppSettingExpression } from "../lib/runtime/settings";
import { validateOutgoing, ServiceBusMessageError } from "../lib/messaging/message";
import { toTriggerMetadata } from "../lib/runtime/triggers/serviceBus/triggerData";
import { storageQueueName, deadLetterQueueName } from "../lib/messaging/azuriteTransport";
import { resolveServiceBusConnection, ServiceBusConnectionError } from "../lib/messaging/connection";
import { isAuthorized } from "../lib/runtime/triggers/http/frontDoor";

describe("route templates", () => {
  test("literal + required + optional parameters, case-insensitive literals, prefix", () => {
    const r = compileRoute("products/{category}/{id?}", "api");
    expect(r.match("/api/products/shoes/42")).toEqual({ category: "shoes", id: "42" });
    expect(r.match("/API/Products/shoes")).toEqual({ category: "shoes" });
    expect(r.match("/api/products/shoes/")).toEqual({ category: "shoes" });
    expect(r.match("/api/products")).toBeUndefined();
    expect(r.match("/products/shoes")).toBeUndefined();
    expect(r.match("/api/products/a/b/c")).toBeUndefined();
  });
  test("constraints are enforced: int, alpha, range, regex, length; unknown ones parsed and ignored", () => {
    expect(compileRoute("items/{id:int}", "api").match("/api/items/17")).toEqual({ id: "17" });
    expect(compileRoute("items/{id:int}", "api").match("/api/items/x17")).toBeUndefined();
    expect(compileRoute("n/{v:range(1,9)}", "").match("/n/10")).toBeUndefined();
    expect(compileRoute("n/{v:range(1,9)}", "").match("/n/9")).toEqual({ v: "9" });
    expect(compileRoute("a/{s:alpha:minlength(2)}", "").match("/a/x")).toBeUndefined();
    expect(compileRoute("a/{s:regex(^\\d{3}$)}", "").match("/a/123")).toEqual({ s: "123" });
    expect(compileRoute("a/{s:regex(^\\d{3}$)}", "").match("/a/1234")).toBeUndefined();
    expect(compileRoute("a/{s:frobnicate}", "").match("/a/anything")).toEqual({ s: "anything" });
  });
  test("defaults, catch-all, mixed segments, percent-decoding", () => {
    expect(compileRoute("v/{page=1}", "").match("/v")).toEqual({ page: "1" });
    expect(compileRoute("files/{*path}", "api").match("/api/files/a/b%20c/d.txt")).toEqual({ path: "a/b c/d.txt" });
    expect(compileRoute("files/{name}.{ext}", "").match("/files/model.safetensors")).toEqual({ name: "model", ext: "safetensors" });
  });
  test("invalid templates name the template and the reason", () => {
    expect(() => compileRoute("a/{id?}/b", "")).toThrow(RouteTemplateError);
    expect(() => compileRoute("a/{id?}/b", "")).toThrow('Invalid route template "a/{id?}/b": an optional parameter must not be followed by a required segment');
    expect(() => compileRoute("a/{x}/{x}", "")).toThrow('parameter "x" appears twice');
    expect(() => compileRoute("a/{x", "")).toThrow('unclosed "{"');
  });
  test("literal segments take precedence over parameters", () => {
    const routes = [compileRoute("items/{id}", "api"), compileRoute("items/latest", "api")].sort(compareRoutePrecedence);
    expect(routes[0].template).toBe("items/latest");
  });
});

describe("auth levels", () => {
  const keys = { functionKey: "fk", masterKey: "mk", generated: false, masterGenerated: false };
  test("anonymous needs nothing; function accepts function or master key; admin only master", () => {
    expect(isAuthorized("anonymous", keys, undefined, null)).toBe(true);
    expect(isAuthorized("function", keys, undefined, null)).toBe(false);
    expect(isAuthorized("function", keys, "fk", null)).toBe(true);
    expect(isAuthorized("function", keys, undefined, "mk")).toBe(true);
    expect(isAuthorized("function", keys, "wrong", null)).toBe(false);
    expect(isAuthorized("admin", keys, "fk", null)).toBe(false);
    expect(isAuthorized("admin", keys, "mk", null)).toBe(true);
  });
});

describe("timer schedules", () => {
  test("six-field NCRONTAB with seconds, five-field means second 0", () => {
    const s = parseTimerSchedule("*/15 * * * * *", "t");
    expect(s.next(new Date("2025-01-01T00:00:07Z")).toISOString()).toBe("2025-01-01T00:00:15.000Z");
    const five = parseTimerSchedule("*/5 * * * *", "t");
    expect(five.next(new Date("2025-01-01T00:03:10Z")).toISOString()).toBe("2025-01-01T00:05:00.000Z");
    expect(parseTimerSchedule("0 30 9 * * 1-5", "t").next(new Date("2025-01-04T00:00:00Z")).toISOString()).toBe("2025-01-06T09:30:00.000Z");
  });
  test("TimeSpan interval schedules", () => {
    const s = parseTimerSchedule("00:10:00", "t");
    expect(s.kind).toBe("interval");
    expect(s.next(new Date("2025-01-01T00:00:00Z")).toISOString()).toBe("2025-01-01T00:10:00.000Z");
  });
  test("bad schedules name the function and the expression", () => {
    expect(() => parseTimerSchedule("0 0 * * * * *", "nightly")).toThrow(TimerScheduleError);
    expect(() => parseTimerSchedule("0 0 * * * * *", "nightly")).toThrow('Timer function "nightly": schedule "0 0 * * * * *" is invalid: expected 6 NCRONTAB fields');
    expect(() => parseTimerSchedule("0 0 99 * * *", "nightly")).toThrow(/nightly.*invalid/);
  });
  test("startup: missed recorded Next fires once as past due; otherwise runOnStartup decides", () => {
    const s = parseTimerSchedule("0 0 * * * *", "t");
    const recorded = { Last: "2025-01-01T00:00:00.000Z", Next: "2025-01-01T01:00:00.000Z", LastUpdated: "2025-01-01T00:00:00.100Z" };
    const late = decideStartup(s, recorded, new Date("2025-01-01T03:30:00Z"), false);
    expect(late).toMatchObject({ invokeNow: true, isPastDue: true });
    expect(late.occurrence.toISOString()).toBe("2025-01-01T01:00:00.000Z");
    const onTime = decideStartup(s, recorded, new Date("2025-01-01T00:30:00Z"), false);
    expect(onTime).toMatchObject({ invokeNow: false, isPastDue: false, status: recorded });
    const fresh = decideStartup(s, undefined, new Date("2025-01-01T00:30:00Z"), true);
    expect(fresh).toMatchObject({ invokeNow: true, isPastDue: false, status: { Last: NEVER, Next: "2025-01-01T01:00:00.000Z" } });
  });
  test("payload shape matches the host's TimerInfo json", () => {
    expect(JSON.parse(timerPayload({ Last: "a", Next: "b", LastUpdated: "c" }, true))).toEqual({
      Schedule: { AdjustForDST: true },
      ScheduleStatus: { Last: "a", Next: "b", LastUpdated: "c" },
      IsPastDue: true,
    });
  });
});

describe("settings", () => {
  test("local.settings.json Values: strings kept, numbers/booleans stringified, objects rejected with the field", () => {
    const s = parseLocalSettings(JSON.stringify({ IsEncrypted: false, Values: { A: "x", N: 3, B: true } }), "ls.json");
    expect(s.values).toEqual({ A: "x", N: "3", B: "true" });
    expect(() => parseLocalSettings(JSON.stringify({ Values: { Bad: { a: 1 } } }), "ls.json")).toThrow("ls.json: Values.Bad: expected string, number or boolean, got object");
    expect(() => parseLocalSettings("{nope", "ls.json")).toThrow(SettingsError);
  });
  test("applySettingsToEnv never overrides the process environment", () => {
    const env: NodeJS.ProcessEnv = { A: "from-env" };
    expect(applySettingsToEnv({ A: "file", B: "file" }, env)).toEqual(["B"]);
    expect(env).toEqual({ A: "from-env", B: "file" });
  });
  test("host.json: routePrefix, hub, serviceBus options and overrides", () => {
    const text = JSON.stringify({
      version: "2.0",
      extensions: { http: { routePrefix: "/v1/" }, durableTask: { hubName: "flo" }, serviceBus: { maxConcurrentCalls: 4, maxDeliveryCount: 3, maxAutoLockRenewalDuration: "00:01:00" } },
    });
    const c = parseHostJson(text, "host.json", {});
    expect(c).toMatchObject({ routePrefix: "v1", hubName: "flo", serviceBus: { maxConcurrentCalls: 4, maxDeliveryCount: 3, maxAutoLockRenewalDurationMs: 60_000, lockDurationMs: 60_000 } });
    const o = parseHostJson(text, "host.json", {
      FLO_SERVICEBUS_MAX_DELIVERY_COUNT: "5",
      AzureFunctionsJobHost__extensions__serviceBus__maxConcurrentCalls: "2",
      FLO_SERVICEBUS_LOCK_DURATION: "00:00:05",
    });
    expect(o.serviceBus).toMatchObject({ maxDeliveryCount: 5, maxConcurrentCalls: 2, lockDurationMs: 5000 });
    expect(parseHostJson(undefined).routePrefix).toBe("api");
    expect(parseHostJson(undefined).serviceBus.maxDeliveryCount).toBe(10);
    expect(parseHostJson(JSON.stringify({ extensions: { http: { routePrefix: "" } } })).routePrefix).toBe("");
    expect(() => parseHostJson(JSON.stringify({ extensions: { serviceBus: { maxDeliveryCount: 0 } } }), "h.json")).toThrow(
      "h.json: extensions.serviceBus.maxDeliveryCount: expected a positive integer, got number 0",
    );
  });
  test("TimeSpan, keys and %setting% expressions", () => {
    expect(parseTimeSpan("1.02:03:04.5")).toBe(((24 + 2) * 3600 + 3 * 60 + 4) * 1000 + 500);
    expect(() => parseTimeSpan("5 minutes", "x")).toThrow(SettingsError);
    const generated = resolveHostKeys({});
    expect(generated.generated).toBe(true);
    expect(generated.functionKey.length).toBeGreaterThanOrEqual(32);
    expect(generated.masterGenerated).toBe(true);
    expect(generated.masterKey.length).toBeGreaterThanOrEqual(32);
    expect(generated.masterKey).not.toBe(generated.functionKey);
    // A configured function key no longer doubles as the master key: the master key is generated.
    const onlyFunction = resolveHostKeys({ FLO_FUNCTION_KEY: "k1" });
    expect(onlyFunction).toMatchObject({ functionKey: "k1", generated: false, masterGenerated: true });
    expect(onlyFunction.masterKey).not.toBe("k1");
    expect(resolveHostKeys({ FLO_FUNCTION_KEY: "k1", FLO_MASTER_KEY: "m1" })).toEqual({ functionKey: "k1", masterKey: "m1", generated: false, masterGenerated: false });
    expect(() => resolveHostKeys({ FLO_FUNCTION_KEY: "same", FLO_MASTER_KEY: "same" })).toThrow("(app settings): FLO_MASTER_KEY: expected a key different from FLO_FUNCTION_KEY, got the same value");
    expect(resolveAppSettingExpression("%Q%-x", { Q: "jobs" }, "f.queueName")).toBe("jobs-x");
    expect(() => resolveAppSettingExpression("%Missing%", {}, "f.queueName")).toThrow('f.queueName: expected app setting "Missing" to be defined');
  });
});

describe("Service Bus message mapping", () => {
  test("trigger metadata uses the host's PascalCase keys with typed values", () => {
    const md = toTriggerMetadata({
      body: { a: 1 },
      messageId: "m1",
      deliveryCount: 2,
      sequenceNumber: 7,
      enqueuedTimeUtc: new Date("2025-01-01T00:00:00Z"),
      lockToken: "00000000-0000-0000-0000-000000000001",
      contentType: "application/json",
      applicationProperties: { FlRound: 3 },
    });
    expect(md.DeliveryCount).toEqual({ int: 2 });
    expect(md.MessageId).toEqual({ string: "m1" });
    expect(md.SequenceNumber).toEqual({ int: 7 });
    expect(md.EnqueuedTimeUtc).toEqual({ string: "2025-01-01T00:00:00.000Z" });
    expect(JSON.parse(md.ApplicationProperties.json as string)).toEqual({ FlRound: 3 });
    expect(md.CorrelationId).toBeUndefined();
  });
  test("producer validation names the field", () => {
    expect(() => validateOutgoing({ body: undefined })).toThrow("Service Bus message body: expected a value (object, string or bytes), got undefined");
    expect(() => validateOutgoing({ body: 1, applicationProperties: { x: {} as unknown as string } })).toThrow(ServiceBusMessageError);
    expect(() => validateOutgoing({ body: 1, messageId: 5 as unknown as string })).toThrow("Service Bus message messageId: expected string, got number");
  });
  test("entity names map to valid, distinct storage queue names", () => {
    expect(storageQueueName("aml-events")).toBe("aml-events");
    expect(deadLetterQueueName("aml-events")).toBe("aml-events-deadletter");
    const odd = storageQueueName("Jobs.Events_v2");
    expect(odd).toMatch(/^jobs-events-v2-[0-9a-f]{8}$/);
    expect(storageQueueName("Jobs.Events-v2")).not.toBe(odd);
    const long = storageQueueName("x".repeat(200));
    expect(long.length).toBeLessThanOrEqual(52);
    for (const n of [odd, long, deadLetterQueueName("x".repeat(200))]) expect(n).toMatch(/^[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$/);
    expect(deadLetterQueueName("x".repeat(200)).length).toBeLessThanOrEqual(63);
  });
  test("connection resolution: connection string (incl. emulator), identity-based, none, malformed", () => {
    const emu = "Endpoint=sb://127.0.0.1:5672;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=SAS_KEY_VALUE;UseDevelopmentEmulator=true";
    expect(resolveServiceBusConnection("SB", { SB: emu })).toEqual({ connectionString: emu });
    expect(resolveServiceBusConnection("SB", {})).toBeUndefined();
    expect(resolveServiceBusConnection("SB", { SB: "" })).toBeUndefined();
    const fake = { getToken: async () => null };
    expect(resolveServiceBusConnection("SB", { SB__fullyQualifiedNamespace: "ns.servicebus.windows.net" }, () => fake)).toEqual({
      fullyQualifiedNamespace: "ns.servicebus.windows.net",
      credential: fake,
    });
    expect(() => resolveServiceBusConnection("SB", { SB: "not a connection string" })).toThrow(ServiceBusConnectionError);
  });
});

describe("real Service Bus message mapping (SDK transport)", () => {
  // imported lazily so the pure tests above don't pay for loading @azure/service-bus
  test("outgoing: JSON bodies get application/json; fields carried over; incoming: deliveryCount made 1-based", async () => {
    const { toSdkMessage, fromSdkMessage } = await import("../lib/messaging/sdkTransport");
    expect(toSdkMessage({ body: { a: 1 }, messageId: "m", applicationProperties: { k: "v" }, timeToLiveMs: 5000 })).toMatchObject({
      body: { a: 1 },
      messageId: "m",
      contentType: "application/json",
      applicationProperties: { k: "v" },
      timeToLive: 5000,
    });
    expect(toSdkMessage({ body: "text" }).contentType).toBeUndefined();
    const received = fromSdkMessage({
      body: { a: 1 },
      messageId: "m",
      deliveryCount: 0,
      lockToken: "11111111-2222-3333-4444-555555555555",
      enqueuedTimeUtc: new Date("2025-01-01T00:00:00Z"),
      applicationProperties: { FlRound: 2 },
      state: "active",
      sequenceNumber: { toString: () => "42" },
    } as unknown as Parameters<typeof fromSdkMessage>[0]);
    expect(received).toMatchObject({ deliveryCount: 1, sequenceNumber: 42, messageId: "m", lockToken: "11111111-2222-3333-4444-555555555555", applicationProperties: { FlRound: 2 } });
  });
});

describe("NeverEarlyClock", () => {
  test("a timer whose inner clock fires before the due time is re-armed instead of running early", async () => {
    const { NeverEarlyClock } = await import("../lib/runtime/host");
    let now = 1000;
    const armed: Array<{ at: number; cb: () => void | Promise<void> }> = [];
    const inner = { now: () => new Date(now), setTimer: (at: Date, cb: () => void | Promise<void>) => (armed.push({ at: at.getTime(), cb }), () => undefined) };
    const clock = new NeverEarlyClock(inner);
    let fired = 0;
    clock.setTimer(new Date(1500), () => void fired++);
    now = 1499; // the inner timer fires 1 ms early
    await armed[0].cb();
    expect(fired).toBe(0);
    expect(armed).toHaveLength(2);
    now = 1500;
    await armed[1].cb();
    expect(fired).toBe(1);
  });
});

describe("Service Bus cardinality many", () => {
  test("a message is delivered as a batch of one with *Array metadata keys", async () => {
    const { toInvocation } = await import("../lib/runtime/triggers/serviceBus/serviceBusTriggers");
    const { triggerData, triggerMetadata } = toInvocation(
      {
        body: { n: 1 },
        messageId: "m1",
        deliveryCount: 1,
        sequenceNumber: 5,
        enqueuedTimeUtc: new Date("2025-01-01T00:00:00Z"),
        lockToken: "t",
        applicationProperties: { A: 1 },
      },
      "many",
    );
    expect(JSON.parse(triggerData.json as string)).toEqual([{ n: 1 }]);
    expect(JSON.parse(triggerMetadata.MessageIdArray.json as string)).toEqual(["m1"]);
    expect(JSON.parse(triggerMetadata.DeliveryCountArray.json as string)).toEqual([1]);
    expect(JSON.parse(triggerMetadata.ApplicationPropertiesArray.json as string)).toEqual([{ A: 1 }]);
    expect(triggerMetadata.MessageId).toBeUndefined();
  });
});

describe("timer retry policies", () => {
  test("metadata retryOptions parse; delays are fixed or doubling up to the maximum; bad strategies name the function", async () => {
    const { parseRetryOptions, retryDelayMs } = await import("../lib/runtime/triggers/timer/timerTriggers");
    const fixed = parseRetryOptions({ strategy: "fixedDelay", retryStrategy: "fixedDelay", maxRetryCount: 3, delayInterval: { seconds: 5 } }, "t")!;
    expect([1, 2, 3].map((n) => retryDelayMs(fixed, n))).toEqual([5000, 5000, 5000]);
    const expo = parseRetryOptions({ retryStrategy: "exponentialBackoff", maxRetryCount: -1, minimumInterval: { seconds: 2 }, maximumInterval: { seconds: 10 } }, "t")!;
    expect([1, 2, 3, 4].map((n) => retryDelayMs(expo, n))).toEqual([2000, 4000, 8000, 10000]);
    expect(parseRetryOptions(undefined, "t")).toBeUndefined();
    expect(() => parseRetryOptions({ retryStrategy: "sometimes", maxRetryCount: 1 }, "nightly")).toThrow(
      'Timer function "nightly": retry.strategy: expected "fixedDelay" or "exponentialBackoff", got "sometimes"',
    );
  });
});
