/**
 * Code folders for azureml silos (hash, ignore rules, content-addressed upload decision) and the
 * example specs: every spec under examples/specs parses (the invalid ones fail).
 */
import { mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashCodeFolder, uploadedCodeDigest, uploadSpecCode } from "../lib/compute/azureml/code";
import type { ModelStore } from "../lib/models/store";
import { loadSpecFile, SpecError } from "../lib/spec";

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

test("uploadSpecCode leaves registered assets, URIs and specs without azureml silos alone", async () => {
  const store = {} as ModelStore; // never touched on these paths
  const azureml = { compute: { type: "azureml" } };
  for (const code of [
    "azureml:flo-train:3",
    "azureml:flo-train@latest",
    "/subscriptions/s/resourceGroups/r/providers/Microsoft.MachineLearningServices/workspaces/w/codes/c/versions/1",
    "https://acct.blob.core.windows.net/models/code/x/",
  ]) {
    const spec = { silos: [azureml], training: { code } };
    expect((await uploadSpecCode(spec, store, { baseDir: "/" })).spec).toBe(spec);
  }
  const local = { silos: [{ compute: { type: "local" } }], training: { code: "trainer" } };
  expect((await uploadSpecCode(local, store, { baseDir: "/" })).spec).toBe(local);
  expect(uploadedCodeDigest(`https://acct.blob.core.windows.net/models/code/${"a".repeat(64)}/`)).toBe("a".repeat(64));
  expect(uploadedCodeDigest("https://acct.blob.core.windows.net/models/code/abc/")).toBeUndefined();
});

test("every example spec parses; the invalid examples fail with spec errors", async () => {
  const dir = join(__dirname, "..", "examples", "specs");
  const valid = readdirSync(dir).filter((f) => /\.(ya?ml|json)$/.test(f));
  expect(valid.length).toBeGreaterThan(3);
  for (const file of valid) await expect(loadSpecFile(join(dir, file)).then((s) => s.name)).resolves.toMatch(/^[a-z0-9-]+$/);
  for (const file of readdirSync(join(dir, "invalid"))) {
    await expect(loadSpecFile(join(dir, "invalid", file))).rejects.toBeInstanceOf(SpecError);
  }
});
