/**
 * Apps given the way the Node worker finds them: a folder whose package.json `main` is a glob
 * (`dist/functions/*.js`, the durable-functions samples' layout) or a folder, as well as a .js file.
 */
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { expandGlob, resolveAppEntries } from "../lib/runtime/appEntry";
import { startLocalHost, type LocalHost } from "../lib/runtime/host";

const SAMPLES = path.join(__dirname, "apps", "samples-style");
const FOLDER_MAIN = path.join(__dirname, "apps", "folder-main");
const SETTINGS = { FLO_FUNCTION_KEY: "entry-function-key", FLO_MASTER_KEY: "entry-master-key" };

test("a `main` glob resolves to every matching file, sorted; a folder main to its index.js", () => {
  expect(resolveAppEntries(SAMPLES)).toEqual({
    files: ["helloOrchestrator.js", "httpStart.js", "sayHello.js"].map((f) => path.join(SAMPLES, "dist", "functions", f)),
    appRoot: SAMPLES,
  });
  expect(resolveAppEntries(FOLDER_MAIN)).toEqual({ files: [path.join(FOLDER_MAIN, "lib", "index.js")], appRoot: FOLDER_MAIN });
  const file = path.join(FOLDER_MAIN, "lib", "index.js");
  expect(resolveAppEntries(file)).toEqual({ files: [file] });
  expect(expandGlob(SAMPLES, "dist/**/say*.{js,cjs}")).toEqual([path.join(SAMPLES, "dist", "functions", "sayHello.js")]);
});

test("a glob that matches nothing, a main that resolves to nothing, and a bad main are clear errors", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "flo-entry-"));
  try {
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ main: "dist/src/functions/*.js" }));
    expect(() => resolveAppEntries(dir)).toThrow(`${path.join(dir, "package.json")}: main: the glob "dist/src/functions/*.js" matches no .js file under ${dir} (is the app built?)`);
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ main: "dist/index.js" }));
    expect(() => resolveAppEntries(dir)).toThrow(`${path.join(dir, "package.json")}: main: "dist/index.js" resolves to no file (${path.join(dir, "dist", "index.js")}; is the app built?)`);
    fs.writeFileSync(path.join(dir, "package.json"), JSON.stringify({ main: 3 }));
    expect(() => resolveAppEntries(dir)).toThrow(`${path.join(dir, "package.json")}: main: expected a string (path or glob), got 3`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe("running them", () => {
  let host: LocalHost | undefined;
  afterEach(async () => {
    await host?.stop();
    host = undefined;
  });

  test("the samples-style app (main: dist/functions/*.js) loads unchanged and runs across its files", async () => {
    host = await startLocalHost({ appEntry: SAMPLES, port: 0, storage: "memory", settings: SETTINGS, log: () => undefined });
    expect([...host.registry.functions.keys()].sort()).toEqual(["helloOrchestrator", "httpStart", "sayHello"]);
    expect(host.hostConfig.hubName).toBe("SamplesStyle"); // host.json next to package.json
    const res = await fetch(`${host.url}/api/orchestrators/helloOrchestrator`, { method: "POST" });
    expect(res.status).toBe(202);
    const { id } = (await res.json()) as { id: string };
    const done = await host.engine.waitForStatus(id, (s) => s.runtimeStatus === "Completed" || s.runtimeStatus === "Failed", { timeoutMs: 15_000 });
    expect(done).toMatchObject({ runtimeStatus: "Completed", output: ["Hello, Tokyo!", "Hello, Seattle!", "Hello, Cairo!"] });
  });

  test("an app whose main is a folder loads its index.js", async () => {
    host = await startLocalHost({ appEntry: FOLDER_MAIN, port: 0, storage: "memory", settings: SETTINGS, log: () => undefined });
    const id = await host.engine.startNew("shouter", { input: "quiet" });
    const done = await host.engine.waitForStatus(id, (s) => s.runtimeStatus === "Completed" || s.runtimeStatus === "Failed", { timeoutMs: 15_000 });
    expect(done).toMatchObject({ runtimeStatus: "Completed", output: "QUIET" });
  });
});
