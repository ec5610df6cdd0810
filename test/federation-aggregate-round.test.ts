/**
 * aggregateRound against the silo job contract: every succeeded silo's output is opened through its
 * backend (here the local one, reading the model store), metrics.json is validated once, and a silo
 * whose output breaks the contract is excluded with the reason, in the manifest and the summary.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalSiloCompute } from "../lib/compute/local/compute";
import { aggregateRound } from "../lib/federation/activities";
import type { RoundManifest } from "../lib/federation/manifest";
import type { FederationServices } from "../lib/federation/services";
import type { ModelRef, SiloRoundResult } from "../lib/federation/types";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../lib/models/safetensors";
import { ModelStore } from "../lib/models/store";
import { blobUri, siloUpdateFolder } from "../lib/models/storeLayout";
import { parseSpec, type FederationSpec } from "../lib/spec";
import { useAzurite } from "./helpers/azurite";

const SPEC = `
name: contract
rounds: 1
silos:
  - {name: east, compute: {type: local}}
  - {name: west, compute: {type: local}}
  - {name: north, compute: {type: local}}
training:
  command: node train.js --out \${{outputs.model_update}}
aggregation: {strategy: fedavg}
policy: {minSilos: 2, roundTimeout: PT1H}
`;

const azurite = useAzurite({ services: ["blob"] });
let store: ModelStore;
let jobsRoot: string;
let compute: LocalSiloCompute;
let services: FederationServices;
let specRef: ModelRef;
const federationId = "contract";

beforeAll(async () => {
  store = ModelStore.fromConnectionString(azurite.connectionString, "flo");
  await store.ensureContainer();
  const spec: FederationSpec = parseSpec(SPEC, { format: "yaml", source: "contract.yaml" });
  const written = await store.putBytes("specs/contract.yaml", Buffer.from(SPEC));
  specRef = { uri: written.uri, sha256: written.sha256 };
  jobsRoot = mkdtempSync(join(tmpdir(), "flo-aggregate-round-"));
  const unused = () => Promise.reject(new Error("not used by aggregateRound"));
  compute = new LocalSiloCompute({
    root: jobsRoot,
    env: {},
    transfer: { source: (uri) => store.source(store.pathFromUri(uri)), downloadFolder: unused, uploadFolder: unused, uploadFile: unused },
    events: { publish: unused },
  });
  services = { store, loadSpec: async () => spec, computeFor: () => compute } as unknown as FederationServices;
  const outputs: Record<string, { weights: number[]; metrics: string }> = {
    east: { weights: [1, 2], metrics: JSON.stringify({ num_examples: 1, metrics: { loss: 0.4 }, global_metrics: { loss: 0.9 } }) },
    west: { weights: [5, 6], metrics: JSON.stringify({ num_examples: 3, metrics: { loss: 0.2 }, global_metrics: { loss: 0.5 } }) },
    // An update trained on no examples carries no weight: the contract refuses it.
    north: { weights: [100, 100], metrics: JSON.stringify({ num_examples: 0, metrics: { loss: 0.1 } }) },
  };
  for (const [silo, output] of Object.entries(outputs)) {
    const folder = siloUpdateFolder(federationId, 1, silo);
    await writeSafetensors(store.sink(`${folder}model.safetensors`), [{ name: "w", dtype: "F32", shape: [output.weights.length], data: new Uint8Array(new Float32Array(output.weights).buffer) }]);
    await store.putBytes(`${folder}metrics.json`, Buffer.from(output.metrics));
  }
});

afterAll(() => {
  compute?.close();
  rmSync(jobsRoot, { recursive: true, force: true });
});

const results = (): SiloRoundResult[] =>
  ["east", "west", "north"].map((silo) => ({
    silo,
    outcome: "succeeded",
    attempts: [{ attempt: 1, jobName: `flo-${federationId}-r1-${silo}`, state: "completed", rawStatus: "Completed", submittedAt: "2026-12-01T00:00:00.000Z" }],
    outputUri: blobUri(store.containerUrl, siloUpdateFolder(federationId, 1, silo)),
  }));

const northReason = (uri: string) =>
  expect.stringMatching(
    new RegExp(`^cannot open the update at ${uri.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")}: Invalid silo output at .*metrics\\.json: num_examples: expected an integer > 0, got 0$`),
  );

test("a silo whose metrics.json breaks the contract is excluded with the reason; the others are weighted by num_examples", async () => {
  const input = { federationId, spec: specRef, round: 1, sampled: ["east", "west", "north"], results: results(), roundStartedAt: "2026-12-01T00:00:00.000Z", minSilos: 2 };
  const aggregated = await aggregateRound(services, input);
  if (!aggregated.ok) throw new Error(`aggregation failed: ${aggregated.reason}`);
  expect(aggregated.summary.included).toEqual(["east", "west"]);
  expect(aggregated.summary.excluded).toEqual([{ silo: "north", reason: northReason(input.results[2].outputUri!) }]);
  expect(aggregated.summary.metrics.loss).toBeCloseTo((1 * 0.4 + 3 * 0.2) / 4, 12);
  expect(aggregated.summary.globalMetrics.loss).toBeCloseTo((1 * 0.9 + 3 * 0.5) / 4, 12);

  const model = store.source(store.pathFromUri(aggregated.summary.model.uri));
  const weights = new Float32Array(new Uint8Array(await readTensorBytes(model, await readSafetensorsHeader(model), "w")).buffer);
  expect(Array.from(weights)).toEqual([(1 * 1 + 3 * 5) / 4, (1 * 2 + 3 * 6) / 4]);

  const manifest = await store.getJson<RoundManifest>(store.pathFromUri(aggregated.summary.manifestUri));
  expect(manifest.silos.map((s) => [s.silo, s.included, s.numExamples, s.metrics])).toEqual([
    ["east", true, 1, { loss: 0.4 }],
    ["west", true, 3, { loss: 0.2 }],
    ["north", false, undefined, undefined],
  ]);
  expect(manifest.silos[2].reason).toEqual(northReason(input.results[2].outputUri!));
  expect(manifest.totalExamples).toBe(4);
});

test("below quorum after validation, the failed round's manifest names the contract breach", async () => {
  const input = { federationId, spec: specRef, round: 1, sampled: ["east", "west", "north"], results: results(), roundStartedAt: "2026-12-01T00:00:00.000Z", minSilos: 3 };
  const aggregated = await aggregateRound(services, input);
  expect(aggregated).toMatchObject({ ok: false, reason: "quorum not reached after validating updates: 2 valid update(s), policy.minSilos is 3" });
  if (aggregated.ok) return;
  const manifest = await store.getJson<RoundManifest>(store.pathFromUri(aggregated.manifestUri));
  expect(manifest.status).toBe("failed");
  expect(manifest.silos.find((s) => s.silo === "north")?.reason).toEqual(northReason(input.results[2].outputUri!));
  // Every silo left out has a reason, those with a valid update too.
  const notAggregated = "the round was not aggregated: quorum not reached after validating updates: 2 valid update(s), policy.minSilos is 3";
  expect(manifest.silos.filter((s) => s.silo !== "north").map((s) => [s.silo, s.included, s.reason])).toEqual([
    ["east", false, notAggregated],
    ["west", false, notAggregated],
  ]);
});
