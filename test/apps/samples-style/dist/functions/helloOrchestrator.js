// Laid out like durable-functions' samples-ts output: one file per function group, found through
// package.json's `main` glob. This file calls an activity registered in another file.
const df = require("durable-functions");

df.app.orchestration("helloOrchestrator", function* (context) {
  const outputs = [];
  for (const city of ["Tokyo", "Seattle", "Cairo"]) outputs.push(yield context.df.callActivity("sayHello", city));
  return outputs;
});
