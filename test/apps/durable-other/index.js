// A second app: proves several apps can be loaded into one process with separate registries.
const df = require("durable-functions");
df.app.activity("shout", { handler: (s) => String(s).toUpperCase() });
