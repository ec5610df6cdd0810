// A "foreign" Functions app: written only against the public @azure/functions v4 and
// durable-functions v3 APIs, the way the Azure docs' samples are. It knows nothing about flo.
const { app } = require("@azure/functions");
const df = require("durable-functions");

// ---- function chaining ----
df.app.activity("sayHello", { handler: (city) => `Hello ${city}!` });
df.app.orchestration("chaining", function* (context) {
  const outputs = [];
  outputs.push(yield context.df.callActivity("sayHello", "Tokyo"));
  outputs.push(yield context.df.callActivity("sayHello", "Seattle"));
  outputs.push(yield context.df.callActivity("sayHello", "London"));
  return outputs;
});

// ---- fan-out / fan-in ----
df.app.activity("getWorkItems", { handler: (count) => Array.from({ length: count }, (_, i) => i + 1) });
df.app.activity("square", { handler: (n) => n * n });
df.app.orchestration("fanOutFanIn", function* (context) {
  const items = yield context.df.callActivity("getWorkItems", context.df.getInput() ?? 5);
  const squares = yield context.df.Task.all(items.map((n) => context.df.callActivity("square", n)));
  return { count: squares.length, sum: squares.reduce((a, b) => a + b, 0) };
});

// ---- human interaction with a timeout ----
df.app.orchestration("approval", function* (context) {
  const timeoutMs = (context.df.getInput() || {}).timeoutMs ?? 24 * 3600 * 1000;
  const deadline = new Date(context.df.currentUtcDateTime.getTime() + timeoutMs);
  const timeout = context.df.createTimer(deadline);
  const approval = context.df.waitForExternalEvent("Approval");
  const winner = yield context.df.Task.any([approval, timeout]);
  if (winner === approval) {
    timeout.cancel();
    return { approved: true, by: approval.result.by };
  }
  return { approved: false, reason: "timed out" };
});

// ---- monitor with continueAsNew ----
df.app.activity("checkJob", { handler: (state) => (state.poll >= state.readyAfter ? "Completed" : "Running") });
df.app.orchestration("monitor", function* (context) {
  const state = context.df.getInput();
  const status = yield context.df.callActivity("checkJob", state);
  if (status === "Completed") return { polls: state.poll, status };
  context.df.setCustomStatus({ poll: state.poll, status });
  yield context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + state.intervalMs));
  context.df.continueAsNew({ ...state, poll: state.poll + 1 });
});

// ---- retry ----
const attempts = new Map();
df.app.activity("flaky", {
  handler: (key) => {
    const n = (attempts.get(key) ?? 0) + 1;
    attempts.set(key, n);
    if (n < 3) throw new Error(`attempt ${n} failed`);
    return `succeeded on attempt ${n}`;
  },
});
df.app.orchestration("retrying", function* (context) {
  const retry = new df.RetryOptions(1000, 5);
  return yield context.df.callActivityWithRetry("flaky", retry, context.df.instanceId);
});
df.app.orchestration("retryExhausted", function* (context) {
  const retry = new df.RetryOptions(500, 2);
  try {
    yield context.df.callActivityWithRetry("flaky", retry, `${context.df.instanceId}-never`);
    return "unexpected";
  } catch (err) {
    return { failed: true, message: String(err.message).split("\n")[0] };
  }
});

// ---- sub-orchestrations ----
df.app.orchestration("parent", function* (context) {
  const greetings = yield context.df.callSubOrchestrator("chaining", undefined, `${context.df.instanceId}:greetings`);
  const squares = yield context.df.callSubOrchestrator("fanOutFanIn", 3, `${context.df.instanceId}:squares`);
  return { greetings, squares };
});

// ---- something to terminate ----
df.app.orchestration("waitForever", function* (context) {
  context.df.setCustomStatus("waiting");
  return yield context.df.waitForExternalEvent("NeverComes");
});

// ---- an external system reports completion over Service Bus (durable client in a queue trigger) ----
df.app.orchestration("awaitJob", function* (context) {
  const result = yield context.df.waitForExternalEvent("JobDone");
  return { job: context.df.getInput(), result };
});
df.app.client.serviceBusQueue("jobDone", {
  connection: "JobsBus",
  queueName: "%JOB_QUEUE%",
  handler: async (message, client, context) => {
    const instanceId = context.triggerMetadata.applicationProperties.instanceId;
    await client.raiseEvent(instanceId, "JobDone", { ...message, deliveryCount: context.triggerMetadata.deliveryCount });
  },
});

// ---- a timer-triggered durable client starts an orchestration ----
df.app.client.timer("nightlyStart", {
  schedule: "0 0 3 * * *",
  runOnStartup: true,
  handler: async (timer, client) => {
    await client.startNew("chaining", { instanceId: `nightly-${timer.isPastDue ? "late" : "on-time"}` });
  },
});

// ---- HTTP starter + client operations through df.getClient ----
const clientInput = df.input.durableClient();
app.http("httpStart", {
  route: "orchestrators/{orchestratorName}/{instanceId?}",
  methods: ["POST"],
  extraInputs: [clientInput],
  handler: async (request, context) => {
    const client = df.getClient(context);
    const text = await request.text();
    const instanceId = await client.startNew(request.params.orchestratorName, {
      instanceId: request.params.instanceId,
      input: text ? JSON.parse(text) : undefined,
    });
    context.log(`Started orchestration with ID = '${instanceId}'.`);
    return client.createCheckStatusResponse(request, instanceId);
  },
});
app.http("approve", {
  route: "approve/{instanceId}",
  methods: ["POST"],
  authLevel: "function",
  extraInputs: [clientInput],
  handler: async (request, context) => {
    const client = df.getClient(context);
    await client.raiseEvent(request.params.instanceId, "Approval", await request.json());
    return { status: 202 };
  },
});
app.http("status", {
  route: "status/{instanceId}",
  methods: ["GET"],
  extraInputs: [clientInput],
  handler: async (request, context) => {
    const client = df.getClient(context);
    const status = await client.getStatus(request.params.instanceId);
    return { jsonBody: { runtimeStatus: status.runtimeStatus, output: status.output, customStatus: status.customStatus } };
  },
});
app.http("terminate", {
  route: "terminate/{instanceId}",
  methods: ["POST"],
  extraInputs: [clientInput],
  handler: async (request, context) => {
    const client = df.getClient(context);
    await client.terminate(request.params.instanceId, "stopped by test");
    return { status: 202 };
  },
});
