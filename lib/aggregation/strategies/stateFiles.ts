/**
 * Strategy state on disk, for `flo aggregate --state-in/--state-out <dir>`:
 *   <dir>/strategy-state.json   {"strategy", "state": <small JSON state>, "report": <last round facts>}
 *   <dir>/<name>.safetensors    per-coordinate state (momentum, m, v), float64, model tensor names
 */
import { existsSync, promises as fs } from "node:fs";
import * as path from "node:path";
import type { StrategyStateInput } from "../engine";
import type { Json } from "../strategy";
import type { ByteSink, ByteSource } from "../../models/bytes";
import { fileSink, fileSource } from "../../models/fileBytes";
import { StrategyStateError } from "./errors";

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
