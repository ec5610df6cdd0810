/**
 * The orchestration benchmark's anchor: the cost of K instant trainer processes alone. It starts K
 * `node orchestration-trainer.js --global <dir> --out <dir>` processes at once (a round submits all
 * its jobs at once), from a process at the local job runner's niceness (the trainers inherit it, as
 * they do from the runner), and times the first start to the last exit. No storage, no events, no
 * orchestration: what a round would cost if flo added nothing.
 */
import { fork, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { setPriority, tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";

/** The local job runner's niceness (lib/compute/local/jobRunner.ts), which its trainers inherit. */
const JOB_NICENESS = 10;
const BASELINE_FLAG = "--silo-baseline";

/** Round time over the baseline that a K must stay within; undefined when the benchmark sets none for K. */
export function roundTarget(silos: number): number | undefined {
  if (silos >= 1000) return 2;
  if (silos >= 100) return 1.5;
  return undefined;
}

export interface RoundVerdict {
  ratio: number;
  target?: number;
  /** undefined when there is no target for this K. */
  met?: boolean;
}

export function roundVerdict(silos: number, roundWallMs: number, baselineMs: number): RoundVerdict {
  if (!(baselineMs > 0)) throw new Error(`baselineMs: expected a positive duration, got ${baselineMs}`);
  const ratio = roundWallMs / baselineMs;
  const target = roundTarget(silos);
  return target === undefined ? { ratio } : { ratio, target, met: ratio <= target };
}

/** One line per verdict: "4.10 s = 1.28x the baseline (target <= 1.5x: met)". */
export function describeVerdict(roundWallMs: number, verdict: RoundVerdict): string {
  const target = verdict.target === undefined ? "no target for this K" : `target <= ${verdict.target}x: ${verdict.met ? "met" : "MISSED"}`;
  return `${(roundWallMs / 1000).toFixed(2)} s = ${verdict.ratio.toFixed(2)}x the baseline (${target})`;
}

/** A model the trainers copy, as they copy the global model in rounds after the first. */
function writeGlobalModel(dir: string): void {
  let header = JSON.stringify({ w: { dtype: "F32", shape: [4], data_offsets: [0, 16] } });
  while ((8 + header.length) % 8 !== 0) header += " ";
  const bytes = Buffer.alloc(8 + header.length + 16);
  bytes.writeBigUInt64LE(BigInt(header.length), 0);
  bytes.write(header, 8, "utf8");
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "model.safetensors"), bytes);
}

/** In the baseline's own process: starts the K trainers and resolves with the first start -> last exit, in ms. */
async function spawnTrainers(trainer: string, silos: number): Promise<number> {
  try {
    setPriority(JOB_NICENESS);
  } catch {
    // not permitted here: as the runner, run at normal priority
  }
  const dir = mkdtempSync(join(tmpdir(), "flo-bench-baseline-"));
  try {
    const globalDir = join(dir, "global");
    writeGlobalModel(globalDir);
    const started = performance.now();
    const exits = Array.from(
      { length: silos },
      (_, i) =>
        new Promise<void>((resolve, reject) => {
          const out = join(dir, `out-${i}`);
          const child = spawn(process.execPath, [trainer, "--global", globalDir, "--out", out], { stdio: "ignore" });
          child.on("error", reject);
          child.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`baseline trainer ${i} exited with code ${code}`))));
        }),
    );
    await Promise.all(exits);
    const wallMs = performance.now() - started;
    // Every trainer did its work: its update is the global model's bytes.
    const expected = readFileSync(join(globalDir, "model.safetensors"));
    for (let i = 0; i < silos; i++) {
      if (!readFileSync(join(dir, `out-${i}`, "model.safetensors")).equals(expected)) throw new Error(`baseline trainer ${i} wrote a different update`);
    }
    return wallMs;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Runs the baseline for K trainers in a fresh process; resolves with its wall time in ms. */
export function measureSiloBaseline(trainer: string, silos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = fork(__filename, [BASELINE_FLAG, trainer, String(silos)], { stdio: "inherit" });
    let wallMs: number | undefined;
    child.on("message", (m) => (wallMs = (m as { wallMs: number }).wallMs));
    child.on("error", reject);
    child.on("exit", (code) => (wallMs !== undefined ? resolve(wallMs) : reject(new Error(`the K = ${silos} baseline exited with code ${code} without a result`))));
  });
}

if (require.main === module && process.argv[2] === BASELINE_FLAG) {
  spawnTrainers(process.argv[3], Number(process.argv[4])).then(
    (wallMs) => process.send!({ wallMs }, () => process.exit(0)),
    (err) => {
      console.error(err);
      process.exit(1);
    },
  );
}
