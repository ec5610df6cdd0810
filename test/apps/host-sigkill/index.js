// App for the SIGKILL-and-restart test: a chain of slow activities with a durable timer in the
// middle. Its output depends only on its input, so an interrupted run must equal an uninterrupted one.
const { app } = require("@azure/functions");
const df = require("durable-functions");

df.app.activity("slowStep", {
  handler: async ({ step, acc }) => {
    await new Promise((resolve) => setTimeout(resolve, 250));
    return (acc * 31 + step * 7 + 3) % 1000003;
  },
});

df.app.orchestration("longChain", function* (context) {
  const { steps, seed } = context.df.getInput();
  let acc = seed;
  const trail = [];
  for (let step = 0; step < steps; step++) {
    acc = yield context.df.callActivity("slowStep", { step, acc });
    trail.push(acc);
    context.df.setCustomStatus({ done: step + 1 });
    if (step === Math.floor(steps / 2)) {
      yield context.df.createTimer(new Date(context.df.currentUtcDateTime.getTime() + 300));
    }
  }
  return { steps, acc, trail };
});

app.http("start", {
  route: "start/{instanceId}",
  methods: ["POST"],
  extraInputs: [df.input.durableClient()],
  handler: async (request, context) => {
    const client = df.getClient(context);
    const id = await client.startNew("longChain", { instanceId: request.params.instanceId, input: await request.json() });
    return client.createCheckStatusResponse(request, id);
  },
});
