/**
 * A federation whose silos are Azure ML workspaces, end to end on a `flo host` child process: the real
 * @azure/arm-machinelearning client PUTs the silo jobs to the HTTPS fake ARM (trusted through
 * FLO_ARM_CA_FILE) with tokens from the fake managed identity endpoint; the fake's workspaces "train"
 * like the toy trainer, write the contract outputs to each silo's exchange datastore (an HTTPS Azurite
 * with OAuth) and publish the Event Grid events onto the job-events queue; the orchestrator reads the
 * updates with its own identity and aggregates them. The spec is a YAML file written the way an Azure
 * ML user writes one: a local code folder (uploaded once by `flo submit` through the API, registered
 * per workspace by flo), an environment `@latest`, a typed data input from a data asset, an explicit
 * exchange datastore; plus one local silo, which runs the same folder on this machine.
 */
import { cpSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { hashCodeFolder } from "../lib/compute/azureml/code";
import { runSubmit } from "../lib/cli/submit";
import type { ModelStore } from "../lib/models/store";
import { validateJobPutBody, type FakeArm, type FakeJob, type FakeTrainingResult } from "./fakes/arm/fakeArm";
import { AZUREML_SUBSCRIPTION, startAzureMlFederationHost, type AzureMlFederationHost } from "./helpers/azuremlFederation";
import { expectedToyModel, finished, FUNCTION_KEY, readToyModel, TOY_TEAM, TOY_TRAINER_DIR, toyModelBytes, writeToyData, type FloHost, type ToySilo } from "./helpers/flo";

const silos: readonly ToySilo[] = TOY_TEAM;
/** A silo on this machine in the same federation: it runs the code folder itself, not the upload. */
const localSilo: ToySilo = { name: "south", target: [0, 2, 0, 2], n: 200 };
const SUBSCRIPTION = AZUREML_SUBSCRIPTION;
const FEDERATION = "fraud-aml";
const ROUNDS = 2;

const specYaml = `name: ${FEDERATION}
rounds: ${ROUNDS}
silos:
${silos
  .map(
    (s) => `  - name: ${s.name}
    compute:
      type: azureml
      subscriptionId: ${SUBSCRIPTION}
      resourceGroup: rg-${s.name}
      workspace: mlw-${s.name}
      computeName: cpu-cluster
      exchangeDatastore: flo_exchange
    inputs:
      data: {type: uri_folder, path: "azureml:claims:3"}
`,
  )
  .join("")}  - name: ${localSilo.name}
    compute: {type: local}
    inputs: {data: data/${localSilo.name}}
training:
  command: node toy-trainer.js $[[--global \${{inputs.global_model}}]] --out \${{outputs.model_update}} --data \${{inputs.data}} --round \${{inputs.round}}
  code: trainer
  environment: azureml:flo-env@latest
aggregation: {strategy: fedavg}
policy: {minSilos: ${silos.length + 1}, roundTimeout: PT2M}
`;

let env: AzureMlFederationHost;
let fake: FakeArm;
let flo: FloHost;
let orchestratorStore: ModelStore;

/** What the toy trainer does, run by the fake workspace: read the mounted global model, move halfway to the silo's target. */
async function trainLikeToyTrainer(job: FakeJob): Promise<FakeTrainingResult> {
  const silo = silos.find((s) => s.name === (job.properties.tags as Record<string, string>).floSilo);
  if (!silo) return { fail: `unknown silo tag on ${job.name}` };
  const globalUri = (job.properties.inputs as Record<string, { uri?: string }>).global_model?.uri;
  const global = globalUri ? readToyModel(await orchestratorStore.getBytes(orchestratorStore.pathFromUri(`${globalUri}model.safetensors`))) : [0, 0, 0, 0];
  const w = global.map((v, i) => Math.fround(v + 0.5 * (silo.target[i] - v)));
  const loss = (x: number[]) => x.reduce((acc, v, i) => acc + (v - silo.target[i]) ** 2, 0) / x.length;
  const metrics: Record<string, unknown> = { num_examples: silo.n, metrics: { loss: loss(w) } };
  if (globalUri) metrics.global_metrics = { loss: loss(global) };
  return { model: toyModelBytes(w), metrics };
}

beforeAll(async () => {
  env = await startAzureMlFederationHost({ silos: silos.map((s) => s.name), run: trainLikeToyTrainer, hostDirPrefix: "flo-aml-e2e-" });
  ({ fake, flo, store: orchestratorStore } = env);
  for (const s of silos) {
    fake.addAssetVersion(`mlw-${s.name}`, "environments", "flo-env", "1");
    fake.addAssetVersion(`mlw-${s.name}`, "environments", "flo-env", "2");
    fake.addAssetVersion(`mlw-${s.name}`, "data", "claims", "3", { dataType: "uri_folder", dataUri: `azureml://datastores/claims/paths/${s.name}/` });
  }
}, 60_000);

afterAll(async () => {
  await env?.close();
}, 30_000);

it("runs 2 rounds on 3 Azure ML silos and a local one, submitted with flo submit: code uploaded once, complete job PUTs, FedAvg of the silos' updates", async () => {
  // The user's project folder (the host's base folder, so the local silo finds it too): the spec, the
  // trainer, files its .gitignore keeps out of the upload, and the local silo's data.
  const project = flo.dir;
  mkdirSync(join(project, "trainer", "__pycache__"), { recursive: true });
  for (const file of ["toy-trainer.js", "toy-model.js"]) cpSync(join(TOY_TRAINER_DIR, file), join(project, "trainer", file));
  writeFileSync(join(project, "trainer", ".gitignore"), "__pycache__/\n*.log\n");
  writeFileSync(join(project, "trainer", "__pycache__", "x.pyc"), "cache");
  writeFileSync(join(project, "trainer", "debug.log"), "log");
  writeToyData(project, [localSilo]);
  const specFile = join(project, "federation.yaml");
  writeFileSync(specFile, specYaml);

  // What the user runs: a dry run first (uploads the code, runs the preflight), then the submission.
  const calls: string[] = [];
  const recordingFetch: typeof fetch = (input, init) => {
    calls.push(`${init?.method ?? "GET"} ${(input instanceof Request ? input.url : input.toString()).replace(flo.url, "")}`);
    return fetch(input, init);
  };
  const submit = async (dryRun: boolean) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runSubmit(
      { spec: specFile, api: `${flo.url}/api/`, dryRun, baseDir: project },
      { out: (l) => out.push(l), err: (l) => err.push(l) },
      { env: { FLO_FUNCTION_KEY: FUNCTION_KEY }, fetch: recordingFetch },
    );
    return { code, out: out.join("\n"), err: err.join("\n") };
  };
  const digest = hashCodeFolder(join(project, "trainer")).digest;
  const codeUri = `${orchestratorStore.containerUrl}/code/${digest}/`;
  const dryRun = await submit(true);
  expect(dryRun.out).toContain(`code trainer: 3 file(s), sha256 ${digest}, uploaded to ${codeUri}`);
  const checks = JSON.parse(dryRun.out.slice(dryRun.out.indexOf("{"))) as { checks: { silo: string; check: string; result: string; detail: string }[] };
  expect(checks.checks.find((c) => c.check === "uploaded code")).toMatchObject({ silo: "(spec)", result: "pass" });
  for (const s of silos) {
    expect(checks.checks.find((c) => c.silo === s.name && c.check === "code")).toMatchObject({ result: "pass", detail: `${codeUri}: registered at submission as flo-code:${digest.slice(0, 16)}` });
  }
  const started = await submit(false);
  expect({ code: started.code, err: started.err }).toEqual({ code: 0, err: "" });
  expect(started.out).toContain(`code trainer: 3 file(s), sha256 ${digest}, already at ${codeUri}`);
  expect(calls).toEqual([`GET /api/code/${digest}`, `PUT /api/code/${digest}`, "POST /api/federations?dryRun=true", `GET /api/code/${digest}`, "POST /api/federations"]);
  // The stored folder: the files not ignored, and the manifest written last.
  expect(await orchestratorStore.getJson(`code/${digest}/.flo-code.json`)).toEqual({ digest, files: [".gitignore", "toy-model.js", "toy-trainer.js"] });
  expect(await orchestratorStore.exists(`code/${digest}/debug.log`)).toBe(false);

  const status = await flo.waitFor(FEDERATION, finished, 90_000);
  expect({ runtimeStatus: status.runtimeStatus, failure: status.failure }).toEqual({ runtimeStatus: "Completed", failure: undefined });
  await fake.settle();
  expect(fake.publishErrors).toEqual([]);
  // Each job went Queued -> Running -> Completed, and every event was delivered to (and consumed from) job-events.
  expect(fake.publishedEvents.map((e) => `${e.data.runId} ${e.data.runStatus}`).filter((e) => e.endsWith("Completed")).length).toBe(silos.length * ROUNDS);
  expect(fake.publishedEvents.length).toBe(3 * silos.length * ROUNDS);
  expect(await flo.peek("job-events")).toEqual([]);
  expect(await flo.peek("job-events-rejected")).toEqual([]);

  // One PUT per silo and round, each a complete command job (inputs and outputs with their URIs).
  const puts = fake.requestsTo("PUT", "/jobs/");
  expect(puts.map((r) => r.path.split("/").pop()).sort()).toEqual([1, 2].flatMap((r) => silos.map((s) => `flo-${FEDERATION}-r${r}-${s.name}`)).sort());
  for (const put of puts) {
    expect({ path: put.path, problems: validateJobPutBody(put.body) }).toEqual({ path: put.path, problems: [] });
    const p = (put.body as { properties: Record<string, any> }).properties;
    const silo = p.tags.floSilo as string;
    const round = Number(p.tags.floRound);
    expect(put.path).toBe(`/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-${silo}/providers/Microsoft.MachineLearningServices/workspaces/mlw-${silo}/jobs/flo-${FEDERATION}-r${round}-${silo}`);
    expect(p.tags).toEqual({ floFederation: FEDERATION, floRound: String(round), floSilo: silo, floKind: "train", floApp: "flo" });
    const workspaceId = `/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-${silo}/providers/Microsoft.MachineLearningServices/workspaces/mlw-${silo}`;
    expect(p.codeId).toBe(`${workspaceId}/codes/flo-code/versions/${digest.slice(0, 16)}`);
    expect(p.environmentId).toBe(`${workspaceId}/environments/flo-env/versions/2`);
    expect(p.computeId).toMatch(new RegExp(`/workspaces/mlw-${silo}/computes/cpu-cluster$`));
    expect(p.outputs.model_update).toEqual({ jobOutputType: "uri_folder", mode: "ReadWriteMount", uri: `azureml://datastores/flo_exchange/paths/flo/${FEDERATION}/r${round}/${silo}/` });
    expect(p.inputs.data).toEqual({ jobInputType: "uri_folder", mode: "ReadOnlyMount", uri: `azureml:${workspaceId}/data/claims/versions/3` });
    if (round === 1) expect(p.inputs).not.toHaveProperty("global_model");
    else {
      // Round 2 trains from the model round 1 produced, in the orchestrator's storage.
      expect(p.inputs.global_model).toEqual({
        jobInputType: "uri_folder",
        mode: "ReadOnlyMount",
        uri: `${orchestratorStore.containerUrl}/federations/${FEDERATION}/rounds/2/global/`,
      });
    }
  }

  // The code version was registered once per workspace, pointing at the uploaded folder, and reused in round 2.
  const codePuts = fake.requestsTo("PUT", "/codes/");
  expect(codePuts.map((r) => r.path).sort()).toEqual(
    silos
      .map((s) => `/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-${s.name}/providers/Microsoft.MachineLearningServices/workspaces/mlw-${s.name}/codes/flo-code/versions/${digest.slice(0, 16)}`)
      .sort(),
  );
  for (const put of codePuts) expect((put.body as { properties: { codeUri: string } }).properties.codeUri).toBe(codeUri);
  for (const s of silos) expect(fake.assetVersions(`mlw-${s.name}`, "codes", "flo-code")).toEqual([digest.slice(0, 16)]);

  // The local silo ran the folder itself, in both rounds.
  const localJobs = readdirSync(join(project, "jobs")).filter((name) => name.endsWith(`-${localSilo.name}`));
  expect(localJobs.sort()).toEqual([1, 2].map((r) => `flo-${FEDERATION}-r${r}-${localSilo.name}`));

  // The final model is FedAvg of all four silos' toy updates.
  const team = [...silos, localSilo];
  const w = readToyModel(await orchestratorStore.getBytes(orchestratorStore.pathFromUri(status.output.finalModel.uri)));
  expectedToyModel(team, ROUNDS).forEach((v, i) => expect(w[i]).toBeCloseTo(v, 6));

  // Every round's manifest records the code the azureml silos ran, by content digest, and each silo's update.
  for (const round of [1, 2]) {
    expect((await orchestratorStore.getJson<any>(`federations/${FEDERATION}/rounds/${round}/manifest.json`)).code).toEqual({ uri: codeUri, sha256: digest });
  }
  const manifest = await orchestratorStore.getJson<any>(`federations/${FEDERATION}/rounds/2/manifest.json`);
  expect(manifest.silos.filter((s: any) => s.silo !== localSilo.name).map((s: any) => [s.silo, s.update?.uri, s.numExamples])).toEqual(
    silos.map((s) => [s.name, `azureml://datastores/flo_exchange/paths/flo/${FEDERATION}/r2/${s.name}/`, s.n]),
  );
  expect(manifest.silos.find((s: any) => s.silo === localSilo.name)).toMatchObject({ included: true, numExamples: localSilo.n });

  // Every token came from the managed identity endpoint, for the configured user-assigned identity.
  expect(env.identity.requests.length).toBeGreaterThan(0);
  expect(new Set(env.identity.requests.map((r) => r.clientId))).toEqual(new Set([env.clientId]));
  // ARM tokens: the SDK scopes them to its endpoint (https://management.azure.com in Azure, the fake here).
  expect(new Set(env.identity.requests.map((r) => r.resource.replace(/\/+$/, "")))).toEqual(new Set([fake.url, "https://storage.azure.com"]));
}, 120_000);
