/**
 * Trust boundary: what a silo operator or an API caller puts in files and names never reaches other
 * files, never vanishes silently, and never comes back quoted in an error.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runAggregate } from "../../lib/cli/aggregate";
import { encodeFloats } from "../../lib/models/dtypes";
import { fileSink, fileSource, FileBytesError } from "../../lib/models/fileBytes";
import { planSafetensorsLayout, readSafetensorsHeader, SafetensorsError, writeSafetensors } from "../../lib/models/safetensors";
import { parseSpec, SpecError } from "../../lib/spec";
import { memorySource, rawSafetensors } from "../fixtures/memoryBytes";

const PASSWD_LIKE = "root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n";

describe("tensor names JavaScript treats specially", () => {
  test.each(["__proto__", "constructor", "prototype"])("a tensor named %s is rejected by the reader with its own code", async (name) => {
    const file = rawSafetensors({ [name]: { dtype: "F32", shape: [1], data_offsets: [0, 4] } }, 4, `{"${name}":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`);
    const error = await readSafetensorsHeader(memorySource("silo/model.safetensors", file)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SafetensorsError);
    expect(error).toMatchObject({ code: "RESERVED_NAME", tensor: name });
    expect((error as Error).message).toContain("silo/model.safetensors");
  });

  test("the writer refuses them too, and __metadata__ keys land on a null-prototype object", async () => {
    expect(() => planSafetensorsLayout([{ name: "__proto__", dtype: "F32", shape: [1] }])).toThrow(expect.objectContaining({ code: "RESERVED_NAME" }));
    const file = rawSafetensors(undefined, 0, `{"__metadata__":{"__proto__":"x","format":"pt"}}`);
    const header = await readSafetensorsHeader(memorySource("m", file));
    expect(Object.getPrototypeOf(header.metadata)).toBeNull();
    expect(Object.keys(header.metadata!)).toEqual(["__proto__", "format"]);
  });

  test("attack: an update with a __proto__ tensor is excluded from the round with the reason (it used to vanish from the output header)", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-sec-names-"));
    try {
      for (const [silo, value] of [
        ["east", 1],
        ["west", 3],
      ] as const) {
        await fs.mkdir(path.join(dir, silo));
        await writeSafetensors(fileSink(path.join(dir, silo, "model.safetensors")), [{ name: "w", dtype: "F32", shape: [1], data: encodeFloats([value], "F32") }]);
        await fs.writeFile(path.join(dir, silo, "metrics.json"), JSON.stringify({ num_examples: 1 }));
      }
      await fs.mkdir(path.join(dir, "evil"));
      const evil = rawSafetensors(undefined, encodeFloats([5, 7], "F32"), `{"__proto__":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`);
      await fs.writeFile(path.join(dir, "evil", "model.safetensors"), evil);
      await fs.writeFile(path.join(dir, "evil", "metrics.json"), JSON.stringify({ num_examples: 1 }));
      const lines: string[] = [];
      const code = await runAggregate(
        { out: path.join(dir, "global.safetensors"), strategy: "fedavg", minUpdates: 2, updateDirs: ["east", "west", "evil"].map((d) => path.join(dir, d)) },
        { out: (l) => lines.push(l), err: (l) => lines.push(l) },
      );
      expect(code).toBe(0);
      expect(lines.find((l) => l.startsWith("excluded  evil"))).toMatch(/tensor "__proto__": tensor name "__proto__" is reserved .*\[RESERVED_NAME\]/);
      expect(lines.at(-1)).toBe("aggregated 2 of 3 updates with fedavg (2 examples)");
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});

describe("model files: no links followed, no content echoed", () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-sec-files-"));
    await fs.writeFile(path.join(dir, "secret.txt"), PASSWD_LIKE);
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("attack: a model path that is a symlink to another file is refused, naming the file and the rule", async () => {
    const link = path.join(dir, "model.safetensors");
    await fs.symlink(path.join(dir, "secret.txt"), link);
    const source = fileSource(link);
    const error = await readSafetensorsHeader(source).catch((e: unknown) => e);
    await source.close?.();
    expect(error).toBeInstanceOf(FileBytesError);
    expect((error as Error).message).toBe(`${link}: is a symbolic link; model and update files are opened without following links`);
  });

  test("attack: a non-model file's bytes never appear in the error (the header length used to decode to root:x:0)", async () => {
    const file = path.join(dir, "secret.txt");
    const source = fileSource(file);
    const error = (await readSafetensorsHeader(source).catch((e: unknown) => e)) as SafetensorsError;
    await source.close?.();
    expect(error).toBeInstanceOf(SafetensorsError);
    expect(error.code).toBe("HEADER_TOO_LARGE");
    const declared = Buffer.from(PASSWD_LIKE).readBigUInt64LE(0).toString();
    expect(error.message).not.toContain(declared);
    expect(error.message).not.toMatch(/root|daemon|bash/);
  });

  test("a header that is not JSON is reported by position only, never quoted", async () => {
    const text = "secret-token=abc123";
    const error = (await readSafetensorsHeader(memorySource("f", rawSafetensors(undefined, 0, text))).catch((e: unknown) => e)) as SafetensorsError;
    expect(error.code).toBe("BAD_JSON");
    expect(error.message).not.toMatch(/secret|token|abc123/);
    const notObject = (await readSafetensorsHeader(memorySource("f", rawSafetensors(undefined, 0, '"hunter2-password"'))).catch((e: unknown) => e)) as SafetensorsError;
    expect(notObject.code).toBe("BAD_HEADER");
    expect(notObject.message).toContain("got a string of 16 characters");
    expect(notObject.message).not.toContain("hunter2");
  });
});

describe("specs", () => {
  test("attack: a JSON spec with a duplicate key is rejected like YAML (JSON.parse would keep the last one)", () => {
    const text = '{"rounds": 1,\n "rounds": 50}';
    const error = (() => {
      try {
        parseSpec(text, { format: "json" });
      } catch (e) {
        return e;
      }
    })() as SpecError;
    expect(error).toBeInstanceOf(SpecError);
    expect(error.kind).toBe("syntax");
    expect(error.issues).toEqual([expect.objectContaining({ expected: "each key once per object", got: '"rounds" a second time', line: 2, column: 2 })]);
    expect(() => parseSpec("rounds: 1\nrounds: 50\n", { format: "yaml" })).toThrow(SpecError);
  });
});
