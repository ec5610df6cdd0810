/**
 * Strategies as definitions: a strategy from a module of its own, registered by module path, runs
 * through the spec parser, `flo aggregate`'s flags and the engine (kernel worker included); the spec
 * and the CLI accept exactly the same option values for every definition; the Krum family copies
 * integer tensors from a selected update.
 */
import { Command } from "commander";
import { mkdtempSync, promises as fs, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { aggregateUpdates } from "../lib/aggregation/engine";
import { compiledRegistryPath } from "../lib/aggregation/kernelPool";
import type { StrategyDefinition } from "../lib/aggregation/definition";
import { createStrategy, registerStrategy, registeredStrategyModules, resolveStrategyOptions, strategyDefinitions, strategyNames } from "../lib/aggregation/registry";
import { StrategyConfigError } from "../lib/aggregation/strategies/errors";
import type { Json } from "../lib/aggregation/strategy";
import { createStrategyForFlags, register } from "../lib/cli/aggregate";
import { addStrategyFlags, strategyOptionFlags, strategyOptionsFromFlags } from "../lib/cli/strategyFlags";
import { fileSink } from "../lib/models/fileBytes";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../lib/models/safetensors";
import { SpecError, validateSpec } from "../lib/spec";
import { federationJsonSchema } from "../lib/spec/jsonSchema";
import { memorySink, memorySource } from "./fixtures/memoryBytes";
import { rng } from "./helpers/random";

const FIXTURE = path.join(__dirname, "fixtures", "strategies", "midrange.js");

/** A spec with `silos` local silos, an initial model (server optimizers need one) and `aggregation`. */
function spec(aggregation: unknown, silos = 100): unknown {
  return {
    name: "defs",
    rounds: 1,
    initialModel: "models/start.safetensors",
    silos: Array.from({ length: silos }, (_, i) => ({ name: `s${i}`, compute: { type: "local" } })),
    training: { command: "t $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}}" },
    aggregation,
  };
}

function specIssues(aggregation: unknown): { path: string; expected: string; got: string }[] {
  try {
    validateSpec(spec(aggregation));
    return [];
  } catch (error) {
    if (!(error instanceof SpecError)) throw error;
    return error.issues.map(({ path, expected, got }) => ({ path, expected, got }));
  }
}

/** A definition's first bench options without the wrappers: valid options of its own. */
function ownExampleOptions(definition: StrategyDefinition): Record<string, Json> {
  return Object.fromEntries(Object.entries((definition.bench[0]?.options ?? {}) as Record<string, Json>).filter(([k]) => k !== "clipping" && k !== "dp"));
}

/** `flo aggregate`'s strategy flags parsed from argv, then the strategy created from them. */
function cliCreate(strategy: string, argv: string[]): ReturnType<typeof createStrategy> {
  const command = addStrategyFlags(new Command().exitOverride().configureOutput({ writeErr: () => undefined }));
  command.parse(argv, { from: "user" });
  return createStrategyForFlags(strategy, strategyOptionsFromFlags(command.opts()));
}

async function modelBytes(tensors: Record<string, Float32Array>, steps: bigint): Promise<Buffer> {
  const sink = memorySink();
  await writeSafetensors(sink, [
    ...Object.entries(tensors).map(([name, data]) => ({ name, dtype: "F32" as const, shape: [data.length], data: new Uint8Array(data.buffer) })),
    { name: "num_batches_tracked", dtype: "I64", shape: [1], data: new Uint8Array(BigInt64Array.of(steps).buffer) },
  ]);
  return sink.committed!;
}

async function readModel(bytes: Buffer): Promise<{ w: Float32Array; steps: bigint }> {
  const source = memorySource("out", bytes);
  const header = await readSafetensorsHeader(source);
  const w = await readTensorBytes(source, header, "w");
  const steps = await readTensorBytes(source, header, "num_batches_tracked");
  return { w: new Float32Array(w.buffer, w.byteOffset, w.byteLength / 4), steps: new BigInt64Array(steps.buffer, steps.byteOffset, 1)[0] };
}

describe("a strategy registered by module path", () => {
  beforeAll(() => {
    const added = registerStrategy(FIXTURE);
    expect(added.map((d) => d.name)).toEqual(["fixture-midrange"]);
  });

  test("is in the registry once, with its module path for the kernel worker", () => {
    expect(registerStrategy(FIXTURE).map((d) => d.name)).toEqual(["fixture-midrange"]); // idempotent
    expect(strategyNames()).toContain("fixture-midrange");
    expect(registeredStrategyModules()).toEqual([FIXTURE]);
    expect(() => registerStrategy(path.join(__dirname, "fixtures", "memoryBytes.ts"))).toThrow(StrategyConfigError);
  });

  test("the spec parser accepts it with its defaults and checks its options", () => {
    expect((validateSpec(spec({ strategy: "fixture-midrange" })) as { aggregation: unknown }).aggregation).toEqual({ strategy: "fixture-midrange", lean: 0.5 });
    expect(specIssues({ strategy: "fixture-midrange", lean: 2 })).toEqual([{ path: "aggregation.lean", expected: "a number <= 1", got: "2" }]);
    // It declares no clipping support and is robust: both wrappers are refused.
    expect(specIssues({ strategy: "fixture-midrange", clipping: { mode: "fixed", norm: 1 } })[0]).toMatchObject({ path: "aggregation.clipping" });
    expect(specIssues({ strategy: "fixture-midrange", clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 1 } }).map((i) => i.path)).toContain("aggregation.dp");
    expect(federationJsonSchema().properties).toMatchObject({ aggregation: { oneOf: expect.arrayContaining([expect.objectContaining({ description: expect.stringMatching(/test fixture/) })]) } });
  });

  test("flo aggregate has its flag, and runs it from update directories", async () => {
    const flag = strategyOptionFlags().find((f) => f.key === "lean");
    expect(flag).toMatchObject({ flag: "--lean", integer: false });
    expect(flag!.help).toMatch(/^fixture-midrange \(default 0\.5\): Where between the smallest and largest value/);
    expect(() => cliCreate("fixture-midrange", ["--lean", "1.5"])).toThrow(new StrategyConfigError("--lean", "a number <= 1", 1.5));

    const dir = mkdtempSync(path.join(tmpdir(), "flo-defs-"));
    try {
      const values = [
        [1, 10],
        [2, 20],
        [5, 0],
      ];
      const dirs = await Promise.all(
        values.map(async (v, i) => {
          const d = path.join(dir, `silo${i}`);
          await fs.mkdir(d);
          const sink = fileSink(path.join(d, "model.safetensors"));
          await sink.write(await modelBytes({ w: Float32Array.from(v) }, BigInt(i)));
          await sink.commit();
          await fs.writeFile(path.join(d, "metrics.json"), JSON.stringify({ num_examples: 10 }));
          return d;
        }),
      );
      const out = path.join(dir, "out.safetensors");
      const program = new Command().exitOverride();
      register(program.command("aggregate"));
      const log = jest.spyOn(console, "log").mockImplementation(() => undefined);
      try {
        await program.parseAsync(["node", "flo", "aggregate", "--strategy", "fixture-midrange", "--lean", "0.25", "--out", out, ...dirs]);
        expect(log.mock.calls.map((c) => String(c[0])).join("\n")).toContain('strategy  {"strategy":"fixture-midrange","lean":0.25}');
      } finally {
        log.mockRestore();
      }
      const model = await readModel(await fs.readFile(out));
      // min + 0.25 (max - min): [1 + 0.25*4, 0 + 0.25*20]
      expect(Array.from(model.w)).toEqual([2, 5]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("the engine runs it on two threads: the kernel worker loads the module and re-creates it", async () => {
    expect(compiledRegistryPath()).toMatch(/registry\.js$/); // the worker loads dist/ (npm test builds first)
    const K = 4;
    const n = 50_000; // chunks of >= 16 Ki elements are split between the threads
    const r = rng(3);
    const rows = Array.from({ length: K }, () => Float32Array.from({ length: n }, () => r() - 0.5));
    const models = await Promise.all(rows.map((w, i) => modelBytes({ w }, BigInt(i))));
    const run = async (kernelWorkers: number) => {
      const out = memorySink();
      const result = await aggregateUpdates({
        updates: models.map((bytes, i) => ({ id: `silo${i}`, model: memorySource(`silo${i}`, bytes), metrics: { numExamples: 1 + i, metrics: {} } })),
        output: () => out,
        strategy: createStrategy("fixture-midrange", { lean: 0.75 }),
        minUpdates: K,
        kernelWorkers,
      });
      return { result, model: await readModel(out.committed!) };
    };
    const two = await run(1);
    expect(two.result.kernelWorkers).toBe(1);
    const one = await run(0);
    expect(one.result.kernelWorkers).toBe(0);
    for (let c = 0; c < n; c++) {
      const column = rows.map((row) => row[c]);
      const min = Math.min(...column);
      const expected = Math.fround(min + 0.75 * (Math.max(...column) - min));
      if (two.model.w[c] !== expected) throw new Error(`coordinate ${c}: ${two.model.w[c]} != ${expected}`);
    }
    expect(Buffer.from(two.model.w.buffer).equals(Buffer.from(one.model.w.buffer))).toBe(true);
  });
});

describe("spec validation and flo aggregate accept exactly the same option values", () => {
  beforeAll(() => registerStrategy(FIXTURE));
  const CANDIDATES: (number | string)[] = [-1, 0, 1e-7, 0.25, 0.4999, 0.5, 0.99, 1, 1.5, 2, 3, 10, "abc"];

  test("for every option of every registered definition", () => {
    const definitions = strategyDefinitions();
    expect(definitions.map((d) => d.name)).toEqual(expect.arrayContaining(["fedavg", "geometric-median", "fixture-midrange"]));
    let compared = 0;
    for (const definition of definitions) {
      const base = ownExampleOptions(definition);
      for (const key of Object.keys(definition.options.shape)) {
        const flag = strategyOptionFlags().find((f) => f.key === key)!;
        const verdicts = CANDIDATES.map((value) => {
          const specAccepts = specIssues({ strategy: definition.name, ...base, [key]: value }).length === 0;
          let cliAccepts = true;
          try {
            cliCreate(definition.name, [
              ...Object.entries(base).flatMap(([k, v]) => [strategyOptionFlags().find((f) => f.key === k)!.flag, typeof v === "string" ? v : JSON.stringify(v)]),
              flag.flag,
              String(value),
            ]);
          } catch (error) {
            if (!(error instanceof StrategyConfigError)) throw error;
            cliAccepts = false;
          }
          compared++;
          return { strategy: definition.name, key, value, specAccepts, cliAccepts };
        });
        for (const v of verdicts) expect(v).toEqual({ ...v, cliAccepts: v.specAccepts });
        // Each option both accepts and rejects some candidate (the comparison is not vacuous).
        expect([definition.name, key, new Set(verdicts.map((v) => v.specAccepts)).size]).toEqual([definition.name, key, 2]);
      }
    }
    expect(compared).toBeGreaterThan(100);
  });
});

describe("capabilities say what the rules do", () => {
  const builtIns = () => strategyDefinitions().filter((d) => d.rule !== undefined);

  test("worksOnWeightedSum: the result is one weighted sum of all updates, with no statistics pass (what secure aggregation can provide)", () => {
    const flagged = builtIns().filter((d) => d.capabilities.worksOnWeightedSum);
    expect(flagged.map((d) => d.name)).toEqual(["fedavg", "fedavgm", "fedadam", "fedyogi", "fedadagrad"]);
    for (const definition of builtIns()) {
      const rule = definition.rule!(resolveStrategyOptions(definition.name, ownExampleOptions(definition)).options);
      const selection = rule.usesPairwiseDistances ? undefined : rule.select({ k: 3, numExamples: [1, 2, 3], equalWeights: false });
      const weightedSumOfAll = selection !== undefined && selection.weights !== undefined && selection.selected.length === 3 && !rule.combine;
      expect([definition.name, weightedSumOfAll]).toEqual([definition.name, definition.capabilities.worksOnWeightedSum]);
    }
  });

  test("needsGlobalModel and hasState match what the strategies ask the engine for", () => {
    for (const definition of builtIns()) {
      const strategy = createStrategy(definition.name, ownExampleOptions(definition));
      const keepsState = strategy.stateTensors.length > 0;
      expect([definition.name, strategy.needsGlobal, keepsState]).toEqual([definition.name, definition.capabilities.needsGlobalModel, definition.capabilities.hasState]);
    }
  });
});

describe("the Krum family takes integer tensors from a selected update", () => {
  test.each([
    ["krum", { byzantine: 1 }],
    ["multi-krum", { byzantine: 1, keep: 3 }],
    ["bulyan", { byzantine: 1 }],
    ["geometric-median", {}],
  ] as [string, Json][])("%s: a Byzantine silo listed first does not pass its num_batches_tracked", async (name, options) => {
    const r = rng(11);
    // Silo 0 is far from the others and claims 999 batches; the honest silos say 7.
    const models = await Promise.all(Array.from({ length: 7 }, (_, i) => modelBytes({ w: Float32Array.from({ length: 64 }, () => (i === 0 ? 100 : 1) + 0.1 * r()) }, i === 0 ? 999n : 7n)));
    const out = memorySink();
    const result = await aggregateUpdates({
      updates: models.map((bytes, i) => ({ id: `silo${i}`, model: memorySource(`silo${i}`, bytes), metrics: { numExamples: 10, metrics: {} } })),
      output: () => out,
      strategy: createStrategy(name, options),
      minUpdates: 7,
    });
    const model = await readModel(out.committed!);
    expect(model.steps).toBe(7n);
    const selected = (result.state.report as { selected?: string[] }).selected;
    if (selected) expect(selected).not.toContain("silo0");
    expect(Math.max(...model.w)).toBeLessThan(2);
  });
});
