/**
 * Setup of the secure fraud demo (examples/fraud/secure.yaml): each silo's X25519 key pair, made as
 * `flo silo keygen` makes it, into examples/fraud/keys/<silo>.key (gitignored; an existing key is
 * kept), a copy of the spec with the silos' public keys filled in (the tracked spec stays as it is:
 * keys differ per machine), and the round-1 model (the trainer's own initial weights: secure
 * aggregation masks `trained - global`, so round 1 needs a global model).
 *
 *   node dist/examples/fraud/secureSetup.js [--spec examples/fraud/secure.yaml] [--keys examples/fraud/keys] [--out out/fraud-secure/secure.yaml]
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { parseArgs } from "node:util";
import { encodeKey, generateKeyPair, readSecretKeyFile, writeSecretKeyFile } from "../../lib/secagg/keys";
import { initialWeights, writeModelFile } from "./model";

/** The silos of the spec, in order, read from its `- name:` lines (the spec is ours: one silo per entry). */
function siloNames(specText: string): string[] {
  return [...specText.matchAll(/^ {2}- name: ([a-z0-9-]+)$/gm)].map((m) => m[1]);
}

/** `out`: where the filled-in spec is written (its relative paths stay relative to the current directory). */
export async function setupSecureDemo(options: { spec: string; keys: string; out: string }): Promise<void> {
  mkdirSync(options.keys, { recursive: true, mode: 0o700 });
  let text = readFileSync(options.spec, "utf8");
  const silos = siloNames(text);
  for (const silo of silos) {
    const file = join(options.keys, `${silo}.key`);
    if (!existsSync(file)) await writeSecretKeyFile(file, generateKeyPair());
    const publicKey = encodeKey((await readSecretKeyFile(file)).publicKey);
    // The publicKey line of this silo's entry: the first one after its `- name:` line.
    const entry = new RegExp(`(^ {2}- name: ${silo}\\n(?: {4}.*\\n)*? {4}publicKey: ).*$`, "m");
    if (!entry.test(text)) throw new Error(`${options.spec}: silo ${silo} has no publicKey line`);
    text = text.replace(entry, `$1"${publicKey}"`);
  }
  mkdirSync(dirname(options.out), { recursive: true });
  writeFileSync(options.out, text);
  await writeModelFile(join(options.keys, "initial.safetensors"), initialWeights(1));
  console.log(`secure demo: keys of ${silos.join(", ")} in ${options.keys}, the spec with their public keys in ${options.out}`);
}

if (require.main === module) {
  const { values } = parseArgs({
    options: {
      spec: { type: "string", default: "examples/fraud/secure.yaml" },
      keys: { type: "string", default: "examples/fraud/keys" },
      out: { type: "string", default: "out/fraud-secure/secure.yaml" },
    },
  });
  setupSecureDemo({ spec: values.spec, keys: values.keys, out: values.out }).catch((err: Error) => {
    console.error(`secure demo setup: ${err.message}`);
    process.exit(1);
  });
}
