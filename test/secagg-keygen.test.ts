import { execFile } from "node:child_process";
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { runSiloKeygen } from "../lib/cli/siloKeygen";
import { keyPairFromSecret, parsePublicKey, readSecretKeyFile } from "../lib/secagg/keys";

const repo = path.resolve(__dirname, "..");

describe("flo silo keygen", () => {
  test("writes a 0600 key file whose public key is the last output line; refuses to overwrite", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-keygen-"));
    const file = path.join(dir, "silo-a.key");
    const lines: string[] = [];
    const errors: string[] = [];
    const io = { out: (l: string) => lines.push(l), err: (l: string) => errors.push(l) };
    expect(await runSiloKeygen({ out: file }, io)).toBe(0);
    expect((await fs.stat(file)).mode & 0o777).toBe(0o600);
    const pair = await readSecretKeyFile(file);
    const printed = parsePublicKey(lines[lines.length - 1], "output");
    expect(printed.equals(pair.publicKey)).toBe(true);
    expect(keyPairFromSecret(pair.secretKey).publicKey.equals(printed)).toBe(true);
    expect(lines.join("\n")).not.toContain(pair.secretKey.toString("base64"));
    const before = await fs.readFile(file);
    expect(await runSiloKeygen({ out: file }, io)).toBe(1);
    expect(errors).toEqual([`flo silo keygen: ${file}: a file already exists here; keygen never overwrites a key (move it away first) [KEY_FILE_EXISTS]`]);
    expect((await fs.readFile(file)).equals(before)).toBe(true);
  });

  test("the built CLI runs it: `flo silo keygen --out <file>`", async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-keygen-cli-"));
    const file = path.join(dir, "k.json");
    const { stdout } = await promisify(execFile)(process.execPath, [path.join(repo, "bin", "flo.js"), "silo", "keygen", "--out", file]);
    const last = stdout.trimEnd().split("\n").pop()!;
    expect(parsePublicKey(last, "stdout").equals((await readSecretKeyFile(file)).publicKey)).toBe(true);
  });
});
