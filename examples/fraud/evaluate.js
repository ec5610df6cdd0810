#!/usr/bin/env node
// The evaluation job's command is `node evaluate.js ...` with examples/fraud as its working directory;
// the evaluator itself is TypeScript (evaluator.ts), compiled by `npm run build` into dist/.
"use strict";
const path = require("path");
const compiled = path.join(__dirname, "..", "..", "dist", "examples", "fraud", "evaluator.js");
let evaluator;
try {
  evaluator = require(compiled);
} catch (err) {
  if (err && err.code === "MODULE_NOT_FOUND" && String(err.message).includes(compiled)) {
    console.error(`fraud evaluator: ${compiled} is missing; run "npm run build" in ${path.join(__dirname, "..", "..")} first`);
    process.exit(2);
  }
  throw err;
}
evaluator.main(process.argv.slice(2)).then((code) => (process.exitCode = code));
