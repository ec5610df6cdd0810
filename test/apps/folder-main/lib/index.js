// package.json `main` names this folder: Node resolves it to lib/index.js.
const df = require("durable-functions");

df.app.activity("shout", { handler: (text) => String(text).toUpperCase() });
df.app.orchestration("shouter", function* (context) {
  return yield context.df.callActivity("shout", context.df.getInput());
});
