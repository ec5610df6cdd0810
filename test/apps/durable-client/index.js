// An app driving the real DurableClient (df.getClient) from an HTTP function, to test the
// embedded management API end to end. Only public @azure/functions + durable-functions APIs.
const { app } = require("@azure/functions");
const df = require("durable-functions");

df.app.activity("greet", { handler: (name) => `hello ${name}` });

df.app.orchestration("approval", function* (context) {
  context.df.setCustomStatus("waiting for approval");
  const decision = yield context.df.waitForExternalEvent("decision");
  const greeting = yield context.df.callActivity("greet", decision.by);
  return { approved: decision.approved, greeting, input: context.df.getInput() };
});

df.app.activity("explode", {
  handler: (what) => {
    throw new Error(`boom: ${what}`);
  },
});

// Quick instances for the management API's status codes and waits.
df.app.orchestration("quick", function* (context) {
  return yield context.df.callActivity("GREET", context.df.getInput()); // activity names ignore case, like the extension
});
df.app.orchestration("doomed", function* (context) {
  yield context.df.callActivity("explode", "x");
});
df.app.orchestration("caught", function* (context) {
  try {
    yield context.df.callActivity("explode", "x");
    return "not thrown";
  } catch (err) {
    return err.message;
  }
});
df.app.orchestration("loud", function* (context) {
  context.df.setCustomStatus("s".repeat(context.df.getInput()));
  return yield context.df.callActivity("greet", "after status");
});

df.app.orchestration("fetcher", function* (context) {
  return yield context.df.callHttp({ method: "GET", url: "http://127.0.0.1:9/never" });
});

app.http("clientOps", {
  route: "ops",
  methods: ["POST"],
  extraInputs: [df.input.durableClient()],
  handler: async (request, context) => {
    const client = df.getClient(context);
    const body = await request.json();
    switch (body.op) {
      case "start": {
        const id = await client.startNew(body.name, { instanceId: body.instanceId, input: body.input });
        return client.createCheckStatusResponse(request, id);
      }
      case "raise":
        await client.raiseEvent(body.instanceId, body.eventName, body.data);
        return { jsonBody: { raised: true } };
      case "status": {
        try {
          return { jsonBody: await client.getStatus(body.instanceId, { showInput: true }) };
        } catch (err) {
          return { status: 404, jsonBody: { error: err.message } };
        }
      }
      case "statusBy": {
        const list = await client.getStatusBy({ runtimeStatus: body.runtimeStatus });
        return { jsonBody: list.map((s) => s.instanceId).sort() };
      }
      case "statusAll":
        return { jsonBody: (await client.getStatusAll()).length };
      case "terminate":
        await client.terminate(body.instanceId, body.reason);
        return { jsonBody: { terminated: true } };
      case "purge":
        return { jsonBody: await client.purgeInstanceHistory(body.instanceId) };
      case "purgeBy":
        return { jsonBody: await client.purgeInstanceHistoryBy({ createdTimeFrom: new Date(0), runtimeStatus: body.runtimeStatus }) };
      case "payload":
        return { jsonBody: client.createHttpManagementPayload(body.instanceId) };
      default:
        return { status: 400, jsonBody: { error: `unknown op ${body.op}` } };
    }
  },
});
