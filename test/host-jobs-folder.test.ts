/**
 * `flo host --data <dir>` keeps local silo jobs under `<dir>/jobs` (next to `<dir>/azurite`) when
 * no FLO_LOCAL_JOBS_DIR setting says otherwise; before, they went to `.flo/jobs` under the working
 * folder whatever the data folder was.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { finished, startFloHost, TOY_TEAM, toySpec, writeToyData, type FloHost } from "./helpers/flo";

let flo: FloHost;
afterEach(async () => {
  await flo?.stop();
});

it("job folders of a federation are created under the host's --data folder", async () => {
  // The helper passes `--data <dir>/host`; without its jobs-folder setting the host chooses.
  flo = await startFloHost({ settings: { FLO_LOCAL_JOBS_DIR: undefined } });
  writeToyData(flo.dir, TOY_TEAM);
  const started = await flo.start(toySpec("jobs-under-data", TOY_TEAM, { rounds: 1 }));
  expect(started.status).toBe(202);
  const status = await flo.waitFor("jobs-under-data", finished);
  expect(status.runtimeStatus).toBe("Completed");
  const jobsRoot = join(flo.dir, "host", "jobs");
  const jobFolders = readdirSync(jobsRoot)
    .filter((name) => name.startsWith("flo-jobs-under-data-r1-"))
    .sort();
  expect(jobFolders).toEqual(TOY_TEAM.map((s) => `flo-jobs-under-data-r1-${s.name}`).sort());
  for (const folder of jobFolders) expect(existsSync(join(jobsRoot, folder, "reported.json"))).toBe(true);
  // Nothing went to the old default under the working folder.
  expect(existsSync(join(process.cwd(), ".flo", "jobs", jobFolders[0]))).toBe(false);
}, 120_000);
