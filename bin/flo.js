#!/usr/bin/env node
"use strict";
// Loads the bundled CLI (dist/cli.js, see scripts/bundleCli.js) with the V8 code cache the build
// recorded for it: V8 checks the cache against the source and its own version and flags, and
// compiles from source when it does not match.
const fs = require("node:fs");
const path = require("node:path");
const vm = require("node:vm");
const Module = require("node:module");

const file = path.join(__dirname, "..", "dist", "cli.js");
const cacheFile = `${file}.v8cache`;
const writeCache = process.env.FLO_CLI_WRITE_CODE_CACHE === "1";
let cachedData;
if (!writeCache) {
  try {
    cachedData = fs.readFileSync(cacheFile);
  } catch {
    // no cache: compile from source
  }
}
let source;
try {
  source = fs.readFileSync(file, "utf8");
} catch (err) {
  console.error(`flo: cannot read ${file} (${err.code ?? err.message}): run \`npm run build\` first`);
  process.exit(1);
}
const script = new vm.Script(Module.wrap(source), { filename: file, cachedData });
const cli = new Module(file, module);
cli.filename = file;
require.cache[file] = cli;
script.runInThisContext().call(cli.exports, cli.exports, Module.createRequire(file), cli, file, path.dirname(file));
cli.loaded = true;
if (writeCache) process.on("exit", () => fs.writeFileSync(cacheFile, script.createCachedData()));

cli.exports.main(process.argv).catch((err) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
