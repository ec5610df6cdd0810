/**
 * `flo silo keygen --out <key file>`: creates a silo's long-term X25519 key pair for secure
 * aggregation. The secret key file is written with mode 0600 and never overwritten; the public key
 * (base64, for the spec's `silos[].publicKey`) is the last line of the output.
 */

import type { Command } from "commander";
import type { CommandIO } from "./aggregate";
import * as path from "node:path";
import { SecAggError } from "../secagg/errors";
import { encodeKey, generateKeyPair, writeSecretKeyFile } from "../secagg/keys";

/** Returns the exit code: 0 when the key file was written. */
export async function runSiloKeygen(options: { out: string }, io: CommandIO): Promise<number> {
  const file = path.resolve(options.out);
  const pair = generateKeyPair();
  try {
    await writeSecretKeyFile(file, pair);
  } catch (err) {
    if (err instanceof SecAggError) {
      io.err(`flo silo keygen: ${err.message}`);
      return 1;
    }
    throw err;
  }
  io.out(`secret key written to ${file} (mode 0600; keep it on the silo, it never leaves it)`);
  io.out("public key (put it in the spec as silos[].publicKey):");
  io.out(encodeKey(pair.publicKey));
  return 0;
}

/** Registers the `silo` command's subcommands (`flo silo keygen`). */
export function register(silo: Command): void {
  silo
    .command("keygen")
    .description("create a silo's X25519 key pair for secure aggregation; prints the public key (base64) last")
    .requiredOption("--out <file>", "where to write the secret key file (mode 0600; refuses to overwrite)")
    .action(async (opts: { out: string }) => {
      process.exitCode = await runSiloKeygen(opts, { out: (l) => console.log(l), err: (l) => console.error(l) });
    });
}
