/**
 * A fixed slice of the fault-injection campaign (`npm run chaos` runs 100 schedules): five seeded
 * schedules on a `flo host` child with an external Azurite, one per fault kind below, every
 * invariant checked. And the clock test hook the campaign needs is off unless its setting enables it.
 */
import { formatTable, runCampaign, type FaultKind } from "../bench/chaos";
import { TEST_CLOCK_ROUTE } from "../lib/runtime/testClockHook";
import { MASTER_KEY, startFloHost } from "./helpers/flo";

it("the clock test hook does not exist on a host whose settings do not enable it", async () => {
  const flo = await startFloHost();
  try {
    const res = await fetch(`${flo.url}${TEST_CLOCK_ROUTE}`, {
      method: "POST",
      headers: { "x-functions-key": MASTER_KEY, "content-type": "application/json" },
      body: JSON.stringify({ jumpSeconds: 3600 }),
    });
    expect(res.status).toBe(404);
  } finally {
    await flo.stop();
  }
}, 120_000);

it("five chaos schedules (host killed while submitting, corrupted update, clock jump, malformed burst, delayed job event) keep every invariant", async () => {
  const kinds: FaultKind[] = ["host-kill:submitting", "update-corrupted", "clock-jump", "malformed-burst", "event-delayed"];
  const lines: string[] = [];
  const result = await runCampaign({ schedules: 5, seed: 7, kinds, parallel: 3, log: (l) => lines.push(l) });
  const violations = result.results.flatMap((r) => r.violations.map((v) => `schedule ${r.schedule.index}: ${v}`));
  expect({ violations, log: violations.length ? lines : [] }).toEqual({ violations: [], log: [] });
  // Each kind really happened (the table counts injected faults only).
  for (const kind of kinds) expect([kind, result.table.get(kind)!.count >= 1]).toEqual([kind, true]);
  expect(formatTable(result)).toMatch(/^fault kind\s+count\s+same silos\s+violations/);
}, 600_000);
