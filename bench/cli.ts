/**
 * `npm run bench:cli [-- --runs 21 --target 2]`
 *
 * How long `flo` takes to start: spawns `node -e 0` (the anchor: Node's own start) and `node bin/flo.js
 * --help`, `aggregate --help`, `run --help`, `host --help`, `runs` times each, interleaved (one of each
 * per round, so a busy moment on the shared machine hits every row alike), and prints each row's median
 * wall time and its ratio to the anchor's median against the target (default: within 2x).
 */

import { spawnSync } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";

interface CliBenchFlags {
  runs: number;
  target: number;
}

function parseFlags(argv: string[]): CliBenchFlags {
  const flags: CliBenchFlags = { runs: 21, target: 2 };
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i];
    const value = Number(argv[++i]);
    if (name === "--runs") {
      if (!Number.isSafeInteger(value) || value < 1) throw new Error(`--runs: expected an integer >= 1, got "${argv[i]}"`);
      flags.runs = value;
    } else if (name === "--target") {
      if (!Number.isFinite(value) || value <= 1) throw new Error(`--target: expected a ratio > 1, got "${argv[i]}"`);
      flags.target = value;
    } else throw new Error(`unknown flag ${name}; expected --runs N, --target RATIO`);
  }
  return flags;
}

interface Row {
  label: string;
  args: string[];
  /** The anchor row: the others are compared with it. */
  anchor?: boolean;
  millis: number[];
}

/** Runs one command to completion; its wall time in ms (spawn included, as for every row). */
function timeOnce(row: Row, cwd: string): number {
  const start = process.hrtime.bigint();
  const result = spawnSync(process.execPath, row.args, { cwd, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
  const millis = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0) throw new Error(`${row.label} exited with ${result.status ?? result.signal}: ${result.stderr.trim().split("\n")[0] ?? ""}`);
  if (!row.anchor && !result.stdout.includes("Usage: flo")) throw new Error(`${row.label} printed no usage text; got ${JSON.stringify(result.stdout.slice(0, 80))}`);
  return millis;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

function main(): void {
  const flags = parseFlags(process.argv.slice(2));
  const root = path.resolve(__dirname, "..", "..");
  const flo = path.join(root, "bin", "flo.js");
  const rows: Row[] = [
    { label: "node -e 0", args: ["-e", "0"], anchor: true, millis: [] },
    { label: "flo --help", args: [flo, "--help"], millis: [] },
    { label: "flo aggregate --help", args: [flo, "aggregate", "--help"], millis: [] },
    { label: "flo run --help", args: [flo, "run", "--help"], millis: [] },
    { label: "flo host --help", args: [flo, "host", "--help"], millis: [] },
  ];
  console.log(`machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? "cpu"}, node ${process.version}; load average ${os.loadavg()[0].toFixed(2)}`);
  for (const row of rows) timeOnce(row, root); // warm the page cache for every file each row reads
  for (let r = 0; r < flags.runs; r++) for (const row of rows) row.millis.push(timeOnce(row, root));
  const anchor = median(rows[0].millis);
  console.log(`${flags.runs} runs each, interleaved; median wall time (spawn to exit), ratio to node -e 0 (target <= ${flags.target}x)`);
  const width = Math.max(...rows.map((r) => r.label.length));
  let missed = 0;
  for (const row of rows) {
    const m = median(row.millis);
    const ratio = m / anchor;
    const verdict = row.anchor ? "anchor" : ratio <= flags.target ? "PASS" : "MISS";
    if (verdict === "MISS") missed++;
    console.log(`${row.label.padEnd(width)}  ${m.toFixed(0).padStart(5)} ms  (min ${Math.min(...row.millis).toFixed(0)} ms)  ${ratio.toFixed(2)}x  ${verdict}`);
  }
  if (missed > 0) process.exitCode = 1;
}

main();
