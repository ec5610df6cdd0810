/**
 * A lying silo in a real local federation: FedAvg weighs each update by the num_examples its silo
 * reports, so one silo claiming 1e12 examples takes the whole average. Two honest silos send w=1
 * (n=100 each), the liar sends w=100 and claims num_examples 1e12. Without caps the global model is
 * ~100 and the manifest and the report flag the dominant silo; aggregation.maxWeightShare bounds the
 * liar's share (or equalizes everyone when the cap is below 1/m); silos[].maxExamples excludes it.
 */
import { finished, readToyModel, startFloHost, toySpec, writeToyData, type FloHost, type ToySilo } from "../helpers/flo";
import { ModelStore } from "../../lib/models/store";
import type { RoundManifest } from "../../lib/federation/manifest";

const CLAIM = 1e12;
// The toy trainer moves a zero model halfway to its target: target 2 -> w=1, target 200 -> w=100.
const SILOS: ToySilo[] = [
  { name: "honest-a", target: [2, 2, 2, 2], n: 100 },
  { name: "honest-b", target: [2, 2, 2, 2], n: 100 },
  { name: "liar", target: [200, 200, 200, 200], n: CLAIM },
];

let flo: FloHost;
let store: ModelStore;

beforeAll(async () => {
  flo = await startFloHost();
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
  writeToyData(flo.dir, SILOS);
}, 60_000);
afterAll(async () => {
  await flo?.stop();
});

function spec(name: string, extra: { maxWeightShare?: number; maxExamples?: number }) {
  const base = toySpec(name, SILOS, { rounds: 1, policy: { minSilos: 2, roundTimeout: "PT1M" } });
  const silos = (base.silos as Record<string, unknown>[]).map((s) => (extra.maxExamples ? { ...s, maxExamples: extra.maxExamples } : s));
  const aggregation = { strategy: "fedavg", ...(extra.maxWeightShare !== undefined ? { maxWeightShare: extra.maxWeightShare } : {}) };
  return { ...base, silos, aggregation };
}

async function run(name: string, extra: { maxWeightShare?: number; maxExamples?: number }): Promise<{ w: number[]; manifest: RoundManifest }> {
  expect((await flo.start(spec(name, extra))).status).toBe(202);
  const status = await flo.waitFor(name, finished, 60_000);
  expect(status.runtimeStatus).toBe("Completed");
  const w = readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
  const manifest = await store.getJson<RoundManifest>(`federations/${name}/rounds/1/manifest.json`);
  return { w, manifest };
}

const shares = (m: RoundManifest) => Object.fromEntries(m.silos.map((s) => [s.silo, s.weightShare]));

it("without caps the liar takes the model (global ~100); the manifest and the report flag its dominant share", async () => {
  const { w, manifest } = await run("liar-uncapped", {});
  // (100*1 + 100*1 + 1e12*100) / (1e12 + 200)
  for (const v of w) expect(v).toBeCloseTo(100, 4);
  expect(manifest.weighting).toMatchObject({ capped: [], equalized: false, dominant: ["liar"] });
  expect(manifest.weighting?.note).toContain("liar weighed more than half of the round");
  expect(shares(manifest).liar).toBeGreaterThan(0.999999);
  const report = await flo.api("federations/liar-uncapped/report");
  expect(report.status).toBe(200);
  expect(await report.text()).toContain('liar: included (n=1000000000000, weight 100.0%) <span class="bad">outweighs all other silos together (no maxWeightShare set)</span>');
}, 90_000);

it("with aggregation.maxWeightShare 0.4 the liar weighs 0.4 and the honest silos 0.3 each: global = 0.3 + 0.3 + 0.4 x 100", async () => {
  const { w, manifest } = await run("liar-capped", { maxWeightShare: 0.4 });
  for (const v of w) expect(v).toBeCloseTo(0.3 * 1 + 0.3 * 1 + 0.4 * 100, 4);
  const s = shares(manifest);
  expect(s.liar).toBeCloseTo(0.4, 12);
  expect(s["honest-a"]).toBeCloseTo(0.3, 12);
  expect(s["honest-b"]).toBeCloseTo(0.3, 12);
  expect(manifest.weighting).toMatchObject({ maxWeightShare: 0.4, capped: ["liar"], equalized: false, dominant: [] });
  // The weighted metric means use the capped shares too: the honest silos' loss after training is
  // (1 - 2)^2 = 1, the liar's (100 - 200)^2 = 10000.
  expect(manifest.silos.map((m) => m.metrics?.loss)).toEqual([1, 1, 10000]);
  expect(manifest.metrics.loss).toBeCloseTo(0.3 + 0.3 + 0.4 * 10000, 6);
}, 90_000);

it("a cap below 1/m weighs every update the same, and the manifest says so", async () => {
  const { w, manifest } = await run("liar-equalized", { maxWeightShare: 0.2 });
  for (const v of w) expect(v).toBeCloseTo((1 + 1 + 100) / 3, 4);
  expect(manifest.weighting).toMatchObject({ maxWeightShare: 0.2, equalized: true });
  expect(manifest.weighting?.note).toContain("maxWeightShare 0.2 is below 1/m for the round's updates: every update weighed the same");
}, 90_000);

it("with silos[].maxExamples the liar's update is excluded with the reason, and the global is the honest average", async () => {
  const { w, manifest } = await run("liar-excluded", { maxExamples: 1_000_000 });
  for (const v of w) expect(v).toBeCloseTo(1, 6);
  const liar = manifest.silos.find((s) => s.silo === "liar")!;
  expect(liar.included).toBe(false);
  expect(liar.reason).toBe("num_examples 1000000000000 exceeds silos[2].maxExamples 1000000: update excluded");
  expect(manifest.silos.filter((s) => s.included).map((s) => s.silo)).toEqual(["honest-a", "honest-b"]);
  expect(shares(manifest)).toEqual({ "honest-a": 0.5, "honest-b": 0.5, liar: undefined });
}, 90_000);
