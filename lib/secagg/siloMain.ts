/**
 * Silo-side entry point of the TypeScript implementation, with the flags of `python -m flo_secagg`
 * (the unmask job of local silos runs it):
 *
 *   node siloMain.js mask --session session.json --key silo.key --output DIR --global global.safetensors [--publish-metrics]
 *   node siloMain.js reveal --session session.json --key silo.key --split split.json \
 *       (--shares shares-1.json ... | --shares-dir DIR) [--record-dir DIR] --out reveal.json
 *
 * `--shares-dir` reads every shares-<index>.json in DIR; the record directory defaults to
 * `<key file>.reveals`, next to the silo's key.
 *
 * Errors go to stderr with exit code 1; nothing secret or unmasked is printed.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { maskTrainingOutput, revealFromFiles } from "./siloJob";

async function sharesFilesIn(dir: string): Promise<string[]> {
  return (await fs.readdir(dir))
    .filter((name) => /^shares-\d+\.json$/.test(name))
    .sort()
    .map((name) => path.join(dir, name));
}

function parseFlags(args: readonly string[]): Map<string, string[]> {
  const flags = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const arg of args) {
    if (arg.startsWith("--")) {
      current = [];
      flags.set(arg.slice(2), current);
    } else if (current) current.push(arg);
    else throw new Error(`unexpected argument ${JSON.stringify(arg)}`);
  }
  return flags;
}

function one(flags: Map<string, string[]>, name: string): string {
  const values = flags.get(name);
  if (!values || values.length !== 1) throw new Error(`--${name}: expected one value, got ${values ? values.length : "none"}`);
  return values[0];
}

export async function siloMain(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    const flags = parseFlags(rest);
    if (command === "mask") {
      await maskTrainingOutput({
        sessionFile: one(flags, "session"),
        keyFile: one(flags, "key"),
        outputDir: one(flags, "output"),
        globalModelFile: one(flags, "global"),
        publishMetrics: flags.has("publish-metrics"),
      });
    } else if (command === "reveal") {
      const keyFile = one(flags, "key");
      const shares = flags.has("shares-dir") ? await sharesFilesIn(one(flags, "shares-dir")) : (flags.get("shares") ?? []);
      const recordDir = flags.has("record-dir") ? one(flags, "record-dir") : `${keyFile}.reveals`;
      await revealFromFiles({ sessionFile: one(flags, "session"), keyFile, splitFile: one(flags, "split"), sharesFiles: shares, recordDir, outFile: one(flags, "out") });
    } else {
      throw new Error(`expected a command mask or reveal, got ${JSON.stringify(command)}`);
    }
    return 0;
  } catch (err) {
    process.stderr.write(`flo secagg ${command}: ${(err as Error).message}\n`);
    return 1;
  }
}

if (require.main === module) {
  void siloMain(process.argv.slice(2)).then((code) => process.exit(code));
}
