/**
 * Scheduled retraining end to end: the timer trigger (six-field NCRONTAB from app settings) starts
 * `<spec>-<UTC time>` runs on a `flo host` child process, and skips an occurrence while a run of the
 * same spec is still going.
 */
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { finished, startFloHost, toySpec, writeToyData, type FloHost, type ToySilo } from "./helpers/flo";

const silos: ToySilo[] = [
  { name: "a", target: [1, 2, 3, 4], n: 10, behavior: "sleep:2500" },
  { name: "b", target: [4, 3, 2, 1], n: 30, behavior: "sleep:2500" },
];

let flo: FloHost;
afterAll(async () => {
  await flo?.stop();
});

it("starts a run per occurrence, never two runs of one spec at once", async () => {
  const dir = mkdtempSync(join(tmpdir(), "flo-schedule-"));
  writeToyData(dir, silos);
  const specPath = join(dir, "nightly.json");
  writeFileSync(specPath, JSON.stringify(toySpec("nightly", silos, { rounds: 1 })));
  flo = await startFloHost({ dir, settings: { FLO_RETRAIN_SPEC: specPath, FLO_RETRAIN_SCHEDULE: "*/2 * * * * *" } });
  expect(flo.logs.some((l) => /scheduledRetraining: timerTrigger \(\*\/2 \* \* \* \* \*\)/.test(l))).toBe(true);

  const runs = async () => (await flo.json("federations")).body.federations.filter((f: any) => f.id.startsWith("nightly-"));
  const deadline = Date.now() + 45_000;
  let maxRunning = 0;
  let list: any[] = [];
  while (Date.now() < deadline) {
    list = await runs();
    maxRunning = Math.max(maxRunning, list.filter((f) => !finished(f)).length);
    if (list.filter(finished).length >= 2) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(list.filter(finished).length).toBeGreaterThanOrEqual(2);
  expect(maxRunning).toBe(1);
  for (const run of list) expect(run.id).toMatch(/^nightly-\d{8}t\d{6}z$/);
  for (const run of list.filter(finished)) expect(run.runtimeStatus).toBe("Completed");
  // Each run takes over 2.5 s, so the occurrence 2 s after a start found it running and was skipped.
  const starts = list
    .map((f) => f.id.slice("nightly-".length))
    .sort()
    .map((t: string) => Date.UTC(+t.slice(0, 4), +t.slice(4, 6) - 1, +t.slice(6, 8), +t.slice(9, 11), +t.slice(11, 13), +t.slice(13, 15)));
  for (let i = 1; i < starts.length; i++) expect(starts[i] - starts[i - 1]).toBeGreaterThanOrEqual(4000);
}, 90_000);
