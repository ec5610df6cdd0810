/**
 * Typed silo inputs (`silos[].inputs.<name>: {type, path, mode}`): the spec accepts them with errors
 * naming the field, the azureml compute maps them to the REST jobInputType/mode/uri, and the local
 * compute resolves the same shape against local folders.
 * Uses the compiled local compute (dist/): it spawns dist's job runner.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { AzureMlSiloCompute } from "../lib/compute/azureml/compute";
import type { LocalSiloCompute as LocalSiloComputeType } from "../lib/compute/local/compute";
import type { SiloJobRequest } from "../lib/compute/siloCompute";
import { parseSpec, siloDataInputs, siloJobInputs, SpecError } from "../lib/spec";
import { StubArmCredential } from "./fakes/arm/fakeArm";

const SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590";
const WORKSPACE_ID = `/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-east/providers/Microsoft.MachineLearningServices/workspaces/mlw-east`;

const specText = (dataInput: string) => `
name: typed
rounds: 1
silos:
  - name: east
    compute: {type: azureml, subscriptionId: ${SUBSCRIPTION}, resourceGroup: rg-east, workspace: mlw-east, computeName: cpu-cluster, exchangeDatastore: flo_exchange}
    inputs: {data: ${dataInput}, region: north}
training:
  command: python train.py --data \${{inputs.data}} --region \${{inputs.region}} --out \${{outputs.model_update}}
  environment: azureml:flo-env:1
aggregation: {strategy: fedavg}
`;

function issuesOf(text: string): string[] {
  try {
    parseSpec(text);
  } catch (error) {
    if (error instanceof SpecError) return error.issues.map((i) => `${i.path}: ${i.message}`);
    throw error;
  }
  return [];
}

describe("spec", () => {
  test("a typed input keeps its type/path/mode (mode defaults to ro_mount); literals stay strings", () => {
    const spec = parseSpec(specText('{type: uri_folder, path: "azureml:claims:3"}'));
    expect(siloDataInputs(spec, "east")).toEqual({ data: { type: "uri_folder", path: "azureml:claims:3", mode: "ro_mount" } });
    expect(siloJobInputs(spec, "east", { federationId: "typed", round: 1 })).toEqual({ region: "north", round: "1", silo: "east", federation_id: "typed" });
  });

  test("errors name the field inside the typed input", () => {
    expect(issuesOf(specText('{type: uri_folder, path: "azureml:claims:3", mode: rw_mount}'))).toEqual(['silos[0].inputs.data.mode: expected one of ro_mount|download|direct, got "rw_mount"']);
    expect(issuesOf(specText('{type: folder, path: "azureml:claims:3"}'))).toEqual(['silos[0].inputs.data.type: expected one of uri_folder|uri_file|mltable|custom_model, got "folder"']);
    expect(issuesOf(specText("{type: uri_file}"))).toEqual(["silos[0].inputs.data.path: expected a string, got missing"]);
  });
});

function request(inputs: SiloJobRequest["inputs"], jobName = "flo-typed-r1-east"): SiloJobRequest {
  return {
    federationId: "typed",
    round: 1,
    silo: "east",
    jobName,
    command: "node train.js --data ${{inputs.data}} --out ${{outputs.model_update}}",
    inputs,
    outputUri: "http://store/typed/r1/east/",
    environment: "azureml:flo-env:1",
    timeoutSeconds: 60,
    tags: {},
  };
}

test("azureml: each type and mode maps to the REST jobInputType and InputDeliveryMode", () => {
  const compute = new AzureMlSiloCompute({
    subscriptionId: SUBSCRIPTION,
    resourceGroup: "rg-east",
    workspace: "mlw-east",
    computeName: "cpu-cluster",
    exchangeDatastore: "flo_exchange",
    credential: new StubArmCredential(),
  });
  const inputs = compute.buildJobBody(
    request({
      data: { kind: "asset", type: "uri_folder", path: "azureml://datastores/claims/paths/2026/", mode: "ro_mount" },
      file: { kind: "asset", type: "uri_file", path: "https://claims.blob.core.windows.net/d/a.csv", mode: "download" },
      table: { kind: "asset", type: "mltable", path: "azureml://datastores/claims/paths/table/", mode: "direct" },
      model: { kind: "asset", type: "custom_model", path: `azureml:${WORKSPACE_ID}/data/base/versions/2`, mode: "download" },
    }),
  ).properties.inputs;
  expect(inputs).toEqual({
    data: { jobInputType: "uri_folder", mode: "ReadOnlyMount", uri: "azureml://datastores/claims/paths/2026/" },
    file: { jobInputType: "uri_file", mode: "Download", uri: "https://claims.blob.core.windows.net/d/a.csv" },
    table: { jobInputType: "mltable", mode: "Direct", uri: "azureml://datastores/claims/paths/table/" },
    model: { jobInputType: "custom_model", mode: "Download", uri: `azureml:${WORKSPACE_ID}/data/base/versions/2` },
  });
  expect(() => compute.buildJobBody(request({ data: { kind: "asset", type: "uri_folder", path: "./data/east", mode: "ro_mount" } }))).toThrow(
    'Invalid Azure ML job setting inputs.data.path: expected an azureml://, https:// URI or a resolved data asset id, got "./data/east"',
  );
});

describe("local compute", () => {
  const DIST_LOCAL = resolve(__dirname, "..", "dist", "lib", "compute", "local", "compute.js");
  let root: string;
  let base: string;
  let compute: LocalSiloComputeType;
  beforeEach(() => {
    if (!existsSync(DIST_LOCAL)) throw new Error(`${DIST_LOCAL} is missing: run \`npm run build\` before this test`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- the compiled module in dist/, which spawns its compiled job runner
    const { LocalSiloCompute } = require(DIST_LOCAL) as { LocalSiloCompute: typeof LocalSiloComputeType };
    root = mkdtempSync(join(tmpdir(), "flo-typed-root-"));
    base = mkdtempSync(join(tmpdir(), "flo-typed-base-"));
    mkdirSync(join(base, "data", "east"), { recursive: true });
    const noTransfer = async (): Promise<never> => {
      throw new Error("not used");
    };
    compute = new LocalSiloCompute({
      root,
      baseDir: base,
      env: {},
      monitorIntervalMs: 3_600_000,
      events: { publish: async () => undefined },
      transfer: { source: () => ({}) as never, downloadFolder: noTransfer, uploadFolder: noTransfer, uploadFile: noTransfer },
    });
  });
  afterEach(() => {
    compute.close();
    rmSync(root, { recursive: true, force: true });
    rmSync(base, { recursive: true, force: true });
  });

  test("a typed input's path is a local folder, resolved against the spec's folder", async () => {
    await compute.submit(request({ data: { kind: "asset", type: "uri_folder", path: "data/east", mode: "ro_mount" } }));
    const job = JSON.parse(readFileSync(join(root, "flo-typed-r1-east", "job.json"), "utf8")) as { argv: string[] };
    expect(job.argv).toEqual(["node", "train.js", "--data", join(base, "data", "east"), "--out", join(root, "flo-typed-r1-east", "outputs", "model_update")]);
  });

  test("an Azure ML reference or a missing folder is an error naming the input", async () => {
    await expect(compute.submit(request({ data: { kind: "asset", type: "uri_folder", path: "azureml:claims:3", mode: "ro_mount" } }, "job-a"))).rejects.toThrow(
      'inputs.data.path: expected a local file or folder on local compute, got "azureml:claims:3" (an Azure ML reference)',
    );
    await expect(compute.submit(request({ data: { kind: "asset", type: "uri_folder", path: "data/west", mode: "ro_mount" } }, "job-b"))).rejects.toThrow(
      `inputs.data.path: expected an existing local file or folder, got "data/west" (${join(base, "data", "west")} does not exist)`,
    );
  });
});
