/**
 * Code folders for azureml silos (hash, ignore rules, content-addressed upload decision) and the
 * example specs: every spec under examples/ parses and its local code folder exists (the invalid ones fail).
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createHash } from "node:crypto";
import { azureMlCodeOf, hashCodeFolder, isCodeReference, MAX_CODE_BYTES, uploadedCodeDigest, uploadSpecCode, type CodeUploader } from "../lib/compute/azureml/code";
import { loadSpecFile, SpecError } from "../lib/spec";
import { setupSecureDemo } from "../examples/fraud/secureSetup";

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "flo-code-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

test("the digest covers names and contents of the files not ignored; .amlignore wins over .gitignore", () => {
  const base = { "train.py": "print(1)", "lib/util.py": "x = 1" };
  const a = hashCodeFolder(folder(base));
  expect(a.files).toEqual(["lib/util.py", "train.py"]);
  expect(a.digest).toMatch(/^[0-9a-f]{64}$/);
  // Same content elsewhere: same digest. Changed content or a renamed file: another digest.
  expect(hashCodeFolder(folder(base)).digest).toBe(a.digest);
  expect(hashCodeFolder(folder({ ...base, "train.py": "print(2)" })).digest).not.toBe(a.digest);
  expect(hashCodeFolder(folder({ "main.py": "print(1)", "lib/util.py": "x = 1" })).digest).not.toBe(a.digest);

  const ignored = hashCodeFolder(
    folder({ ...base, ".gitignore": "data/\n*.ckpt\n/build\n", "data/big.csv": "1,2", "model.ckpt": "w", "build/out.js": "", "lib/build/keep.py": "", ".git/HEAD": "ref" }),
  );
  expect(ignored.files).toEqual([".gitignore", "lib/build/keep.py", "lib/util.py", "train.py"]);
  const aml = hashCodeFolder(folder({ ...base, ".gitignore": "lib/\n", ".amlignore": "**/*.csv\n", "data/big.csv": "1,2" }));
  expect(aml.files).toEqual([".amlignore", ".gitignore", "lib/util.py", "train.py"]);

  expect(() => hashCodeFolder(join(tmpdir(), "no-such-flo-code"))).toThrow(/training\.code: expected an existing code folder/);
  expect(() => hashCodeFolder(folder({ ".amlignore": "*\n" }))).toThrow("Invalid Azure ML job setting training.code: expected a code folder with at least one file not ignored");
});

/** A CodeUploader over a map, recording what it was asked. */
function memoryUploader() {
  const stored = new Map<string, string[]>();
  const calls: string[] = [];
  const uploader: CodeUploader = {
    find(digest) {
      calls.push(`find ${digest}`);
      return Promise.resolve(stored.has(digest) ? `https://acct.blob.core.windows.net/flo/code/${digest}/` : undefined);
    },
    upload(folder) {
      calls.push(`upload ${folder.digest}`);
      stored.set(
        folder.digest,
        folder.contents.map((f) => f.path),
      );
      return Promise.resolve(`https://acct.blob.core.windows.net/flo/code/${folder.digest}/`);
    },
  };
  return { uploader, stored, calls };
}

test("uploadSpecCode leaves registered assets, URIs and specs without azureml silos alone", async () => {
  const { uploader, calls } = memoryUploader();
  const azureml = { compute: { type: "azureml" } };
  for (const code of [
    "azureml:flo-train:3",
    "azureml:flo-train@latest",
    "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w/codes/c/versions/1",
    "https://acct.blob.core.windows.net/models/code/x/",
  ]) {
    const spec = { silos: [azureml], training: { code } };
    expect((await uploadSpecCode(spec, uploader, { baseDir: "/" })).spec).toBe(spec);
  }
  const local = { silos: [{ compute: { type: "local" } }], training: { code: "trainer" } };
  expect((await uploadSpecCode(local, uploader, { baseDir: "/" })).spec).toBe(local);
  expect(calls).toEqual([]);
  expect(uploadedCodeDigest(`https://acct.blob.core.windows.net/models/code/${"a".repeat(64)}/`)).toBe("a".repeat(64));
  expect(uploadedCodeDigest("https://acct.blob.core.windows.net/models/code/abc/")).toBeUndefined();
});

test("a mixed spec keeps training.code for local silos and gets training.uploadedCode for azureml silos, uploaded once", async () => {
  const project = folder({ "trainer/train.py": "print(1)", "trainer/.amlignore": "*.csv\n", "trainer/big.csv": "1,2" });
  const { uploader, stored, calls } = memoryUploader();
  const spec: { silos: { compute: { type: string } }[]; training: { code: string; uploadedCode?: string } } = {
    silos: [{ compute: { type: "local" } }, { compute: { type: "azureml" } }],
    training: { code: "trainer" },
  };
  const first = await uploadSpecCode(spec, uploader, { baseDir: project });
  const again = await uploadSpecCode(spec, uploader, { baseDir: project });
  const digest = hashCodeFolder(join(project, "trainer")).digest;
  expect(first.spec.training).toEqual({ code: "trainer", uploadedCode: `https://acct.blob.core.windows.net/flo/code/${digest}/` });
  expect({ first: first.code?.uploaded, again: again.code?.uploaded, files: stored.get(digest) }).toEqual({ first: true, again: false, files: [".amlignore", "train.py"] });
  expect(calls).toEqual([`find ${digest}`, `upload ${digest}`, `find ${digest}`]);
  // The digest is the documented one: sha256 over "path NUL sha256(content) LF", sorted by path.
  const manual = createHash("sha256")
    .update(`.amlignore\u0000${createHash("sha256").update("*.csv\n").digest("hex")}\ntrain.py\u0000${createHash("sha256").update("print(1)").digest("hex")}\n`)
    .digest("hex");
  expect(digest).toBe(manual);

  // Each silo's job request: local silos run the folder, azureml silos the uploaded copy.
  expect(azureMlCodeOf(first.spec.training)).toBe(first.spec.training.uploadedCode);
  expect(azureMlCodeOf({ code: "azureml:flo-train:3" })).toBe("azureml:flo-train:3");
});

test("a code folder over the size limit or holding flo's manifest name is refused with the field", () => {
  expect(() => hashCodeFolder(folder({ "a.bin": "x".repeat(MAX_CODE_BYTES + 1) }))).toThrow(
    /training\.code: expected a code folder of at most 5000 files and 32 MiB \(leave data out with \.amlignore, or register the code with az ml code create\), got .* with 1 files, 33554433 bytes/,
  );
  expect(() => hashCodeFolder(folder({ "train.py": "", ".flo-code.json": "{}" }))).toThrow(/training\.code: expected a code folder without a top-level \.flo-code\.json/);
});

test("every spec under examples/ parses, its local code folder exists where flo submit and local silos look; the invalid examples fail with spec errors", async () => {
  const root = join(__dirname, "..");
  // Folders the demos write and .gitignore leaves out (keys, generated data): not examples.
  const ignored = new Set(
    readFileSync(join(root, ".gitignore"), "utf8")
      .split("\n")
      .filter((line) => line.startsWith("examples/"))
      .map((line) => line.replace(/\/$/, "")),
  );
  const specs = (dir: string): string[] =>
    readdirSync(join(root, dir), { withFileTypes: true }).flatMap((entry) => {
      const path = `${dir}/${entry.name}`;
      if (entry.isDirectory()) return entry.name === "invalid" || ignored.has(path) ? [] : specs(path);
      return /\.(ya?ml|json)$/.test(entry.name) && !/package(-lock)?\.json$/.test(entry.name) ? [path] : [];
    });
  const valid = specs("examples");
  expect(valid).toEqual(expect.arrayContaining(["examples/specs/azureml-robust.yaml", "examples/fraud/federation.yaml"]));
  // The secure demo's spec is a template: its setup fills in the silos' public keys (made per machine) in a copy.
  const secureDemo = "examples/fraud/secure.yaml";
  expect(valid).toContain(secureDemo);
  const filledSecureDemo = join(mkdtempSync(join(tmpdir(), "flo-examples-")), "secure.yaml");
  await setupSecureDemo({ spec: join(root, secureDemo), keys: join(dirname(filledSecureDemo), "keys"), out: filledSecureDemo });
  for (const file of valid) {
    const spec = await loadSpecFile(file === secureDemo ? filledSecureDemo : join(root, file));
    expect({ file, name: spec.name }).toEqual({ file, name: expect.stringMatching(/^[a-z0-9-]+$/) });
    const code = spec.training.code;
    if (code === undefined || isCodeReference(code)) continue;
    // Relative to the current directory (the repository root for these examples), as flo submit and `flo run` resolve it.
    const folder = hashCodeFolder(join(root, code));
    expect({ file, files: folder.files.length > 0 }).toEqual({ file, files: true });
  }
  const robust = await loadSpecFile(join(root, "examples/specs/azureml-robust.yaml"));
  expect({ code: robust.training.code, azureml: robust.silos.every((s) => s.compute.type === "azureml") }).toEqual({ code: "examples/claims", azureml: true });
  expect(hashCodeFolder(join(root, "examples/claims")).files).toEqual([".amlignore", "README.md"]);
  const dir = join(root, "examples", "specs");
  for (const file of readdirSync(join(dir, "invalid"))) {
    await expect(loadSpecFile(join(dir, "invalid", file))).rejects.toBeInstanceOf(SpecError);
  }
});
