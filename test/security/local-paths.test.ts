/**
 * Trust boundary: an API caller names local files in a spec (the initial model). Those paths stay
 * inside the base folder (or the folders the host's settings allow), links do not lead out of it,
 * and the answer never quotes what the named file holds. Real HTTP requests to a real `flo host`.
 */
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { confineLocalPath, LocalPathError, parseAllowedRoots } from "../../lib/storage/localPaths";
import { startFloHost, toySpec, TOY_TEAM, writeToyData, writeToyModel, type FloHost } from "../helpers/flo";

const SECRET = "root:x:0:0:root:/root:/bin/bash\n";

describe("confineLocalPath", () => {
  let base: string;
  let outside: string;
  beforeAll(() => {
    base = mkdtempSync(join(tmpdir(), "flo-base-"));
    outside = mkdtempSync(join(tmpdir(), "flo-outside-"));
    mkdirSync(join(base, "models"));
    symlinkSync(outside, join(base, "escape"));
  });
  afterAll(() => {
    rmSync(base, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  test("relative paths inside the base resolve; .. and absolute paths elsewhere are refused with the field and the setting", () => {
    expect(confineLocalPath("models/m.safetensors", { baseDir: base }, "initialModel")).toBe(join(base, "models", "m.safetensors"));
    expect(confineLocalPath(join(base, "m.safetensors"), { baseDir: base }, "initialModel")).toBe(join(base, "m.safetensors"));
    for (const value of ["../m.safetensors", "/etc/passwd", join(outside, "m.safetensors")]) {
      expect(() => confineLocalPath(value, { baseDir: base }, "initialModel")).toThrow(LocalPathError);
      expect(() => confineLocalPath(value, { baseDir: base }, "initialModel")).toThrow(/^initialModel: local path ".*" is outside the base folder .*FLO_LOCAL_ALLOWED_PATHS/);
    }
  });

  test("a folder link inside the base that leads out of it counts as outside; an allowed root lets it in", () => {
    expect(() => confineLocalPath("escape/m.safetensors", { baseDir: base }, "initialModel")).toThrow(LocalPathError);
    expect(confineLocalPath("escape/m.safetensors", { baseDir: base, allowedRoots: [outside] }, "initialModel")).toBe(join(base, "escape", "m.safetensors"));
    expect(confineLocalPath(join(outside, "a", "b.safetensors"), { baseDir: base, allowedRoots: [outside] }, "x")).toBe(join(outside, "a", "b.safetensors"));
  });

  test("FLO_LOCAL_ALLOWED_PATHS takes absolute folders only", () => {
    expect(parseAllowedRoots(" /srv/models , /data ")).toEqual(["/srv/models", "/data"]);
    expect(parseAllowedRoots("")).toEqual([]);
    expect(() => parseAllowedRoots("models")).toThrow('FLO_LOCAL_ALLOWED_PATHS: expected absolute folders separated by commas, got "models"');
  });
});

describe("initialModel through the API of a real flo host", () => {
  let flo: FloHost;
  let outside: string;
  beforeAll(async () => {
    flo = await startFloHost({ settings: { FLO_LOCAL_COMPUTE: "enabled" } });
    outside = mkdtempSync(join(tmpdir(), "flo-secret-"));
    writeFileSync(join(outside, "passwd"), SECRET);
    writeToyModel(join(outside, "model.safetensors"), [0, 0, 0, 0]);
    writeToyData(flo.dir, TOY_TEAM);
    symlinkSync(join(outside, "passwd"), join(flo.dir, "link.safetensors"));
    symlinkSync(outside, join(flo.dir, "escape"));
  });
  afterAll(async () => {
    await flo?.stop();
    rmSync(outside, { recursive: true, force: true });
  });

  test.each([
    ["an absolute path outside the base folder", () => join(outside, "model.safetensors"), /^initialModel: local path ".*model\.safetensors" is outside the base folder .*FLO_LOCAL_ALLOWED_PATHS/],
    ["a path climbing out with ..", () => "../../../../../../tmp/model.safetensors", /^initialModel: local path "\.\.\/.*" is outside the base folder/],
    ["a folder link inside the base leading out", () => "escape/model.safetensors", /^initialModel: local path "escape\/model\.safetensors" is outside the base folder/],
    ["a file link inside the base", () => "link.safetensors", /^initialModel: .*link\.safetensors: is a symbolic link; model and update files are opened without following links/],
  ])("attack: %s is a 400 naming initialModel and the rule, quoting nothing of the file", async (_label, location, detail) => {
    const res = await flo.start(toySpec(`paths-${Math.random().toString(36).slice(2, 8)}`, TOY_TEAM, { initialModel: location() }));
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(detail);
    expect(JSON.stringify(res.body)).not.toMatch(/root:x|\/bin\/bash/);
  });
});
