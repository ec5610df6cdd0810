import { execFile } from "node:child_process";
import { existsSync, promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { promisify } from "node:util";
import { runAggregate } from "../lib/cli/aggregate";
import { decodeFloats, encodeFloats } from "../lib/models/dtypes";
import { fileSink, fileSource } from "../lib/models/fileBytes";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../lib/models/safetensors";
import { sha256 } from "./fixtures/memoryBytes";

const repo = path.resolve(__dirname, "..");

async function writeUpdate(dir: string, values: number[], metrics: unknown): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await writeSafetensors(fileSink(path.join(dir, "model.safetensors")), [
    { name: "layer.weight", dtype: "F32", shape: [values.length], data: encodeFloats(values, "F32") },
    { name: "layer.steps", dtype: "I64", shape: [1], data: new Uint8Array(BigInt64Array.of(BigInt(values.length)).buffer) },
  ]);
  if (metrics !== undefined) await fs.writeFile(path.join(dir, "metrics.json"), JSON.stringify(metrics));
}

async function readWeights(file: string): Promise<number[]> {
  const src = fileSource(file);
  try {
    const header = await readSafetensorsHeader(src);
    return Array.from(decodeFloats(await readTensorBytes(src, header, "layer.weight"), "F32"));
  } finally {
    await src.close!();
  }
}

describe("flo aggregate", () => {
  let dir: string;
  let lines: string[];
  let errors: string[];
  const io = { out: (l: string) => lines.push(l), err: (l: string) => errors.push(l) };

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-cli-aggregate-"));
    lines = [];
    errors = [];
    await writeUpdate(path.join(dir, "east"), [1, 2], { num_examples: 1, metrics: { accuracy: 0.5 } });
    await writeUpdate(path.join(dir, "west"), [3, 4], { num_examples: 3, metrics: { accuracy: 0.9 } });
    await writeUpdate(path.join(dir, "north"), [100, 100], undefined); // no metrics.json
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("aggregates valid dirs, reports the excluded one with its reason and the output sha256", async () => {
    const out = path.join(dir, "global.safetensors");
    const code = await runAggregate({ out, strategy: "fedavg", minUpdates: 2, updateDirs: ["east", "west", "north"].map((d) => path.join(dir, d)) }, io);
    expect(errors).toEqual([]);
    expect(code).toBe(0);
    expect(await readWeights(out)).toEqual([2.5, 3.5]);
    const digest = sha256(await fs.readFile(out));
    const eastDigest = sha256(await fs.readFile(path.join(dir, "east", "model.safetensors")));
    expect(lines).toContain(`included  east  num_examples=1  sha256=${eastDigest}`);
    expect(lines.find((l) => l.startsWith("excluded  north  metrics: "))).toMatch(/north\/metrics\.json: cannot read metrics: .*ENOENT/);
    expect(lines).toContain("metrics   accuracy=0.8");
    expect(lines).toContain(`output    ${out}  size=${(await fs.stat(out)).size}  sha256=${digest}`);
    expect(lines.at(-1)).toBe("aggregated 2 of 3 updates with fedavg (4 examples)");
  });

  test("fewer valid updates than --min-updates exits non-zero with a clear message and no output file", async () => {
    const out = path.join(dir, "global.safetensors");
    const code = await runAggregate({ out, strategy: "fedavg", minUpdates: 3, updateDirs: ["east", "west", "north"].map((d) => path.join(dir, d)) }, io);
    expect(code).toBe(1);
    expect(errors[0]).toMatch(/^flo aggregate: not aggregated: 2 valid update\(s\), need at least 3 \(excluded north: metrics: .*\) \[TOO_FEW_UPDATES\]$/);
    expect(existsSync(out)).toBe(false);
    expect((await fs.readdir(dir)).sort()).toEqual(["east", "north", "west"]);
  });

  test("unknown strategy and no update dirs are clear errors", async () => {
    await expect(runAggregate({ out: path.join(dir, "o"), strategy: "fedmagic", minUpdates: 1, updateDirs: [path.join(dir, "east")] }, io)).rejects.toThrow(
      /--strategy: expected one of fedavg, .*, got "fedmagic"/,
    );
    expect(await runAggregate({ out: path.join(dir, "o"), strategy: "fedavg", minUpdates: 1, updateDirs: [] }, io)).toBe(2);
    expect(errors[0]).toContain("give at least one update directory");
  });

  test("spawned `node bin/flo.js aggregate` smoke test (needs `npm run build`, which `npm test` runs first)", async () => {
    if (!existsSync(path.join(repo, "dist", "lib", "cli", "aggregate.js"))) {
      throw new Error("dist/lib/cli/aggregate.js is missing: run `npm run build` before this test (npm test does)");
    }
    const out = path.join(dir, "spawned.safetensors");
    const run = promisify(execFile);
    const ok = await run(process.execPath, [path.join(repo, "bin", "flo.js"), "aggregate", "--out", out, path.join(dir, "east"), path.join(dir, "west")], { cwd: repo });
    expect(ok.stdout).toContain("aggregated 2 of 2 updates with fedavg (4 examples)");
    expect(await readWeights(out)).toEqual([2.5, 3.5]);
    const failed = await run(process.execPath, [path.join(repo, "bin", "flo.js"), "aggregate", "--out", out, "--min-updates", "2", path.join(dir, "north"), path.join(dir, "east")], {
      cwd: repo,
    }).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toContain("need at least 2");
  });

  test("the bundled CLI (dist/cli.js) starts the kernel worker for a robust rule on large updates", async () => {
    // 3 x 12 MB of F32: above the engine's 32 MB threshold for a kernel worker.
    const n = 3 << 20;
    const dirs = [1, 5, 9].map((v) => path.join(dir, `large-${v}`));
    for (const [i, d] of dirs.entries()) await writeUpdate(d, new Array<number>(n).fill([1, 5, 9][i]), { num_examples: 1 });
    const out = path.join(dir, "median.safetensors");
    const run = promisify(execFile);
    const ok = await run(process.execPath, [path.join(repo, "bin", "flo.js"), "aggregate", "--out", out, "--strategy", "median", ...dirs], { cwd: repo });
    expect(ok.stdout).toContain("engine    kernel_workers=1");
    expect(ok.stdout).toContain("aggregated 3 of 3 updates with median (3 examples)");
    const weights = await readWeights(out);
    expect(weights).toHaveLength(n);
    expect(weights.every((w) => w === 5)).toBe(true);
  });
});
