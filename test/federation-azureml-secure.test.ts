/**
 * Secure aggregation with Azure ML silos, end to end on a `flo host` child process against the fake
 * ARM. The fake workspaces run each job's real command the way Azure ML would: the code folder flo
 * uploaded (with its flo_secagg/ package) is the working directory, `${{inputs.*}}`/`${{outputs.*}}`
 * are substituted with local copies, `python` is /usr/bin/python3, and the output folder of the
 * job's kind is written to the silo's exchange datastore. The silo's secret key and its reveal
 * records live in a folder standing for the silo's private datastore. The result equals plain FedAvg
 * within the stated bound, and no plain model or count ever reaches an exchange datastore.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { storeCodeUploader, uploadSpecCode, type UploadedCode } from "../lib/compute/azureml/code";
import type { ModelStore } from "../lib/models/store";
import type { RoundManifest } from "../lib/federation/manifest";
import { encodeKey, generateKeyPair, writeSecretKeyFile } from "../lib/secagg/keys";
import type { TestCertificate } from "./fakes/arm/cert";
import { validateJobPutBody, type FakeArm, type FakeJob, type FakeTrainingResult } from "./fakes/arm/fakeArm";
import { AZURITE_ACCOUNT, AZURITE_KEY, type HttpsBlobServer } from "./fakes/arm/httpsBlob";
import { AZUREML_SUBSCRIPTION, startAzureMlFederationHost, type AzureMlFederationHost } from "./helpers/azuremlFederation";
import { expectedToyModel, finished, readToyModel, TOY_TEAM, TOY_TRAINER_DIR, writeToyModel, type FloHost, type ToySilo } from "./helpers/flo";

const silos: readonly ToySilo[] = TOY_TEAM;
const FEDERATION = "secure-aml";
const ROUNDS = 2;
const CLIP_NORM = 10;

let host: AzureMlFederationHost;
let certificate: TestCertificate;
let exchange: HttpsBlobServer;
let fake: FakeArm;
let flo: FloHost;
let orchestratorStore: ModelStore;
let work: string;
let code: UploadedCode;

/** Stands for each silo's private datastore (its secret key and its unmask jobs' reveal records). */
const privateDatastore = (silo: string) => join(work, "private", silo);

async function downloadFolder(uri: string, dir: string): Promise<void> {
  const prefix = `${orchestratorStore.pathFromUri(uri).replace(/\/*$/, "")}/`;
  for (const blob of await orchestratorStore.list(prefix)) {
    const file = join(dir, blob.path.slice(prefix.length));
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, await orchestratorStore.getBytes(blob.path));
  }
}

function listFiles(dir: string): string[] {
  return existsSync(dir)
    ? readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((e) => e.isFile())
        .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    : [];
}

/** Runs a job's command as an Azure ML node would, from the job PUT's body alone. */
async function runLikeAzureMl(job: FakeJob): Promise<FakeTrainingResult> {
  const p = job.properties as { tags: Record<string, string>; command: string; inputs: Record<string, any>; outputs: Record<string, any> };
  const silo = silos.find((s) => s.name === p.tags.floSilo)!;
  const root = mkdtempSync(join(work, `${job.name}-`));
  const codeDir = join(root, "code");
  await downloadFolder(code.uri, codeDir);
  const values = new Map<string, string>();
  for (const [name, input] of Object.entries(p.inputs)) {
    if (input.jobInputType === "literal") values.set(`inputs.${name}`, input.value);
    else if (name === "data") {
      const dir = join(root, "inputs", name);
      mkdirSync(dir, { recursive: true });
      writeFileSync(join(dir, "target.json"), JSON.stringify({ target: silo.target, n: silo.n }));
      values.set(`inputs.${name}`, dir);
    } else if (input.jobInputType === "uri_file") {
      const match = /^azureml:\/\/datastores\/silo_private\/paths\/(.+)$/.exec(input.uri);
      if (!match) return { fail: `input ${name}: not in the silo's private datastore: ${input.uri}` };
      values.set(`inputs.${name}`, join(privateDatastore(silo.name), match[1]));
    } else {
      const dir = join(root, "inputs", name);
      await downloadFolder(input.uri, dir);
      values.set(`inputs.${name}`, dir);
    }
  }
  for (const [name, output] of Object.entries(p.outputs)) {
    const match = /^azureml:\/\/datastores\/silo_private\/paths\/(.+)$/.exec(output.uri);
    const dir = match ? join(privateDatastore(silo.name), match[1]) : join(root, "outputs", name);
    mkdirSync(dir, { recursive: true });
    values.set(`outputs.${name}`, dir);
  }
  const command = p.command
    .replace(/\$\[\[(.*?)\]\]/g, (_all, inner: string) => ([...inner.matchAll(/\$\{\{(.+?)\}\}/g)].every((m) => values.has(m[1])) ? inner : ""))
    .replace(/\$\{\{(.+?)\}\}/g, (_all, key: string) => values.get(key) ?? `<missing ${key}>`);
  const bin = join(root, "bin");
  mkdirSync(bin);
  writeFileSync(join(bin, "python"), '#!/bin/sh\nexec /usr/bin/python3 "$@"\n');
  chmodSync(join(bin, "python"), 0o755);
  const result = spawnSync("/bin/bash", ["-c", command], { cwd: codeDir, env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, PYTHONDONTWRITEBYTECODE: "1" }, encoding: "utf8" });
  if (result.status !== 0) return { fail: `exit ${result.status}: ${result.stderr}` };
  const outputDir = values.get(p.tags.floKind === "unmask" ? "outputs.reveal" : "outputs.model_update")!;
  return { files: Object.fromEntries(listFiles(outputDir).map((f) => [f, readFileSync(join(outputDir, f))])) };
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "flo-aml-secure-"));
  host = await startAzureMlFederationHost({ silos: silos.map((s) => s.name), run: runLikeAzureMl, hostDirPrefix: "flo-aml-secure-host-" });
  ({ certificate, exchange, fake, flo, store: orchestratorStore } = host);
  for (const s of silos) {
    fake.addAssetVersion(`mlw-${s.name}`, "environments", "flo-env", "1");
    fake.addAssetVersion(`mlw-${s.name}`, "data", "claims", "3", { dataType: "uri_folder", dataUri: `azureml://datastores/claims/paths/${s.name}/` });
  }
}, 60_000);

afterAll(async () => {
  await host?.close();
}, 30_000);

it("a secure federation of 3 Azure ML silos masks in the job through flo_secagg, unmasks with Python reveals and ends at plain FedAvg within the bound", async () => {
  const project = mkdtempSync(join(work, "project-"));
  cpSync(TOY_TRAINER_DIR, join(project, "trainer"), { recursive: true });
  writeToyModel(join(flo.dir, "secure-init.safetensors"), [0, 0, 0, 0]);
  const spec = {
    name: FEDERATION,
    rounds: ROUNDS,
    initialModel: "secure-init.safetensors",
    silos: await Promise.all(
      silos.map(async (s) => {
        const pair = generateKeyPair();
        mkdirSync(join(privateDatastore(s.name), "keys"), { recursive: true });
        await writeSecretKeyFile(join(privateDatastore(s.name), "keys", "silo.key"), pair);
        return {
          name: s.name,
          compute: {
            type: "azureml",
            subscriptionId: AZUREML_SUBSCRIPTION,
            resourceGroup: `rg-${s.name}`,
            workspace: `mlw-${s.name}`,
            computeName: "cpu-cluster",
            exchangeDatastore: "flo_exchange",
            secretKey: "azureml://datastores/silo_private/paths/keys/silo.key",
          },
          inputs: { data: { type: "uri_folder", path: "azureml:claims:3" } },
          publicKey: encodeKey(pair.publicKey),
          maxExamples: 1000,
        };
      }),
    ),
    training: {
      command: "node toy-trainer.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}} --data ${{inputs.data}} --round ${{inputs.round}}",
      code: "trainer",
      environment: "azureml:flo-env:1",
    },
    aggregation: { strategy: "fedavg", clipping: { mode: "fixed", norm: CLIP_NORM }, secureAggregation: { rounding: "nearest" } },
    policy: { minSilos: silos.length, roundTimeout: "PT2M", jobRetries: 0 },
  };
  const uploaded = await uploadSpecCode(spec, storeCodeUploader(orchestratorStore), { baseDir: project });
  code = uploaded.code!;
  expect(code.files.filter((f) => f.startsWith("flo_secagg/"))).toEqual(["flo_secagg/__init__.py", "flo_secagg/__main__.py", "flo_secagg/protocol.py", "flo_secagg/safetensors_io.py"]);
  expect(code.files).toContain("toy-trainer.js");

  expect((await flo.start(uploaded.spec)).status).toBe(202);
  const status = await flo.waitFor(FEDERATION, finished, 180_000);
  expect({ runtimeStatus: status.runtimeStatus, failure: status.failure }).toEqual({ runtimeStatus: "Completed", failure: undefined });
  await fake.settle();
  expect(fake.publishErrors).toEqual([]);
  expect(await flo.peek("job-events-rejected")).toEqual([]);

  // Per round and silo: a training job and an unmask job, each a valid command job.
  const puts = fake.requestsTo("PUT", "/jobs/");
  expect(puts.map((r) => r.path.split("/").pop()).sort()).toEqual(
    [1, 2].flatMap((r) => silos.flatMap((s) => [`flo-${FEDERATION}-r${r}-${s.name}`, `flo-${FEDERATION}-r${r}-${s.name}_unmask`])).sort(),
  );
  for (const put of puts) {
    expect({ path: put.path, problems: validateJobPutBody(put.body) }).toEqual({ path: put.path, problems: [] });
    const p = (put.body as { properties: Record<string, any> }).properties;
    expect(p.inputs.secagg_key).toEqual({ jobInputType: "uri_file", mode: "Download", uri: "azureml://datastores/silo_private/paths/keys/silo.key" });
    if (p.tags.floKind === "train") {
      expect(p.command).toBe(
        "python -m flo_secagg mask-run --session ${{inputs.secagg_session}}/" +
          `${p.tags.floSilo}.json --key \${{inputs.secagg_key}} --global \${{inputs.global_model}}/model.safetensors --output \${{outputs.model_update}} -- ` +
          `'node toy-trainer.js $[[--global \${{inputs.global_model}}]] --out "$FLO_SECAGG_PLAIN_OUTPUT" --data \${{inputs.data}} --round \${{inputs.round}}'`,
      );
    } else {
      expect(p.command).toMatch(/^python -m flo_secagg reveal /);
      expect(p.outputs.secagg_records).toEqual({ jobOutputType: "uri_folder", mode: "ReadWriteMount", uri: `azureml://datastores/silo_private/paths/flo-secagg/${FEDERATION}/` });
    }
  }

  // The exchange datastores hold only masked updates, shares and reveals: no plain model, no count.
  const exchangeFiles: string[] = [];
  for (const s of silos) {
    const container = new BlobServiceClient(exchange.accountUrl, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), { tlsOptions: { ca: certificate.cert } } as never).getContainerClient(
      `exchange-${s.name}`,
    );
    for await (const blob of container.listBlobsFlat()) exchangeFiles.push(blob.name.split("/").pop()!);
  }
  expect(new Set(exchangeFiles)).toEqual(new Set(["masked.safetensors", "shares.json", "reveal.json"]));
  // Each silo recorded, in its private datastore, what it revealed for each round's session, and
  // refuses another split for a session it answered (a second roster).
  const records = join(privateDatastore("east"), "flo-secagg", FEDERATION);
  for (const s of silos) expect(listFiles(join(privateDatastore(s.name), "flo-secagg", FEDERATION))).toHaveLength(ROUNDS);
  const unmaskPut = puts.find((r) => r.path.endsWith(`/flo-${FEDERATION}-r2-east_unmask`))!;
  const rerunUnmask = () => runLikeAzureMl({ name: "east-unmask-again", workspaceKey: "mlw-east", properties: (unmaskPut.body as { properties: Record<string, unknown> }).properties } as FakeJob);
  expect(await rerunUnmask()).toEqual({ files: { "reveal.json": expect.any(Buffer) } });
  for (const record of listFiles(records)) writeFileSync(join(records, record), JSON.stringify({ survivors: [1, 2], dropped: [3] }));
  expect(await rerunUnmask()).toEqual({ fail: expect.stringMatching(/SECOND_ROSTER/) });

  const w = readToyModel(await orchestratorStore.getBytes(orchestratorStore.pathFromUri(status.output.finalModel.uri)));
  const plain = expectedToyModel(silos, ROUNDS);
  let tolerance = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const manifest = await orchestratorStore.getJson<RoundManifest>(`federations/${FEDERATION}/rounds/${round}/manifest.json`);
    expect(manifest.secureAggregation!.survivors.sort()).toEqual(silos.map((s) => s.name).sort());
    tolerance += manifest.secureAggregation!.errorBound + 2 * 2 ** -22;
  }
  w.forEach((v, i) => expect(Math.abs(v - plain[i])).toBeLessThanOrEqual(tolerance));
  expect(tolerance).toBeLessThan(1e-5);
}, 240_000);
