/**
 * Model registration against the fake ARM: a federation with a `registration` section registers
 * its delivered model as exactly one `custom_model` version in the owner's workspace (local silos,
 * the owner's workspace behind the fake ARM with managed-identity tokens), with the federation's
 * tags and the final evaluation's metrics as properties. A registration whose answer is lost fails
 * the federation; its resume finds the version by its floFederation tag instead of adding one.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelStore } from "../lib/models/store";
import { generateTestCertificate, type TestCertificate } from "./fakes/arm/cert";
import { FakeArm } from "./fakes/arm/fakeArm";
import { startFakeManagedIdentity, type FakeManagedIdentity } from "./fakes/arm/fakeManagedIdentity";
import { finished, startFloHost, TOY_TEAM, TOY_TRAINER_DIR, toySpec, writeToyData, type FloHost } from "./helpers/flo";

const CLIENT_ID = "5f2b3c4d-1111-4222-8333-944455566677";
const OWNER = { subscriptionId: "00000000-0000-4000-8000-0000000000aa", resourceGroup: "rg-owner", workspace: "mlw-owner" };
const MODEL_NAME = "toy-fraud";
const EVALUATE = "/usr/bin/python3 toy-evaluate.py --model ${{inputs.global_model}} --data ${{inputs.data}} --out ${{outputs.evaluation}}";

let certificate: TestCertificate;
let identity: FakeManagedIdentity;
let fake: FakeArm;
let flo: FloHost;
let store: ModelStore;

beforeAll(async () => {
  certificate = generateTestCertificate();
  identity = await startFakeManagedIdentity();
  fake = await FakeArm.start({ certificate });
  flo = await startFloHost({
    dir: mkdtempSync(join(tmpdir(), "flo-register-e2e-")),
    env: identity.env,
    settings: { FLO_ARM_ENDPOINT: fake.url, FLO_ARM_CA_FILE: certificate.certPath, FLO_AZURE_CREDENTIAL: "managedidentity", FLO_MANAGED_IDENTITY_CLIENT_ID: CLIENT_ID },
  });
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
  writeToyData(flo.dir, TOY_TEAM);
}, 60_000);

afterAll(async () => {
  await flo?.stop();
  await fake?.close();
  await identity?.close();
  certificate?.dispose();
}, 30_000);

function registeringSpec(name: string): Record<string, unknown> {
  return toySpec(name, TOY_TEAM, {
    rounds: 2,
    evaluation: { command: EVALUATE, code: TOY_TRAINER_DIR },
    registration: { workspace: OWNER, name: MODEL_NAME },
  });
}

const versionsOf = (federationId: string) => [...fake.modelVersions(OWNER.workspace, MODEL_NAME)].filter(([, p]) => (p.tags as Record<string, string>).floFederation === federationId);

test("a completed federation registers one custom_model version with its tags and final metrics", async () => {
  expect((await flo.start(registeringSpec("regonce"))).status).toBe(202);
  const status = await flo.waitFor("regonce", finished, 90_000);
  expect([status.runtimeStatus, status.failure]).toEqual(["Completed", undefined]);
  const versions = versionsOf("regonce");
  expect(versions).toHaveLength(1);
  const [version, properties] = versions[0];
  expect(status.output.registration).toEqual({
    id: `/subscriptions/${OWNER.subscriptionId}/resourceGroups/${OWNER.resourceGroup}/providers/Microsoft.MachineLearningServices/workspaces/${OWNER.workspace}/models/${MODEL_NAME}/versions/${version}`,
    name: MODEL_NAME,
    version,
    created: true,
  });
  expect(properties).toMatchObject({
    modelType: "custom_model",
    modelUri: store.uri("federations/regonce/final/model.safetensors").replace(/model\.safetensors$/, ""),
    tags: { floFederation: "regonce", floRound: "2", floModelSha256: status.output.finalModel.sha256 },
  });
  const metrics = properties.properties as Record<string, string>;
  expect(Number(metrics["floEvaluation.val_loss"])).toBeCloseTo(status.output.finalEvaluation.metrics.val_loss, 12);
  // The folder it points at holds the model and its card.
  expect(await store.exists("federations/regonce/final/model.safetensors")).toBe(true);
  expect(await store.exists("federations/regonce/final/model-card.md")).toBe(true);
  // Every ARM call went to the owner's workspace, with a token.
  const modelCalls = fake.requests.filter((r) => r.path.includes("/models/"));
  expect(modelCalls.every((r) => r.path.includes(`/workspaces/${OWNER.workspace}/models/${MODEL_NAME}`))).toBe(true);
}, 120_000);

test("a registration whose answer was lost fails the federation; the resume adopts the version instead of adding one", async () => {
  const before = fake.modelVersions(OWNER.workspace, MODEL_NAME).size;
  // Attempt 1 lists nothing, creates the version, and never hears back; the activity's retries
  // then cannot list versions at all: the federation fails with the registration's reason.
  fake.injectFault({ method: "PUT", pathIncludes: `/models/${MODEL_NAME}/versions/`, status: 403, afterHandling: true, times: 1 });
  fake.injectFault({ method: "GET", pathIncludes: `/models/${MODEL_NAME}/versions`, status: 403, skip: 1, times: 10 });
  expect((await flo.start(registeringSpec("regresume"))).status).toBe(202);
  const failed = await flo.waitFor("regresume", finished, 120_000);
  expect(failed.runtimeStatus).toBe("Failed");
  expect(JSON.stringify(failed.failure)).toContain("model registration:");
  expect(versionsOf("regresume")).toHaveLength(1);
  fake.clearFaults();

  const resumed = await flo.json("federations/regresume/resume", { method: "POST" });
  expect(resumed.status).toBe(202);
  const done = await flo.waitFor("regresume", (s) => finished(s) && s.output?.federationId === "regresume", 90_000);
  expect(done.runtimeStatus).toBe("Completed");
  const versions = versionsOf("regresume");
  expect(versions).toHaveLength(1);
  expect(done.output.registration).toMatchObject({ name: MODEL_NAME, version: versions[0][0], created: false });
  expect(fake.modelVersions(OWNER.workspace, MODEL_NAME).size).toBe(before + 1);
}, 200_000);
