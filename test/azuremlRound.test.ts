/**
 * One federation round with two Azure ML silos, through flo's real activities: submitSiloJob PUTs the
 * jobs to a fake ARM whose workspaces run them (writing each silo's update to its own exchange
 * storage and raising Event Grid-shaped events), and aggregateRound reads the updates through
 * datastore resolution with the orchestrator's token and averages them into the next global model.
 */
import { createHash } from "node:crypto";
import { StorageSharedKeyCredential } from "@azure/storage-blob";
import { azureMlSiloComputeFromSettings } from "../lib/compute/azureml/settings";
import type { AzureMlSiloCompute } from "../lib/compute/azureml/compute";
import type { AzureMlEventGridEvent } from "../lib/compute/azureml/events";
import { parseJobEvent } from "../lib/compute/backends";
import type { FloJobEvent } from "../lib/compute/jobEvents";
import { aggregateRound, getSiloJobStatus, submitSiloJob } from "../lib/federation/activities";
import type { FederationServices } from "../lib/federation/services";
import type { ModelRef, SiloRoundResult } from "../lib/federation/types";
import { ModelStore } from "../lib/models/store";
import { readSafetensorsHeader, readTensorBytes } from "../lib/models/safetensors";
import { parseSpec, type FederationSpec } from "../lib/spec";
import { generateTestCertificate, type TestCertificate } from "./fakes/arm/cert";
import { FakeArm, StubArmCredential, type FakeJob } from "./fakes/arm/fakeArm";
import { AZURITE_ACCOUNT, AZURITE_KEY, FakeStorageTokenCredential, startHttpsAzuriteBlob, type HttpsBlobServer } from "./fakes/arm/httpsBlob";
import { useAzurite } from "./helpers/azurite";

const SPEC = `
name: fraud-az
rounds: 1
silos:
  - name: east
    compute: {type: azureml, subscriptionId: 0b1f6471-1bf0-4dda-aec3-cb9272f09590, resourceGroup: rg-east, workspace: mlw-east, computeName: cpu-cluster, exchangeDatastore: flo_exchange}
    inputs: {data: "azureml://datastores/claims/paths/2026/"}
  - name: west
    compute: {type: azureml, subscriptionId: 3c0d9e4a-7f1b-4c2e-9a8d-5e6f7a8b9c0d, resourceGroup: rg-west, workspace: mlw-west, computeName: cpu-cluster, exchangeDatastore: flo_exchange}
    inputs: {data: "azureml://datastores/claims/paths/2026/"}
training:
  command: python train.py $[[--global \${{inputs.global_model}}]] --data \${{inputs.data}} --out \${{outputs.model_update}} --epochs \${{inputs.epochs}}
  environment: azureml:flo-node:1
  parameters: {epochs: 2}
aggregation: {strategy: fedavg}
policy: {minSilos: 2, roundTimeout: PT1H}
`;

/** A one-tensor safetensors file: `w`, F32. */
function safetensors(values: number[]): Buffer {
  const data = Buffer.from(new Float32Array(values).buffer);
  let header = JSON.stringify({ w: { dtype: "F32", shape: [values.length], data_offsets: [0, data.length] } });
  header += " ".repeat((8 - (header.length % 8)) % 8);
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([length, Buffer.from(header), data]);
}

const TRAINED: Record<string, { weights: number[]; examples: number; loss: number }> = {
  east: { weights: [1, 2, 3], examples: 1, loss: 0.4 },
  west: { weights: [5, 6, 7], examples: 3, loss: 0.2 },
};

const azurite = useAzurite({ services: ["blob"] });
let certificate: TestCertificate;
let exchange: HttpsBlobServer;
let fake: FakeArm;
const delivered: AzureMlEventGridEvent[] = [];

beforeAll(async () => {
  certificate = generateTestCertificate();
  exchange = await startHttpsAzuriteBlob(certificate);
  fake = await FakeArm.start({
    certificate,
    blob: {
      serviceUrlFor: () => exchange.accountUrl,
      credential: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
      pipelineOptions: { tlsOptions: { ca: certificate.cert } },
    },
    publishEvent: (event) => {
      delivered.push(JSON.parse(JSON.stringify(event)));
    },
    autoRun: {
      train: (job: FakeJob) => {
        const silo = (job.properties.tags as Record<string, string>).floSilo;
        const trained = TRAINED[silo];
        return { model: safetensors(trained.weights), metrics: { num_examples: trained.examples, metrics: { loss: trained.loss } } };
      },
    },
  });
  for (const silo of ["east", "west"]) {
    fake.addDatastore(`mlw-${silo}`, "flo_exchange", { datastoreType: "AzureBlob", accountName: `${silo}exchange`, containerName: `exchange-${silo}` });
  }
});

afterAll(async () => {
  await fake?.close();
  await exchange?.close();
  certificate?.dispose();
});

test("submit -> silo jobs run in their workspaces -> events correlate -> aggregateRound averages the silos' updates", async () => {
  const store = ModelStore.fromConnectionString(azurite.connectionString, "flo");
  await store.ensureContainer();
  const specText = SPEC;
  const spec: FederationSpec = parseSpec(specText, { format: "yaml", source: "fraud-az.yaml" });
  const specWritten = await store.putBytes("specs/fraud-az.yaml", Buffer.from(specText));
  const specRef: ModelRef = { uri: specWritten.uri, sha256: specWritten.sha256 };
  expect(specRef.sha256).toBe(createHash("sha256").update(specText).digest("hex"));

  const orchestratorToken = new FakeStorageTokenCredential();
  const computes = new Map<string, AzureMlSiloCompute>();
  const services = {
    store,
    messages: undefined as never,
    jobEventsQueue: "job-events",
    parseSpec,
    loadSpec: async (ref: ModelRef) => {
      if (ref.sha256 !== specRef.sha256) throw new Error("unexpected spec");
      return spec;
    },
    computeFor: (silo: FederationSpec["silos"][number]) => {
      if (silo.compute.type !== "azureml") throw new Error("azureml silos only");
      let compute = computes.get(silo.name);
      if (!compute) {
        compute = azureMlSiloComputeFromSettings(silo.compute, {
          credential: new StubArmCredential(),
          blobCredential: orchestratorToken,
          env: { FLO_ARM_ENDPOINT: fake.url, FLO_ARM_CA_FILE: certificate.certPath, FLO_AZUREML_BLOB_ENDPOINT: exchange.accountUrl },
          overrides: { retryOptions: { maxRetries: 0 } },
        });
        computes.set(silo.name, compute);
      }
      return compute;
    },
    close: async () => undefined,
  } as unknown as FederationServices;

  const federationId = "fraud-az";
  const roundStartedAt = new Date().toISOString();
  const submitted = await Promise.all(["east", "west"].map((silo) => submitSiloJob(services, { federationId, spec: specRef, round: 1, silo, attempt: 1 })));
  expect(submitted.map((s) => [s.jobName, s.state, s.outputUri])).toEqual([
    ["flo-fraud-az-r1-east", "queued", "azureml://datastores/flo_exchange/paths/flo/fraud-az/r1/east/"],
    ["flo-fraud-az-r1-west", "queued", "azureml://datastores/flo_exchange/paths/flo/fraud-az/r1/west/"],
  ]);
  const eastPut = fake.requestsTo("PUT", "/workspaces/mlw-east/jobs/flo-fraud-az-r1-east")[0].body as { properties: Record<string, unknown> };
  expect(eastPut.properties.inputs).toMatchObject({
    data: { jobInputType: "literal", value: "azureml://datastores/claims/paths/2026/" },
    epochs: { jobInputType: "literal", value: "2" },
  });
  expect(eastPut.properties.inputs).not.toHaveProperty("global_model"); // round 1, no initial model
  expect(eastPut.properties.tags).toEqual({ floFederation: "fraud-az", floRound: "1", floSilo: "east", floKind: "train", floApp: "flo" });

  await fake.settle();
  expect(fake.publishErrors).toEqual([]);
  const completions = delivered.map((event) => parseJobEvent(Buffer.from(JSON.stringify(event)))).filter((parsed): parsed is FloJobEvent => parsed.kind === "flo-job" && parsed.status === "completed");
  expect(completions.map((e) => [e.federationId, e.round, e.silo, e.jobName]).sort()).toEqual([
    ["fraud-az", 1, "east", "flo-fraud-az-r1-east"],
    ["fraud-az", 1, "west", "flo-fraud-az-r1-west"],
  ]);

  const results: SiloRoundResult[] = [];
  for (const job of submitted) {
    const silo = job.jobName.endsWith("east") ? "east" : "west";
    const confirmed = await getSiloJobStatus(services, { federationId, spec: specRef, round: 1, silo, jobName: job.jobName });
    expect(confirmed.state).toBe("completed");
    results.push({
      silo,
      outcome: "succeeded",
      attempts: [{ attempt: 1, jobName: job.jobName, state: "completed", rawStatus: confirmed.rawStatus, submittedAt: roundStartedAt }],
      outputUri: confirmed.outputUri,
    });
  }

  const aggregated = await aggregateRound(services, {
    federationId,
    spec: specRef,
    round: 1,
    sampled: ["east", "west"],
    results,
    roundStartedAt,
    minSilos: 2,
  });
  if (!aggregated.ok) throw new Error(`aggregation failed: ${aggregated.reason}`);
  expect(aggregated.summary.included.sort()).toEqual(["east", "west"]);
  expect(aggregated.summary.excluded).toEqual([]);
  expect(aggregated.summary.metrics.loss).toBeCloseTo((1 * 0.4 + 3 * 0.2) / 4, 10);

  const globalModel = store.source(store.pathFromUri(aggregated.summary.model.uri));
  const header = await readSafetensorsHeader(globalModel);
  const weights = new Float32Array(new Uint8Array(await readTensorBytes(globalModel, header, "w")).buffer);
  const expected = [0, 1, 2].map((i) => (1 * TRAINED.east.weights[i] + 3 * TRAINED.west.weights[i]) / 4);
  expect(weights.length).toBe(3);
  weights.forEach((value, i) => expect(value).toBeCloseTo(expected[i], 5));

  const manifest = await store.getJson<{ silos: { silo: string; update?: { uri: string }; numExamples?: number }[] }>(store.pathFromUri(aggregated.summary.manifestUri));
  expect(manifest.silos.map((s) => [s.silo, s.update?.uri, s.numExamples])).toEqual([
    ["east", "azureml://datastores/flo_exchange/paths/flo/fraud-az/r1/east/", 1],
    ["west", "azureml://datastores/flo_exchange/paths/flo/fraud-az/r1/west/", 3],
  ]);
  // The orchestrator read the silos' exchange storage with its own token only.
  expect(orchestratorToken.calls).toBeGreaterThan(0);
});
