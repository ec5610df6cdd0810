const { app } = require("@azure/functions");
const df = require("durable-functions");

app.http("httpStart", {
  route: "orchestrators/{orchestratorName}",
  extraInputs: [df.input.durableClient()],
  handler: async (request, context) => {
    const client = df.getClient(context);
    const instanceId = await client.startNew(request.params.orchestratorName, { input: await request.text() });
    return client.createCheckStatusResponse(request, instanceId);
  },
});
