/**
 * Strategy state on disk, for `flo aggregate --state-in/--state-out <dir>`:
 *   <dir>/strategy-state.json   {"strategy", "state": <small JSON state>, "report": <last round facts>}
 *   <dir>/<name>.safetensors    per-coordinate state (momentum, m, v), float64, model tensor names
 * and the mapping of the strategy CLI flags onto the options of `createStrategy`.
 */
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import type { Command } from "commander";
import type { StrategyStateInput } from "../engine";
import type { Json } from "../strategy";
import type { ByteSink, ByteSource } from "../../models/bytes";
import { fileSink, fileSource } from "../../models/fileBytes";
import type { StrategyOptions } from "./config";
import { StrategyConfigError, StrategyStateError } from "./errors";

export const STATE_JSON_FILE = "strategy-state.json";

export interface LoadedStateDir {
  input: StrategyStateInput;
  close(): Promise<void>;
}

/** Reads a state dir written by `writeStateDirJson` (+ the engine's state tensor files). */
export async function loadStateDir(dir: string, stateTensorNames: readonly string[]): Promise<LoadedStateDir> {
  const jsonPath = path.join(dir, STATE_JSON_FILE);
  let text: string;
  try {
    text = await fs.readFile(jsonPath, "utf8");
  } catch (err) {
    throw new StrategyStateError(`--state-in ${dir}: cannot read ${STATE_JSON_FILE} (${(err as NodeJS.ErrnoException).code ?? String(err)}); pass the --state-out dir of the previous round`);
  }
  let parsed: { state?: Json };
  try {
    parsed = JSON.parse(text) as { state?: Json };
  } catch (err) {
    throw new StrategyStateError(`${jsonPath}: not valid JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== "object" || parsed === null || !("state" in parsed)) {
    throw new StrategyStateError(`${jsonPath}: expected an object with a "state" field`);
  }
  const tensors: Record<string, ByteSource> = {};
  for (const name of stateTensorNames) {
    const file = path.join(dir, `${name}.safetensors`);
    if (existsSync(file)) tensors[name] = fileSource(file);
  }
  return {
    input: { json: parsed.state, tensors },
    async close() {
      for (const source of Object.values(tensors)) await source.close?.();
    },
  };
}

/** Sink factory for the engine's `stateOutput`: <dir>/<name>.safetensors (atomic rename on commit). */
export function stateDirOutput(dir: string): (name: string) => Promise<ByteSink> {
  return async (name) => {
    await fs.mkdir(dir, { recursive: true });
    return fileSink(path.join(dir, `${name}.safetensors`));
  };
}

/** Writes <dir>/strategy-state.json atomically (temp file + rename). */
export async function writeStateDirJson(dir: string, content: { strategy: string; state: Json; report?: Json }): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  const target = path.join(dir, STATE_JSON_FILE);
  const tmp = `${target}.${process.pid}.tmp`;
  await fs.writeFile(tmp, JSON.stringify(content, null, 2) + "\n");
  await fs.rename(tmp, target);
}

/** CLI flags of the issue #6 strategies, as parsed by commander: the spec's numeric strategy options. */
export type StrategyFlags = Omit<StrategyOptions, "strategy" | "clipping" | "dp">;

function numberFlag(flag: string, integer = false) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === "" || !Number.isFinite(n) || (integer && !Number.isSafeInteger(n))) {
      throw new StrategyConfigError(flag, integer ? "an integer" : "a number", value);
    }
    return n;
  };
}

/** Adds the strategy option flags to a command (ranges are checked per strategy when it is created). */
export function addStrategyFlags(command: Command): Command {
  return command
    .option("--beta <b>", "trimmed-mean: fraction cut from each end per coordinate (default 0.2)", numberFlag("--beta"))
    .option("--byzantine <f>", "krum, multi-krum, bulyan: assumed number of Byzantine updates (default 0)", numberFlag("--byzantine", true))
    .option("--keep <m>", "multi-krum: number of best-scored updates averaged", numberFlag("--keep", true))
    .option("--server-lr <lr>", "server optimizers: server learning rate (fedavgm 1, fedadam 0.1, fedyogi 0.01, fedadagrad 0.1)", numberFlag("--server-lr"))
    .option("--momentum <mu>", "fedavgm: server momentum (default 0)", numberFlag("--momentum"))
    .option("--beta1 <b1>", "fedadam, fedyogi: first-moment decay (default 0.9)", numberFlag("--beta1"))
    .option("--beta2 <b2>", "fedadam, fedyogi: second-moment decay (default 0.99)", numberFlag("--beta2"))
    .option("--tau <t>", "fedadam, fedyogi, fedadagrad: adaptivity (default 1e-3)", numberFlag("--tau"))
    .option("--global <file>", "the round's current global model (.safetensors); required by server optimizers and clipping")
    .option("--state-in <dir>", "strategy state written by the previous round's --state-out")
    .option("--state-out <dir>", "where to write this round's strategy state (momentum / moments / clip norm / accountant)");
}

/** The flags given, as strategy options (absent flags are left to the strategy's defaults). */
export function strategyOptionsFromFlags(flags: StrategyFlags): Json {
  const options: { [key: string]: Json } = {};
  for (const key of ["beta", "byzantine", "keep", "serverLr", "momentum", "beta1", "beta2", "tau"] as const) {
    if (flags[key] !== undefined) options[key] = flags[key]!;
  }
  return options;
}
