/**
 * Forged partner commands through the embedded transport of a `flo host`: each partner sends on its
 * own queue `partner-<name>` (in Azure only its identity may send there), so the queue, not the
 * `floPartner` property, names the sender. Partner insurer-b cannot cancel bank-a's federation, not
 * by claiming floPartner=bank-a and not as itself; the refusals land in partner-insurer-b-rejected
 * with the reason. bank-a cancels its own federation, and a spec's `owners` may cancel too.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ModelStore } from "../../lib/models/store";
import { startFloHost, toySpec, waitForMessage, writeToyData, type FloHost, type ToySilo } from "../helpers/flo";

// Slow trainers keep the federations running while the commands arrive.
const SILOS: ToySilo[] = [
  { name: "p-east", target: [1, 1, 1, 1], n: 100, behavior: "sleep:30000" },
  { name: "p-west", target: [3, 3, 3, 3], n: 300, behavior: "sleep:30000" },
];

let flo: FloHost;
let store: ModelStore;

beforeAll(async () => {
  const dir = mkdtempSync(join(tmpdir(), "flo-partners-"));
  writeToyData(dir, SILOS);
  const registry = join(dir, "registry");
  mkdirSync(registry, { recursive: true });
  writeFileSync(join(registry, "loans.json"), JSON.stringify(toySpec("loans", SILOS, { rounds: 1, policy: { roundTimeout: "PT2M" } })));
  writeFileSync(join(registry, "shared.json"), JSON.stringify(toySpec("shared", SILOS, { rounds: 1, policy: { roundTimeout: "PT2M" }, owners: ["insurer-b"] })));
  flo = await startFloHost({ dir, settings: { FLO_PARTNER_ALLOWLIST: "bank-a,insurer-b", FLO_SPEC_REGISTRY: registry } });
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
}, 60_000);
afterAll(async () => {
  await flo?.stop();
});

const send = (partner: string, body: unknown, messageId: string, claimed?: string) =>
  flo.send(`partner-${partner}`, { body, messageId, ...(claimed ? { applicationProperties: { floPartner: claimed } } : {}) });

const rejected = (partner: string, messageId: string) => waitForMessage(flo, `partner-${partner}-rejected`, messageId);

const running = (s: { runtimeStatus?: string; phase?: string }) => s?.runtimeStatus === "Running" && s.phase === "training";
const terminated = (s: { runtimeStatus?: string }) => s?.runtimeStatus === "Terminated";

it("a forged command on insurer-b's queue claiming floPartner=bank-a cannot cancel bank-a's federation; the refusal lands in partner-insurer-b-rejected", async () => {
  await send("bank-a", { type: "start-federation", spec: "loans", runId: "a1" }, "start-a1");
  await flo.waitFor("loans-a1", running, 30_000);
  // What was stored at start names the partner whose queue the command came from.
  expect(await store.getJson("federations/loans-a1/started-by.json")).toMatchObject({ partner: "bank-a", command: "start-federation" });

  await send("insurer-b", { type: "cancel-federation", federationId: "loans-a1" }, "forged-cancel", "bank-a");
  const forged = await rejected("insurer-b", "forged-cancel");
  expect(forged.applicationProperties).toMatchObject({
    DeadLetterReason: "PartnerMismatch",
    DeadLetterErrorDescription: 'application property floPartner claims "bank-a", but the command arrived on partner-insurer-b, the queue of partner "insurer-b": the queue identifies the sender',
    originalQueue: "partner-insurer-b",
  });

  // Without the claim, as itself: insurer-b neither started loans-a1 nor owns the spec.
  await send("insurer-b", { type: "cancel-federation", federationId: "loans-a1" }, "plain-cancel");
  const plain = await rejected("insurer-b", "plain-cancel");
  expect(plain.applicationProperties).toMatchObject({
    DeadLetterReason: "NotPermitted",
    DeadLetterErrorDescription: 'partner "insurer-b" may not cancel federation loans-a1: it was started by partner "bank-a", and the spec\'s owners are []',
  });
  expect((await flo.peek("partner-bank-a-rejected")).map((m) => m.messageId)).toEqual([]);
  expect((await flo.json("federations/loans-a1")).body.runtimeStatus).toBe("Running");

  // The partner that started it may cancel it.
  await send("bank-a", { type: "cancel-federation", federationId: "loans-a1", reason: "done testing" }, "own-cancel");
  await flo.waitFor("loans-a1", terminated, 20_000);
}, 120_000);

it("a partner listed in the spec's owners may cancel a federation another partner started; a federation started through the API only by owners", async () => {
  await send("bank-a", { type: "start-federation", spec: "shared", runId: "s1" }, "start-s1");
  await flo.waitFor("shared-s1", running, 30_000);
  await send("insurer-b", { type: "cancel-federation", federationId: "shared-s1" }, "owner-cancel");
  await flo.waitFor("shared-s1", terminated, 20_000);

  const api = toySpec("apionly", SILOS, { rounds: 1, policy: { roundTimeout: "PT2M" } });
  expect((await flo.start(api)).status).toBe(202);
  await flo.waitFor("apionly", running, 30_000);
  await send("bank-a", { type: "cancel-federation", federationId: "apionly" }, "api-cancel");
  expect((await rejected("bank-a", "api-cancel")).applicationProperties?.DeadLetterErrorDescription).toBe(
    'partner "bank-a" may not cancel federation apionly: it was started by the API or the schedule, not a partner, and the spec\'s owners are []',
  );
  expect((await flo.json("federations/apionly")).body.runtimeStatus).toBe("Running");
  expect((await flo.json("federations/apionly/cancel", { method: "POST" })).status).toBe(202);
}, 120_000);
