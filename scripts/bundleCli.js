#!/usr/bin/env node
"use strict";
/**
 * Build step after `tsc`: bundles the `flo` command line's start path (dist/lib/cli/main.js, the
 * `aggregate` command and what it imports, commander and zod) into one file, dist/cli.js, then runs
 * `flo aggregate --help` once to record V8's code cache for it (dist/cli.js.v8cache) and writes the list of its inputs (dist/cli.meta.json). Loading ~140
 * files (zod alone is 95 files, 1 MB) costs ~100 ms; one file with its compiled code cached ~30 ms.
 * The other commands (run, host, check, submit, silo) stay separate modules under dist/lib/cli/,
 * loaded from the bundle only when their command runs; other packages load from node_modules.
 */
const { execFileSync } = require("node:child_process");
const fs = require("node:fs");
const path = require("node:path");
const esbuild = require("esbuild");

const root = path.resolve(__dirname, "..");
const dist = path.join(root, "dist");
const mainFile = path.join(dist, "lib", "cli", "main.js");
/** Packages bundled into dist/cli.js: the ones every `flo` start loads. */
const BUNDLED_PACKAGES = new Set(["commander", "zod"]);
/** The one command bundled with main: its help is the start-time target (issue #16). */
const BUNDLED_COMMAND = "./aggregate";

const keepOut = {
  name: "flo-cli-externals",
  setup(build) {
    build.onResolve({ filter: /.*/ }, (args) => {
      if (args.kind === "entry-point") return undefined;
      if (args.path.startsWith("node:")) return { path: args.path, external: true };
      if (args.path.startsWith(".")) {
        // main.js's other commands: left as requires of their compiled modules, relative to dist/cli.js.
        if (args.importer === mainFile && args.path !== BUNDLED_COMMAND) {
          const target = path.relative(dist, path.resolve(path.dirname(mainFile), args.path));
          return { path: `./${target.split(path.sep).join("/")}.js`, external: true };
        }
        return undefined;
      }
      const name = args.path.startsWith("@") ? args.path.split("/").slice(0, 2).join("/") : args.path.split("/")[0];
      return BUNDLED_PACKAGES.has(name) ? undefined : { path: args.path, external: true };
    });
  },
};

async function main() {
  const outfile = path.join(dist, "cli.js");
  const result = await esbuild.build({
    entryPoints: [mainFile],
    outfile,
    bundle: true,
    platform: "node",
    format: "cjs",
    target: "node20",
    logLevel: "warning",
    metafile: true,
    plugins: [keepOut],
  });
  // What went into the bundle, for test/cli-start.test.ts.
  fs.writeFileSync(path.join(dist, "cli.meta.json"), JSON.stringify({ inputs: Object.keys(result.metafile.inputs) }, null, 1));
  execFileSync(process.execPath, [path.join(root, "bin", "flo.js"), "aggregate", "--help"], {
    env: { ...process.env, FLO_CLI_WRITE_CODE_CACHE: "1" },
    stdio: ["ignore", "ignore", "inherit"],
  });
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
