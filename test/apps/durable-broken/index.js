// An app whose entry module throws while registering (tests the loader's error).
const df = require("durable-functions");
df.app.activity("fine", { handler: () => 1 });
throw new Error("missing setting FLO_SOMETHING");
