#!/usr/bin/env node
// The silo job's command is `node train.js ...` with examples/fraud as its working directory; the
// trainer itself is TypeScript (train.ts -> trainer.ts), compiled by `npm run build` into dist/.
"use strict";
const path = require("path");
const compiled = path.join(__dirname, "..", "..", "dist", "examples", "fraud", "train.js");
let trainer;
try {
  trainer = require(compiled);
} catch (err) {
  if (err && err.code === "MODULE_NOT_FOUND" && String(err.message).includes(compiled)) {
    console.error(`fraud trainer: ${compiled} is missing; run "npm run build" in ${path.join(__dirname, "..", "..")} first`);
    process.exit(2);
  }
  throw err;
}
trainer.main(process.argv.slice(2)).then((code) => (process.exitCode = code));
