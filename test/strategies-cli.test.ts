/**
 * `flo aggregate` with the strategy flags: FedOpt over several rounds, each a separate command with its
 * state carried through --state-out/--state-in directories, equals an uninterrupted in-memory run;
 * flag mapping through commander; clear errors for missing --global / --state-out.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { Command } from "commander";
import { register, runAggregate } from "../lib/cli/aggregate";
import { aggregateInMemory, type InMemoryUpdate, type TensorMap, resolveStrategyConfig } from "./helpers/inMemory";
import { initialStrategyState } from "../lib/aggregation/strategies/roundPlan";
import { STATE_JSON_FILE } from "../lib/aggregation/strategies/stateFiles";
import { decodeFloats } from "../lib/models/dtypes";
import { fileSink, fileSource } from "../lib/models/fileBytes";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../lib/models/safetensors";

async function writeModel(file: string, tensors: TensorMap): Promise<void> {
  await fs.mkdir(path.dirname(file), { recursive: true });
  await writeSafetensors(
    fileSink(file),
    Object.entries(tensors).map(([name, v]) => ({ name, dtype: "F64" as const, shape: [v.length], data: new Uint8Array(v.buffer, v.byteOffset, v.byteLength) })),
  );
}

async function readModel(file: string): Promise<TensorMap> {
  const src = fileSource(file);
  try {
    const header = await readSafetensorsHeader(src);
    const out: TensorMap = {};
    for (const t of header.tensors) out[t.name] = Float64Array.from(decodeFloats(await readTensorBytes(src, header, t.name), "F64"));
    return out;
  } finally {
    await src.close!();
  }
}

function updatesFor(round: number): InMemoryUpdate[] {
  return [0, 1, 2].map((silo) => ({
    tensors: {
      "dense.kernel": Float64Array.from({ length: 10 }, (_, i) => Math.sin(round * 7 + silo * 3 + i) * 0.5),
      "dense.bias": Float64Array.from({ length: 3 }, (_, i) => Math.cos(round + silo + i)),
    },
    numExamples: 10 + silo * 5 + round,
  }));
}

describe("flo aggregate with strategy state dirs", () => {
  let dir: string;
  const lines: string[] = [];
  const errors: string[] = [];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => errors.push(l) };
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-strategies-cli-"));
    lines.length = 0;
    errors.length = 0;
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  async function writeRound(r: number): Promise<string[]> {
    const dirs: string[] = [];
    for (const [i, u] of updatesFor(r).entries()) {
      const d = path.join(dir, `r${r}`, `silo${i}`);
      await writeModel(path.join(d, "model.safetensors"), u.tensors);
      await fs.writeFile(path.join(d, "metrics.json"), JSON.stringify({ num_examples: u.numExamples }));
      dirs.push(d);
    }
    return dirs;
  }

  test.each([
    ["fedadam", { serverLr: 0.05 }],
    ["fedyogi", {}],
    ["fedavgm", { serverLr: 0.8, momentum: 0.9 }],
  ])("%s over 4 rounds via --state-out/--state-in equals an uninterrupted run", async (name, options) => {
    const init: TensorMap = { "dense.kernel": new Float64Array(10).fill(0.1), "dense.bias": new Float64Array(3) };
    await writeModel(path.join(dir, "global-r0.safetensors"), init);
    const config = resolveStrategyConfig({ strategy: name, ...options });
    let global = init;
    let state = initialStrategyState(config);
    let stateTensors = {};
    for (let r = 1; r <= 4; r++) {
      ({ model: global, state, stateTensors } = aggregateInMemory(config, { updates: updatesFor(r), global, state, stateTensors }));
      const code = await runAggregate(
        {
          out: path.join(dir, `global-r${r}.safetensors`),
          strategy: name,
          strategyOptions: options,
          minUpdates: 1,
          chunkElements: 4,
          updateDirs: await writeRound(r),
          global: path.join(dir, `global-r${r - 1}.safetensors`),
          ...(r > 1 ? { stateIn: path.join(dir, `state-r${r - 1}`) } : {}),
          stateOut: path.join(dir, `state-r${r}`),
        },
        io,
      );
      expect(errors).toEqual([]);
      expect(code).toBe(0);
    }
    const final = await readModel(path.join(dir, "global-r4.safetensors"));
    for (const t of Object.keys(global)) expect(Array.from(final[t])).toEqual(Array.from(global[t]));
    const saved = JSON.parse(await fs.readFile(path.join(dir, "state-r4", STATE_JSON_FILE), "utf8"));
    expect(saved.state).toEqual(state);
    expect(saved.state.optimizerSteps).toBe(4);
  });

  test("commander flags map onto the strategy options (multi-krum --byzantine --keep, trimmed-mean --beta, bad values)", async () => {
    const dirs = await writeRound(1);
    const program = new Command().exitOverride();
    register(program.command("aggregate"));
    const log = jest.spyOn(console, "log").mockImplementation(() => undefined);
    try {
      const out = path.join(dir, "mk.safetensors");
      await program.parseAsync(["node", "flo", "aggregate", "--strategy", "multi-krum", "--byzantine", "0", "--keep", "2", "--out", out, ...dirs]);
      const config = resolveStrategyConfig({ strategy: "multi-krum", byzantine: 0, keep: 2 });
      const expected = aggregateInMemory(config, { updates: updatesFor(1), state: initialStrategyState(config) });
      const got = await readModel(out);
      for (const t of Object.keys(got)) got[t].forEach((v, i) => expect(v).toBeCloseTo(expected.model[t][i], 12));
      expect(log.mock.calls.map((c) => String(c[0])).join("\n")).toMatch(/strategy  \{"strategy":"multi-krum","selected":\["silo\d","silo\d"\]\}/);
    } finally {
      log.mockRestore();
    }
    const bad = new Command().exitOverride();
    register(bad.command("aggregate"));
    await expect(bad.parseAsync(["node", "flo", "aggregate", "--strategy", "multi-krum", "--keep", "two", "--out", "x", ...dirs])).rejects.toThrow('--keep: expected an integer, got "two"');
    const trimmed = new Command().exitOverride();
    register(trimmed.command("aggregate"));
    const log2 = jest.spyOn(console, "log").mockImplementation(() => undefined);
    try {
      const out = path.join(dir, "tm.safetensors");
      await trimmed.parseAsync(["node", "flo", "aggregate", "--strategy", "trimmed-mean", "--beta", "0.34", "--out", out, ...dirs]);
      const config = resolveStrategyConfig({ strategy: "trimmed-mean", beta: 0.34 }); // int(0.34*3) = 1: the median of 3
      const expected = aggregateInMemory(config, { updates: updatesFor(1), state: initialStrategyState(config) });
      const got = await readModel(out);
      for (const t of Object.keys(got)) got[t].forEach((v, i) => expect(v).toBeCloseTo(expected.model[t][i], 12));
      const median = aggregateInMemory(resolveStrategyConfig({ strategy: "median" }), { updates: updatesFor(1), state: initialStrategyState(resolveStrategyConfig({ strategy: "median" })) });
      for (const t of Object.keys(got)) got[t].forEach((v, i) => expect(v).toBeCloseTo(median.model[t][i], 12));
    } finally {
      log2.mockRestore();
    }
  });

  test("missing --state-out for a stateful optimizer and missing --global give clear errors", async () => {
    const dirs = await writeRound(1);
    expect(await runAggregate({ out: path.join(dir, "x.safetensors"), strategy: "fedadam", minUpdates: 1, updateDirs: dirs }, io)).toBe(2);
    expect(errors).toEqual(["flo aggregate: fedadam keeps per-coordinate state (m, v): give --state-out <dir> (and --state-in <dir> from the previous round)"]);
    await expect(runAggregate({ out: path.join(dir, "x.safetensors"), strategy: "fedadam", minUpdates: 1, updateDirs: dirs, stateOut: path.join(dir, "s") }, io)).rejects.toThrow(
      /needs the round's global model/,
    );
    await expect(
      runAggregate({ out: path.join(dir, "x.safetensors"), strategy: "fedadam", minUpdates: 1, updateDirs: dirs, stateIn: path.join(dir, "nope"), stateOut: path.join(dir, "s") }, io),
    ).rejects.toThrow(/--state-in .*nope: cannot read strategy-state.json \(ENOENT\)/);
  });
});
