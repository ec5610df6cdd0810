import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import * as path from "node:path";
import { promisify } from "node:util";
import { defaultHashWorkers, HashPool, HASH_WORKERS_MIN_BYTES, prestartHashWorkers } from "../lib/aggregation/hashPool";

const run = promisify(execFile);

describe("hash workers started ahead of the pool", () => {
  test("a pool adopting prestarted workers hashes each file's bytes in order, prefix first", async () => {
    prestartHashWorkers(2);
    const buffer = new SharedArrayBuffer(1 << 16);
    const memory = new Uint8Array(buffer);
    for (let i = 0; i < memory.length; i++) memory[i] = (i * 31 + 7) & 0xff;
    const pool = new HashPool(buffer, 2);
    try {
      const prefixes: [number, Uint8Array][] = [
        [0, Uint8Array.of(1, 2, 3)],
        [1, Uint8Array.of(9)],
        [2, new Uint8Array(0)],
      ];
      pool.reset(prefixes);
      await pool.update([
        [0, 0, 1000],
        [1, 1000, 5000],
        [2, 6000, 10],
      ]);
      await pool.update([
        [0, 20000, 300],
        [2, 30000, 4096],
      ]);
      const digests = await pool.digests();
      const expected = (prefix: Uint8Array, ...ranges: [number, number][]) => {
        const hash = createHash("sha256").update(prefix);
        for (const [offset, length] of ranges) hash.update(memory.subarray(offset, offset + length));
        return hash.digest("hex");
      };
      expect(digests.get(0)).toBe(expected(prefixes[0][1], [0, 1000], [20000, 300]));
      expect(digests.get(1)).toBe(expected(prefixes[1][1], [1000, 5000]));
      expect(digests.get(2)).toBe(expected(prefixes[2][1], [6000, 10], [30000, 4096]));
    } finally {
      await pool.close();
    }
  });

  test("workers prestarted and never used do not keep the process alive", async () => {
    const module = path.resolve(__dirname, "..", "dist", "lib", "aggregation", "hashPool.js");
    const started = Date.now();
    const { stdout } = await run(process.execPath, ["-e", `require(${JSON.stringify(module)}).prestartHashWorkers(2); console.log("done")`], { timeout: 20000 });
    expect(stdout.trim()).toBe("done");
    expect(Date.now() - started).toBeLessThan(15000);
  });

  test("the engine's default: two hash workers from 32 MB of models, none below", () => {
    expect(defaultHashWorkers(HASH_WORKERS_MIN_BYTES)).toBe(2);
    expect(defaultHashWorkers(HASH_WORKERS_MIN_BYTES - 1)).toBe(0);
  });
});
