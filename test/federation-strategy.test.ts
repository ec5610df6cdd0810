/**
 * Strategy state through the federation: FedAdam's moments are checkpointed every round, and a
 * federation resumed after a failed round ends with the same model, byte for byte, as one that ran
 * without interruption.
 */
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ModelStore } from "../lib/models/store";
import { readSafetensorsHeader } from "../lib/models/safetensors";
import { expectedToyModel, finished, readToyModel, startFloHost, toySpec, writeToyData, writeToyModel, type FloHost, type ToySilo } from "./helpers/flo";

let flo: FloHost;
let store: ModelStore;
beforeAll(async () => {
  flo = await startFloHost();
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
  writeToyModel(join(flo.dir, "initial.safetensors"), [0, 0, 0, 0]);
});
afterAll(async () => {
  await flo?.stop();
});

const adam = (name: string, silos: ToySilo[]) =>
  toySpec(name, silos, {
    rounds: 3,
    initialModel: "initial.safetensors",
    aggregation: { strategy: "fedadam", serverLr: 0.1 },
    policy: { minSilos: 3, jobRetries: 0, roundTimeout: "PT1M" },
  });

it("resumes FedAdam from its checkpointed moments to the same final model", async () => {
  const steadySilos: ToySilo[] = [
    { name: "a1", target: [1, 1, 1, 1], n: 100 },
    { name: "b1", target: [3, 3, 3, 3], n: 300 },
    { name: "c1", target: [2, 0, 2, 0], n: 100 },
  ];
  const resumedSilos: ToySilo[] = [
    { ...steadySilos[0], name: "a2" },
    { ...steadySilos[1], name: "b2" },
    { ...steadySilos[2], name: "c2", behavior: "fail-round-if:2:block" },
  ];
  writeToyData(flo.dir, [...steadySilos, ...resumedSilos]);
  writeFileSync(join(flo.dir, "data", "c2", "block"), "");

  expect((await flo.start(adam("adam-steady", steadySilos))).status).toBe(202);
  expect((await flo.start(adam("adam-resumed", resumedSilos))).status).toBe(202);
  const steady = await flo.waitFor("adam-steady", finished);
  expect(steady.runtimeStatus).toBe("Completed");
  const failed = await flo.waitFor("adam-resumed", finished);
  expect(failed.runtimeStatus).toBe("Failed");

  // round 1's checkpoint holds the optimizer's moments as state tensors
  const round1 = await store.getJson<any>("federations/adam-resumed/rounds/1/manifest.json");
  const state = await store.getJson<any>(store.pathFromUri(round1.strategy.stateOut.uri));
  expect(Object.keys(state.tensors).sort()).toEqual(["m", "v"]);
  const m = await readSafetensorsHeader(store.source(store.pathFromUri(state.tensors.m.uri)));
  expect(m.tensors.map((t: any) => [t.name, t.shape])).toEqual([["w", [4]]]);

  rmSync(join(flo.dir, "data", "c2", "block"));
  expect((await flo.json("federations/adam-resumed/resume", { method: "POST" })).status).toBe(202);
  const resumed = await flo.waitFor("adam-resumed", finished);
  expect(resumed.runtimeStatus).toBe("Completed");
  expect(resumed.output.finalModel.sha256).toBe(steady.output.finalModel.sha256);

  // FedAdam moved the model, and not the way FedAvg would have
  const w = readToyModel(await store.getBytes(store.pathFromUri(steady.output.finalModel.uri)));
  const fedavg = expectedToyModel(steadySilos, 3);
  expect(w.some((v, i) => Math.abs(v - fedavg[i]) > 0.1)).toBe(true);
  expect(w.every((v) => v > 0)).toBe(true);
}, 120_000);
