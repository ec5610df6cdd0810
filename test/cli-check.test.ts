/**
 * `flo check` against the fake ARM and an HTTPS Azurite exchange store: each failure class (missing
 * compute, unresolvable environment, datastore container mismatch, missing read access) is reported
 * with its fix, a good setup passes, and --offline contacts nothing.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { hashCodeFolder } from "../lib/compute/azureml/code";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { AccessToken, TokenCredential } from "@azure/core-auth";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { runCheck } from "../lib/cli/check";
import { azureMlSiloComputeFromSettings, type AzureMlComputeSpec } from "../lib/compute/azureml/settings";
import { startFederation } from "../lib/federation/api";
import type { FederationServices } from "../lib/federation/services";
import { parseSpec, type SiloSpec } from "../lib/spec";
import { generateTestCertificate, type TestCertificate } from "./fakes/arm/cert";
import { FakeArm } from "./fakes/arm/fakeArm";
import { AZURITE_ACCOUNT, AZURITE_KEY, FakeStorageTokenCredential, startHttpsAzuriteBlob, type HttpsBlobServer } from "./fakes/arm/httpsBlob";

const SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590";
const SILOS = ["good", "nocompute", "badenv", "mismatch"] as const;

let certificate: TestCertificate;
let exchange: HttpsBlobServer;
let fake: FakeArm;
let dir: string;
let env: Record<string, string>;

/** The orchestrator's identity: ARM tokens for the fake ARM, storage tokens Azurite accepts (or, for `storage: "refused"`, ones it refuses). */
class OrchestratorCredential implements TokenCredential {
  calls = 0;
  private readonly storage = new FakeStorageTokenCredential();
  constructor(private readonly mode: "granted" | "refused" = "granted") {}
  async getToken(scopes: string | string[]): Promise<AccessToken> {
    this.calls += 1;
    const storageScope = [scopes].flat().some((s) => s.startsWith("https://storage.azure.com"));
    if (storageScope && this.mode === "granted") return this.storage.getToken(scopes);
    // A token for another audience: what storage sees from an identity it has no grant for.
    return { token: "not-a-storage-token", expiresOnTimestamp: Date.now() + 3600_000 };
  }
}

function specFile(silos: readonly string[], name = "checked", trainingLines = ""): string {
  const file = join(dir, `${name}.yaml`);
  const siloLines = silos
    .map(
      (s) => `  - name: ${s}
    compute: {type: azureml, subscriptionId: ${SUBSCRIPTION}, resourceGroup: rg-${s}, workspace: mlw-${s}, computeName: cpu-cluster, exchangeDatastore: flo_exchange, exchangeContainer: flo-exchange}
    inputs: {data: {type: uri_folder, path: "azureml:claims@latest"}}`,
    )
    .join("\n");
  writeFileSync(
    file,
    `name: ${name}
rounds: 1
silos:
${siloLines}
training:
  command: python train.py --data \${{inputs.data}} --out \${{outputs.model_update}}
  environment: azureml:flo-env@latest
${trainingLines}aggregation: {strategy: fedavg}
`,
  );
  return file;
}

async function check(file: string, options: { offline?: boolean; credential?: OrchestratorCredential } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const credential = options.credential ?? new OrchestratorCredential();
  const code = await runCheck({ spec: file, offline: options.offline, baseDir: dir }, { out: (l) => out.push(l), err: (l) => err.push(l) }, { env, credential: () => credential });
  return { code, out: out.join("\n"), err: err.join("\n"), credential };
}

/** The row of one silo and check, with its fix line when there is one. */
function row(output: string, silo: string, checkName: string): { result: string; detail: string; fix?: string } {
  const lines = output.split("\n");
  const index = lines.findIndex((l) => new RegExp(`^${silo}\\s+${checkName}\\s{2,}`).test(l));
  if (index < 0) throw new Error(`no row ${silo}/${checkName} in:\n${output}`);
  const [result, ...detail] = lines[index].replace(new RegExp(`^${silo}\\s+${checkName}\\s+`), "").split(/\s{2,}/);
  const fix = /^\s+fix: (.*)$/.exec(lines[index + 1] ?? "")?.[1];
  return { result, detail: detail.join("  "), ...(fix ? { fix } : {}) };
}

beforeAll(async () => {
  certificate = generateTestCertificate();
  exchange = await startHttpsAzuriteBlob(certificate);
  fake = await FakeArm.start({ certificate });
  const service = new BlobServiceClient(exchange.accountUrl, new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY), { tlsOptions: { ca: certificate.cert } } as never);
  await service.getContainerClient("flo-exchange").createIfNotExists();
  await service.getContainerClient("shared-data").createIfNotExists();
  for (const silo of SILOS) {
    const workspace = `mlw-${silo}`;
    if (silo !== "nocompute") fake.addCompute(workspace, "cpu-cluster", { maxNodeCount: 4 });
    if (silo !== "badenv") {
      fake.addAssetVersion(workspace, "environments", "flo-env", "1");
      fake.addAssetVersion(workspace, "environments", "flo-env", "2");
    }
    fake.addAssetVersion(workspace, "data", "claims", "7");
    fake.addDatastore(workspace, "flo_exchange", { datastoreType: "AzureBlob", accountName: `${silo}exchange`, containerName: silo === "mismatch" ? "shared-data" : "flo-exchange" });
  }
  dir = mkdtempSync(join(tmpdir(), "flo-check-"));
  env = { FLO_ARM_ENDPOINT: fake.url, FLO_ARM_CA_FILE: certificate.certPath, FLO_AZUREML_BLOB_ENDPOINT: exchange.accountUrl };
}, 60_000);

afterAll(async () => {
  await fake?.close();
  await exchange?.close();
  certificate?.dispose();
});

test("a good setup passes every check, with what was found", async () => {
  const { code, out } = await check(specFile(["good"], "good"));
  expect(code).toBe(0);
  expect(row(out, "good", "workspace")).toEqual({ result: "PASS", detail: `mlw-good (resource group rg-good, subscription ${SUBSCRIPTION})` });
  expect(row(out, "good", "compute")).toEqual({ result: "PASS", detail: "cpu-cluster: AmlCompute, up to 4 nodes" });
  const workspaceId = `/subscriptions/${SUBSCRIPTION}/resourceGroups/rg-good/providers/Microsoft.MachineLearningServices/workspaces/mlw-good`;
  expect(row(out, "good", "environment")).toEqual({ result: "PASS", detail: `azureml:flo-env@latest -> ${workspaceId}/environments/flo-env/versions/2` });
  expect(row(out, "good", "input data")).toEqual({ result: "PASS", detail: `azureml:claims@latest -> ${workspaceId}/data/claims/versions/7` });
  expect(row(out, "good", "exchange datastore")).toEqual({ result: "PASS", detail: "flo_exchange -> goodexchange/flo-exchange" });
  expect(row(out, "good", "exchange read").result).toBe("PASS");
  expect(row(out, "good", "event subscription").result).toBe("SKIPPED");
  expect(out).toContain("flo check: all checks passed");
}, 60_000);

test("each failure class is reported with its fix, and the exit code is 1", async () => {
  const { code, out } = await check(specFile(SILOS));
  expect(code).toBe(1);
  expect(row(out, "nocompute", "compute")).toMatchObject({
    result: "FAIL",
    fix: "create compute cluster cpu-cluster in workspace mlw-nocompute (az ml compute create --type amlcompute), or fix silos[1].compute.computeName",
  });
  expect(row(out, "badenv", "environment")).toMatchObject({
    result: "FAIL",
    detail: `Silo badenv: environment azureml:flo-env@latest does not exist in Azure ML workspace mlw-badenv (resource group rg-badenv, subscription ${SUBSCRIPTION}): no environment named flo-env`,
    fix: "register the environment azureml:flo-env@latest in workspace mlw-badenv (az ml environment create), or fix training.environment",
  });
  expect(row(out, "mismatch", "exchange datastore")).toEqual({
    result: "FAIL",
    detail: "datastore flo_exchange points at container shared-data of account mismatchexchange, not at flo-exchange",
    fix: "point datastore flo_exchange at container flo-exchange (the one the orchestrator was granted), or fix silos[3].compute.exchangeContainer",
  });
  // The good silo in the same run still passes.
  expect(row(out, "good", "compute").result).toBe("PASS");
  expect(out).toContain("flo check: 3 check(s) failed");
}, 60_000);

test("storage refusing the orchestrator's identity is a failed read check naming the role and the container", async () => {
  const { code, out } = await check(specFile(["good"], "noread"), { credential: new OrchestratorCredential("refused") });
  expect(code).toBe(1);
  expect(row(out, "good", "exchange read")).toMatchObject({
    result: "FAIL",
    fix: `grant "Storage Blob Data Reader" on ${exchange.accountUrl}/flo-exchange to the orchestrator's identity`,
  });
  expect(row(out, "good", "environment").result).toBe("PASS");
}, 60_000);

test("--offline validates the spec and contacts nothing; an invalid spec fails with the field", async () => {
  const before = fake.requests.length;
  const { code, out, credential } = await check(specFile(SILOS, "offline"), { offline: true });
  expect(code).toBe(0);
  expect(row(out, "nocompute", "workspace")).toEqual({ result: "SKIPPED", detail: "--offline: Azure not contacted" });
  expect(fake.requests.length).toBe(before);
  expect(credential.calls).toBe(0);

  const bad = join(dir, "bad.yaml");
  writeFileSync(
    bad,
    `name: bad\nrounds: 1\nsilos:\n  - name: a\n    compute: {type: azureml, subscriptionId: ${SUBSCRIPTION}, resourceGroup: rg, workspace: mlw-a, computeName: cpu}\ntraining: {command: "python t.py --out \${{outputs.model_update}}", environment: "azureml:e:1"}\naggregation: {strategy: fedavg}\n`,
  );
  const invalid = await check(bad, { offline: true });
  expect(invalid.code).toBe(1);
  expect(invalid.err).toContain("silos[0].compute.exchangeDatastore: expected a string, got missing");
});

test("a local code folder is hashed where flo check runs (what flo submit would upload); a missing one fails before any call", async () => {
  mkdirSync(join(dir, "trainer"), { recursive: true });
  writeFileSync(join(dir, "trainer", "train.py"), "print(1)\n");
  const digest = hashCodeFolder(join(dir, "trainer")).digest;
  const { code, out } = await check(specFile(["good"], "withcode", "  code: trainer\n"));
  expect(code).toBe(0);
  expect(row(out, "good", "code")).toEqual({ result: "PASS", detail: `trainer: 1 file(s), sha256 ${digest}; flo submit uploads it, submission registers flo-code:${digest.slice(0, 16)}` });

  const before = fake.requests.length;
  const missing = await check(specFile(["good"], "missingcode", "  code: no-such-trainer\n"));
  expect(missing.code).toBe(1);
  expect(missing.err).toBe(`Invalid Azure ML job setting training.code: expected an existing code folder, got ${JSON.stringify(join(dir, "no-such-trainer"))}`);
  expect(fake.requests.length).toBe(before);
}, 60_000);

test("POST /api/federations?dryRun=true runs the same preflight with the services' computes: 422 with the rows, 200 on a good setup", async () => {
  const credential = new OrchestratorCredential();
  const services = {
    parseSpec: (text: string) => parseSpec(text),
    computeFor: (silo: SiloSpec) => azureMlSiloComputeFromSettings(silo.compute as AzureMlComputeSpec, { credential, env }),
  } as unknown as FederationServices;
  // The dry run never touches the Durable client: nothing is started.
  const noClient = undefined as unknown as Parameters<typeof startFederation>[0];
  const failing = await startFederation(noClient, services, { body: readFileSync(specFile(SILOS, "dry"), "utf8"), origin: "http://localhost", dryRun: true });
  expect(failing.status).toBe(422);
  const body = failing.body as { dryRun: boolean; ok: boolean; checks: { silo: string; check: string; result: string; fix?: string }[] };
  expect(body).toMatchObject({ dryRun: true, ok: false });
  expect(body.checks.filter((c) => c.result === "fail").map((c) => `${c.silo}/${c.check}`)).toEqual(["nocompute/compute", "badenv/environment", "mismatch/exchange datastore"]);
  const good = await startFederation(noClient, services, { body: readFileSync(specFile(["good"], "dry-good"), "utf8"), origin: "http://localhost", dryRun: true });
  expect(good.status).toBe(200);
  expect((good.body as { ok: boolean }).ok).toBe(true);
}, 60_000);

test("a secure spec: the environment's conda file must list numpy and cryptography, and the secret key's datastore must exist", async () => {
  const keys = ["a", "b"].map(() => Buffer.alloc(32, 7).toString("base64"));
  const silos = ["secok", "secbad"];
  for (const [i, silo] of silos.entries()) {
    const workspace = `mlw-${silo}`;
    fake.addCompute(workspace, "cpu-cluster", { maxNodeCount: 2 });
    const conda = i === 0 ? "dependencies:\n  - python=3.11\n  - pip:\n    - numpy==1.26.4\n    - cryptography>=42\n" : "dependencies:\n  - python=3.11\n  - numpy\n";
    fake.addAssetVersion(workspace, "environments", "flo-env", "1", { condaFile: conda, image: "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04" });
    fake.addAssetVersion(workspace, "data", "claims", "7");
    fake.addDatastore(workspace, "flo_exchange", { datastoreType: "AzureBlob", accountName: `${silo}exchange`, containerName: "flo-exchange" });
    if (i === 0) fake.addDatastore(workspace, "silo_private", { datastoreType: "AzureBlob", accountName: `${silo}private`, containerName: "private" });
  }
  const file = join(dir, "secure.yaml");
  writeFileSync(
    file,
    `name: secure
rounds: 1
initialModel: init.safetensors
silos:
${silos
  .map(
    (s, i) => `  - name: ${s}
    compute: {type: azureml, subscriptionId: ${SUBSCRIPTION}, resourceGroup: rg-${s}, workspace: mlw-${s}, computeName: cpu-cluster, exchangeDatastore: flo_exchange, secretKey: "azureml://datastores/silo_private/paths/keys/silo.key"}
    inputs: {data: {type: uri_folder, path: "azureml:claims@latest"}}
    publicKey: ${keys[i]}
    maxExamples: 1000`,
  )
  .join("\n")}
training:
  command: python train.py --data \${{inputs.data}} --out \${{outputs.model_update}}
  environment: azureml:flo-env@latest
  code: "azureml:flo-code:1"
aggregation: {strategy: fedavg, clipping: {mode: fixed, norm: 1}, secureAggregation: {threshold: 2}}
policy: {minSilos: 2}
`,
  );
  // An Azure ML code reference cannot carry flo's masking package: the spec names it before any check.
  const refused = await check(file);
  expect(refused.code).not.toBe(0);
  expect(refused.err + refused.out).toMatch(/training\.code: expected a local code folder with aggregation\.secureAggregation on Azure ML/);
  writeFileSync(file, readFileSync(file, "utf8").replace('code: "azureml:flo-code:1"', `code: "${"https://store.example/flo/code/" + "a".repeat(64) + "/"}"`));
  const { code, out } = await check(file);
  expect(code).toBe(1);
  expect(row(out, "secok", "secure aggregation environment")).toEqual({ result: "PASS", detail: "flo-env:1's conda file lists numpy and cryptography" });
  expect(row(out, "secok", "secret key datastore").result).toBe("PASS");
  expect(row(out, "secbad", "secure aggregation environment")).toMatchObject({
    result: "FAIL",
    detail: "flo-env:1's conda file lacks cryptography, which python -m flo_secagg needs",
    fix: "add numpy and cryptography to the environment's conda file (pip: numpy, cryptography) and register a new version",
  });
  expect(row(out, "secbad", "secret key datastore")).toMatchObject({ result: "FAIL", detail: "no datastore silo_private in workspace mlw-secbad" });
}, 60_000);
