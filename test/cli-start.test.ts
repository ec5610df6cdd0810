import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { promisify } from "node:util";

// Spawns the compiled CLI (needs `npm run build`, which `npm test` runs first).
const repo = path.resolve(__dirname, "..");
const run = promisify(execFile);

/** Runs `bin/flo.js <args>` and returns its stdout and every module file it loaded. */
async function floLoading(args: string[]): Promise<{ stdout: string; loaded: string[] }> {
  const script = [
    `process.on("exit", () => process.stderr.write("\\nLOADED " + JSON.stringify(Object.keys(require.cache))));`,
    `process.argv = [process.argv[0], "flo", ...${JSON.stringify(args)}];`,
    `require("./bin/flo.js");`,
  ].join("\n");
  const { stdout, stderr } = await run(process.execPath, ["-e", script], { cwd: repo });
  const marker = stderr.lastIndexOf("LOADED ");
  if (marker < 0) throw new Error(`no module list on stderr: ${stderr.slice(0, 200)}`);
  const loaded = (JSON.parse(stderr.slice(marker + "LOADED ".length)) as string[]).map((f) => path.relative(repo, f));
  return { stdout, loaded };
}

// Modules that only running a command needs; each costs tens to hundreds of ms to load.
const heavy = [
  /node_modules\/@azure\//,
  /node_modules\/zod\//,
  /node_modules\/@tensorflow\//,
  /node_modules\/azurite\//,
  /node_modules\/yaml\//,
  /node_modules\/cli-progress\//,
  /^dist\/lib\/runtime\/host\.js$/,
  /^dist\/lib\/aggregation\/engine\.js$/,
];

/** Files bundled into dist/cli.js, as the build's metafile lists them (scripts/bundleCli.js). */
function bundledInputs(): string[] {
  return (JSON.parse(readFileSync(path.join(repo, "dist", "cli.meta.json"), "utf8")) as { inputs: string[] }).inputs;
}

describe("flo start: help loads only what it prints", () => {
  test.each([[["--help"]], [["aggregate", "--help"]], [["run", "--help"]], [["host", "--help"]]])("flo %j loads no SDK, runtime, schema or engine module", async (args) => {
    const { stdout, loaded } = await floLoading(args);
    expect(stdout).toContain("Usage: flo");
    // Every start runs the one bundled file; the other commands' modules load from dist/lib/cli/ when asked for.
    expect(loaded).toContain(path.join("dist", "cli.js"));
    expect(loaded.filter((file) => heavy.some((pattern) => pattern.test(file)))).toEqual([]);
    if (args[0] === "--help") expect(loaded.filter((file) => /^dist\/lib\/cli\/(host|run)\.js$/.test(file))).toEqual([]);
  });

  test("the bundle holds main, aggregate's path, commander and zod, and nothing heavy besides", () => {
    const inputs = bundledInputs();
    for (const needed of ["dist/lib/cli/main.js", "dist/lib/cli/aggregate.js", "node_modules/commander/index.js"]) expect(inputs).toContain(needed);
    expect(inputs.some((file) => file.startsWith("node_modules/zod/"))).toBe(true);
    // aggregate's strategy flags are derived from zod schemas; its engine is bundled but initialized
    // only when the command runs (a lazy import).
    const allowed = [/node_modules\/zod\//, /^dist\/lib\/aggregation\/engine\.js$/];
    expect(inputs.filter((file) => heavy.some((pattern) => pattern.test(file)) && !allowed.some((pattern) => pattern.test(file)))).toEqual([]);
    expect(inputs.filter((file) => /^dist\/lib\/cli\/(host|run|check|submit|siloKeygen)\.js$/.test(file))).toEqual([]);
  });

  test("the build's V8 code cache is accepted by this Node, started as bin/flo.js starts it", async () => {
    // A plain `node` process: V8 rejects a cache made under other flags, and jest's workers may have some.
    const script = [
      `const { readFileSync } = require("node:fs");`,
      `const { Script } = require("node:vm");`,
      `const Module = require("node:module");`,
      `const file = "dist/cli.js";`,
      `const script = new Script(Module.wrap(readFileSync(file, "utf8")), { filename: file, cachedData: readFileSync(file + ".v8cache") });`,
      `console.log(JSON.stringify({ rejected: script.cachedDataRejected }));`,
    ].join("\n");
    const { stdout } = await run(process.execPath, ["-e", script], { cwd: repo });
    expect(JSON.parse(stdout)).toEqual({ rejected: false });
  });

  test("the help texts stay complete: every command, and aggregate's strategy names and flags", async () => {
    const top = (await floLoading(["--help"])).stdout;
    for (const command of ["aggregate", "host", "run"]) expect(top).toMatch(new RegExp(`^\\s+${command} `, "m"));
    const aggregate = (await floLoading(["aggregate", "--help"])).stdout;
    for (const flag of ["--out <file>", "--strategy <name>", "--min-updates <n>", "--chunk-elements <n>", "--global", "--state-in", "--state-out"]) expect(aggregate).toContain(flag);
    expect(aggregate.replace(/\s+/g, " ")).toMatch(/aggregation strategy \([a-z-]+(, [a-z-]+)+\) \(default: "fedavg"\)/);
    for (const strategy of ["fedavg", "krum", "trimmed-mean"]) expect(aggregate).toContain(strategy);
    const runHelp = (await floLoading(["run", "--help"])).stdout;
    for (const flag of ["--out <dir>", "--data <dir>", "--port <port>", "--baselines <file>"]) expect(runHelp).toContain(flag);
    const host = (await floLoading(["host", "--help"])).stdout;
    for (const flag of ["--port <port>", "--data <dir>", "--settings <file>", "--storage <mode>"]) expect(host).toContain(flag);
  });

  test("running a command still loads what it needs: a bad spec fails with the spec's own error", async () => {
    const failure = await run(process.execPath, [path.join(repo, "bin", "flo.js"), "run", "package.json"], { cwd: repo }).then(
      () => undefined,
      (err: { code?: number; stderr?: string }) => err,
    );
    expect(failure?.code).toBe(2);
    expect(failure?.stderr).toContain("invalid federation spec (package.json)");
  });
});
