// Small app for the runtime tests, written only against the public v4 / durable-functions v3 APIs.
const { app } = require("@azure/functions");
const df = require("durable-functions");

df.app.activity("echo", { handler: (input) => input });
df.app.activity("double", { handler: (n) => n * 2 });
df.app.activity("fails", {
  handler: (input) => {
    throw new Error(`boom ${input}`);
  },
});

df.app.orchestration("chain", function* (context) {
  const a = yield context.df.callActivity("double", context.df.getInput());
  const b = yield context.df.callActivity("double", a);
  return { a, b };
});

app.http("hello", {
  route: "hello/{name}",
  methods: ["GET"],
  handler: async (request) => ({ status: 200, jsonBody: { hello: request.params.name, q: request.query.get("q") } }),
});

app.http("startChain", {
  route: "start/{n}",
  extraInputs: [df.input.durableClient()],
  handler: async (request, context) => {
    const client = df.getClient(context);
    const id = await client.startNew("chain", { input: Number(request.params.n) });
    return client.createCheckStatusResponse(request, id);
  },
});
