/**
 * Issue #6's robustness check as a real local federation: five non-IID silos train a softmax
 * classifier (test/fixtures/trainers/blobs-trainer.js); one silo poisons: it trains on flipped
 * labels and sends its update scaled by 100 (model replacement).
 * FedAvg degrades; median, trimmed-mean and krum keep the final model within 5 accuracy points
 * of the clean FedAvg run. Accuracy is measured here, on a balanced held-out set.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { ModelStore } from "../lib/models/store";
import { finished, startFloHost, TOY_TRAINER_DIR, type FloHost } from "./helpers/flo";

// eslint-disable-next-line @typescript-eslint/no-require-imports -- a plain JavaScript fixture trainer
const blobs = require(join(TOY_TRAINER_DIR, "blobs-trainer.js")) as {
  generate(seed: number, n: number, mix: number[]): { xs: number[][]; ys: number[] };
  accuracy(w: number[], data: { xs: number[][]; ys: number[] }): number;
  readW(file: string): number[];
};

const SILOS = [
  { name: "s1", mix: [0.6, 0.2, 0.2] },
  { name: "s2", mix: [0.2, 0.6, 0.2] },
  { name: "s3", mix: [0.2, 0.2, 0.6] },
  { name: "s4", mix: [0.4, 0.4, 0.2] },
  { name: "s5", mix: [0.4, 0.2, 0.4] },
];
const heldOut = blobs.generate(999, 3000, [1 / 3, 1 / 3, 1 / 3]);

let flo: FloHost;
let store: ModelStore;
beforeAll(async () => {
  flo = await startFloHost();
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
  for (const poisoned of [false, true]) {
    SILOS.forEach((s, i) => {
      const dir = join(flo.dir, "data", `${poisoned ? "p" : "c"}-${s.name}`);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "data.json"), JSON.stringify({ seed: i + 1, n: 200, mix: s.mix, ...(poisoned && s.name === "s1" ? { poisonScale: 100, flipLabels: true } : {}) }));
    });
  }
});
afterAll(async () => {
  await flo?.stop();
});

function spec(name: string, poisoned: boolean, aggregation: Record<string, unknown>) {
  return {
    name,
    rounds: 4,
    silos: SILOS.map((s) => ({ name: s.name, compute: { type: "local" }, inputs: { data: `data/${poisoned ? "p" : "c"}-${s.name}` } })),
    training: {
      command: "node blobs-trainer.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}} --data ${{inputs.data}} --epochs 10",
      code: TOY_TRAINER_DIR,
    },
    aggregation,
    policy: { minSilos: 5, roundTimeout: "PT2M" },
  };
}

async function finalAccuracy(id: string): Promise<number> {
  const status = await flo.waitFor(id, finished, 100_000);
  expect(status.runtimeStatus).toBe("Completed");
  const file = join(flo.dir, `${id}.safetensors`);
  await store.downloadToFile(store.pathFromUri(status.output.finalModel.uri), file);
  return blobs.accuracy(blobs.readW(file), heldOut);
}

it("fedavg degrades under a silo scaling its update by 100; median, trimmed-mean and krum stay within 5 points", async () => {
  const runs: [string, boolean, Record<string, unknown>][] = [
    ["clean-fedavg", false, { strategy: "fedavg" }],
    ["poisoned-fedavg", true, { strategy: "fedavg" }],
    ["poisoned-median", true, { strategy: "median" }],
    ["poisoned-trimmed", true, { strategy: "trimmed-mean", beta: 0.2 }],
    ["poisoned-krum", true, { strategy: "krum", byzantine: 1 }],
  ];
  for (const [id, poisoned, aggregation] of runs) expect((await flo.start(spec(id, poisoned, aggregation))).status).toBe(202);
  const accuracy: Record<string, number> = {};
  for (const [id] of runs) accuracy[id] = await finalAccuracy(id);
  console.log(`final accuracy on the held-out set: ${JSON.stringify(accuracy)}`);
  const clean = accuracy["clean-fedavg"];
  expect(clean).toBeGreaterThan(0.75);
  expect(accuracy["poisoned-fedavg"]).toBeLessThan(clean - 0.05);
  for (const id of ["poisoned-median", "poisoned-trimmed", "poisoned-krum"]) expect(accuracy[id]).toBeGreaterThanOrEqual(clean - 0.05);
  const krum = await store.getJson<any>("federations/poisoned-krum/rounds/1/manifest.json");
  expect(krum.strategy).toMatchObject({ name: "krum", options: { byzantine: 1 } });
}, 240_000);
