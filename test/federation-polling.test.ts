/**
 * A lost completion event costs a status poll, not a round: with the job-events function disabled
 * (`AzureWebJobs.jobEvents.Disabled`, as on the Functions host) no event reaches the orchestration,
 * and the silos' status polls still complete every round.
 */
import { ModelStore } from "../lib/models/store";
import type { LocalJobEvent } from "../lib/compute/local/events";
import { expectedToyModel, finished, readToyModel, startFloHost, toySpec, writeToyData, type FloHost, type ToySilo } from "./helpers/flo";

const silos: ToySilo[] = [
  { name: "east", target: [1, 1, 1, 1], n: 100 },
  { name: "west", target: [3, 3, 3, 3], n: 300 },
];

let flo: FloHost;
afterAll(async () => {
  await flo?.stop();
});

it("completes every round from status polls when no completion event arrives", async () => {
  flo = await startFloHost({ settings: { "AzureWebJobs.jobEvents.Disabled": "true" } });
  expect(flo.logs.some((l) => l.includes("Function jobEvents is disabled"))).toBe(true);
  writeToyData(flo.dir, silos);
  // roundTimeout PT20S: silos poll their job every 2 s
  await flo.start(toySpec("polled", silos, { rounds: 2, policy: { minSilos: 2, roundTimeout: "PT20S" } }));
  const status = await flo.waitFor("polled", finished, 60_000);
  expect(status.runtimeStatus).toBe("Completed");
  // the events were published but nobody consumed them
  const unconsumed = await flo.peek("job-events");
  const completions = unconsumed.map((m) => m.body as LocalJobEvent).filter((e) => e.state === "completed");
  expect(completions.map((e) => e.jobName).sort()).toEqual(["flo-polled-r1-east", "flo-polled-r1-west", "flo-polled-r2-east", "flo-polled-r2-west"]);
  const store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
  const w = readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
  expectedToyModel(silos, 2).forEach((v, i) => expect(w[i]).toBeCloseTo(v, 6));
}, 90_000);
