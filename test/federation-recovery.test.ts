/**
 * Recovery and partner paths end to end on a `flo host` child process: the host SIGKILLed mid-round
 * and restarted, resume from the last checkpoint, partner commands (allowed, invalid, not allowed).
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelStore } from "../lib/models/store";
import { expectedToyModel, finished, readToyModel, startFloHost, TOY_TEAM, toySpec, writeToyData, type FloHost, type ToySilo } from "./helpers/flo";

const base: readonly ToySilo[] = TOY_TEAM;

let flo: FloHost;
let store: ModelStore;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "flo-recovery-"));
  flo = await startFloHost({ dir, settings: { FLO_PARTNER_ALLOWLIST: "acme,globex", FLO_SPEC_REGISTRY: join(dir, "registry") } });
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
});
afterAll(async () => {
  await flo?.stop();
});

async function finalModel(status: any): Promise<number[]> {
  return readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
}

it("a host SIGKILLed mid-round resumes every instance and produces the same model as an uninterrupted run", async () => {
  const silos = base.map((s) => ({ ...s, behavior: "sleep:1200" }));
  writeToyData(flo.dir, silos);
  const spec = (name: string) => toySpec(name, silos, { rounds: 4, policy: { minSilos: 3, roundTimeout: "PT2M" } });

  expect((await flo.start(spec("steady"))).status).toBe(202);
  const steady = await flo.waitFor("steady", finished, 90_000);
  expect(steady.runtimeStatus).toBe("Completed");

  expect((await flo.start(spec("killed"))).status).toBe(202);
  await flo.waitFor("killed", (s) => s.round === 2 && s.phase === "training", 60_000);
  await flo.kill();
  // the silo jobs run on without the host, as Azure ML jobs would
  await new Promise((r) => setTimeout(r, 2000));
  await flo.restart();
  const killed = await flo.waitFor("killed", finished, 90_000);
  expect(killed.runtimeStatus).toBe("Completed");
  expect(killed.output.finalModel.sha256).toBe(steady.output.finalModel.sha256);
  const w = await finalModel(killed);
  expectedToyModel(silos, 4).forEach((v, i) => expect(w[i]).toBeCloseTo(v, 6));
  // no round-2 job was submitted twice: each silo has exactly one attempt in every round
  for (const round of [1, 2, 3, 4]) {
    const m = await store.getJson<any>(`federations/killed/rounds/${round}/manifest.json`);
    expect(m.silos.map((s: any) => s.attempts.length)).toEqual([1, 1, 1]);
  }
}, 240_000);

it("resumes a failed federation from its last checkpoint to the same final model", async () => {
  const silos: ToySilo[] = [base[0], base[1], { ...base[2], name: "flaky", behavior: "fail-round-if:2:block" }];
  writeToyData(flo.dir, silos);
  writeFileSync(join(flo.dir, "data", "flaky", "block"), "");
  await flo.start(toySpec("resumable", silos, { rounds: 3, policy: { minSilos: 3, jobRetries: 0, roundTimeout: "PT1M" } }));
  const failed = await flo.waitFor("resumable", finished);
  expect(failed.runtimeStatus).toBe("Failed");
  expect(failed.failure).toContain("round 2: quorum not reached: 2 of 3 sampled silos succeeded, policy.minSilos is 3 (flaky failed)");
  const checkpoint = await store.getJson<any>("federations/resumable/checkpoint.json");
  expect(checkpoint.round).toBe(1);
  const failedRound = await store.getJson<any>("federations/resumable/rounds/2/manifest.json");
  expect(failedRound.status).toBe("failed");

  rmSync(join(flo.dir, "data", "flaky", "block"));
  const resumed = await flo.json("federations/resumable/resume", { method: "POST" });
  expect(resumed.status).toBe(202);
  expect(resumed.body).toMatchObject({ id: "resumable", resumedFromRound: 1, round: 2 });
  const done = await flo.waitFor("resumable", finished);
  expect(done.runtimeStatus).toBe("Completed");
  expect(done.output.history.map((h: any) => h.round)).toEqual([1, 2, 3]);
  const w = await finalModel(done);
  expectedToyModel(silos, 3).forEach((v, i) => expect(w[i]).toBeCloseTo(v, 6));
  // the resumed round's jobs are new attempts, after the failed run's
  const m2 = await store.getJson<any>("federations/resumable/rounds/2/manifest.json");
  expect(m2.status).toBe("aggregated");
  expect(m2.silos.find((s: any) => s.silo === "flaky").attempts[0].jobName).toBe("flo-resumable-r2-flaky-a2");
  expect((await flo.json("federations/resumable/resume", { method: "POST" })).status).toBe(409);
}, 120_000);

describe("partner commands", () => {
  beforeAll(() => {
    const silos = base.map((s) => ({ ...s, name: `p-${s.name}` }));
    writeToyData(flo.dir, silos);
    mkdirSync(join(flo.dir, "registry"), { recursive: true });
    writeFileSync(join(flo.dir, "registry", "partnerspec.json"), JSON.stringify(toySpec("partnerspec", silos, { rounds: 1 })));
  });

  const send = (partner: string | undefined, body: unknown, messageId: string) => flo.send("partner-commands", { body, messageId, applicationProperties: partner ? { floPartner: partner } : {} });

  async function rejected(messageId: string): Promise<any> {
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const found = (await flo.peek("partner-commands-rejected")).find((m) => m.messageId === messageId);
      if (found) return found;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`message ${messageId} was not rejected; host log:\n${flo.logs.slice(-20).join("\n")}`);
  }

  it("starts a registered spec for an allowed partner", async () => {
    await send("acme", { type: "start-federation", spec: "partnerspec", runId: "run1" }, "cmd-start");
    const status = await flo.waitFor("partnerspec-run1", finished, 45_000);
    expect(status.runtimeStatus).toBe("Completed");
  }, 60_000);

  it("dead-letters an invalid command with the reason, once", async () => {
    await send("acme", { type: "launch-rockets" }, "cmd-invalid");
    const m = await rejected("cmd-invalid");
    expect(m.applicationProperties.DeadLetterReason).toBe("InvalidCommand");
    expect(m.applicationProperties.DeadLetterErrorDescription).toContain("type");
    expect(m.body).toEqual({ type: "launch-rockets" });
    expect((await flo.peek("partner-commands")).length).toBe(0);
  });

  it("dead-letters a command from a partner not on the allow-list", async () => {
    await send("initech", { type: "start-federation", spec: "partnerspec" }, "cmd-evil");
    const m = await rejected("cmd-evil");
    expect(m.applicationProperties.DeadLetterReason).toBe("PartnerNotAllowed");
    expect(m.applicationProperties.DeadLetterErrorDescription).toContain('partner "initech" is not on the allow-list');
    await send(undefined, { type: "start-federation", spec: "partnerspec" }, "cmd-anon");
    expect((await rejected("cmd-anon")).applicationProperties.DeadLetterReason).toBe("UnknownPartner");
  });

  it("dead-letters commands that cannot succeed: unknown spec, unknown federation", async () => {
    await send("globex", { type: "start-federation", spec: "nosuchspec" }, "cmd-nospec");
    expect((await rejected("cmd-nospec")).applicationProperties.DeadLetterReason).toBe("InvalidSpec");
    await send("globex", { type: "cancel-federation", federationId: "never-started" }, "cmd-nofed");
    expect((await rejected("cmd-nofed")).applicationProperties.DeadLetterReason).toBe("UnknownFederation");
  });
});
