// Test app for the local host's triggers, written only against the public @azure/functions v4 API.
// It records what each handler saw; GET /api/_calls returns the records.
const { app, output } = require("@azure/functions");

const calls = [];
const record = (kind, data) => calls.push({ kind, ...data });

app.http("calls", { route: "_calls", methods: ["GET"], handler: async () => ({ jsonBody: calls }) });

app.http("products", {
  route: "products/{category:alpha}/{id:int?}",
  methods: ["GET"],
  handler: async (req) => ({ jsonBody: { params: req.params, query: Object.fromEntries(req.query.entries()) } }),
});
app.http("latestProduct", { route: "products/latest", methods: ["GET"], handler: async () => ({ body: "latest" }) });
app.http("secret", { route: "secret", authLevel: "function", methods: ["GET"], handler: async () => ({ jsonBody: { ok: true } }) });
app.http("adminOnly", { route: "admin-only", authLevel: "admin", methods: ["GET"], handler: async () => ({ body: "admin" }) });
app.http("echo", {
  methods: ["POST", "PUT"],
  handler: async (req) => ({
    status: 201,
    headers: { "x-echo": req.headers.get("x-custom") ?? "none" },
    cookies: [{ name: "session", value: "abc", httpOnly: true }],
    jsonBody: { got: await req.json(), method: req.method, url: req.url },
  }),
});
app.http("boom", {
  methods: ["GET"],
  handler: async () => {
    throw new Error("handler exploded");
  },
});
app.http("nothing", { methods: ["GET"], handler: async () => undefined });

app.timer("everyMinute", {
  schedule: "0 * * * * *",
  handler: async (timer, context) => record("timer", { name: context.functionName, isPastDue: timer.isPastDue, scheduleStatus: timer.scheduleStatus, schedule: timer.schedule }),
});
app.timer("onStartup", {
  schedule: "%YEARLY_SCHEDULE%",
  runOnStartup: true,
  handler: async (timer, context) => record("timer", { name: context.functionName, isPastDue: timer.isPastDue }),
});

app.timer("flakyTimer", {
  schedule: "0 0 * * * *",
  retry: { strategy: "fixedDelay", maxRetryCount: 2, delayInterval: { seconds: 10 } },
  handler: async (timer, context) => {
    record("timer", { name: context.functionName, retryContext: context.retryContext });
    throw new Error("timer failed");
  },
});

app.serviceBusQueue("jobEvents", {
  connection: "JobEventsBus",
  queueName: "job-events",
  handler: async (message, context) => {
    record("sb", { name: context.functionName, body: message, md: context.triggerMetadata });
    if (message && message.failUntil && context.triggerMetadata.deliveryCount < message.failUntil) {
      throw new Error(`refusing delivery ${context.triggerMetadata.deliveryCount}`);
    }
  },
});
app.serviceBusTopic("roundsA", {
  connection: "JobEventsBus",
  topicName: "rounds",
  subscriptionName: "a",
  handler: async (message, context) => record("sb", { name: context.functionName, body: message, md: context.triggerMetadata }),
});
app.serviceBusTopic("roundsB", {
  connection: "JobEventsBus",
  topicName: "rounds",
  subscriptionName: "b",
  handler: async (message, context) => record("sb", { name: context.functionName, body: message, md: context.triggerMetadata }),
});

// Service Bus output bindings: an extra output (array = one message each) and a return binding.
const jobEventsOut = output.serviceBusQueue({ connection: "JobEventsBus", queueName: "job-events" });
app.http("forward", {
  methods: ["POST"],
  extraOutputs: [jobEventsOut],
  handler: async (req, context) => {
    context.extraOutputs.set(jobEventsOut, await req.json());
    return { status: 202 };
  },
});
app.serviceBusQueue("relay", {
  connection: "JobEventsBus",
  queueName: "relay-in",
  return: output.serviceBusTopic({ connection: "JobEventsBus", topicName: "rounds" }),
  handler: async (message) => `relayed ${message}`,
});
