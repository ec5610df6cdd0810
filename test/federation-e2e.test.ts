/**
 * The federation end to end on flo's embedded local host: the real Functions app (dist/), the
 * Durable engine, Azurite, local silo jobs (a plain-JS toy trainer), the job-events queue.
 */
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ModelStore } from "../lib/models/store";
import { localJobEvent } from "../lib/compute/local/events";
import { floJobTags } from "../lib/compute/siloCompute";
import type { RoundManifest } from "../lib/federation/manifest";
import { siloGroupInstanceId, siloGroups, siloInstanceId } from "../lib/federation/decisions";
import { expectedToyModel, finished, readToyModel, startFloHost, TOY_TEAM, toySpec, writeToyData, type FloHost, type ToySilo } from "./helpers/flo";

const silos: readonly ToySilo[] = TOY_TEAM;

let flo: FloHost;
let store: ModelStore;

beforeAll(async () => {
  flo = await startFloHost();
  store = ModelStore.fromConnectionString(flo.storageConnectionString, "flo");
});
afterAll(async () => {
  await flo?.stop();
});

/** True once the process is gone or a zombie (an orphan nobody reaps in a container still answers kill 0). */
async function stopsRunning(pid: number, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    let state: string | undefined;
    try {
      state = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]?.[0];
    } catch {
      return true;
    }
    if (state === "Z" || state === "X") return true;
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

async function manifest(id: string, round: number): Promise<RoundManifest> {
  return store.getJson<RoundManifest>(`federations/${id}/rounds/${round}/manifest.json`);
}

async function finalModel(status: any): Promise<number[]> {
  return readToyModel(await store.getBytes(store.pathFromUri(status.output.finalModel.uri)));
}

describe("a clean 3-silo federation", () => {
  let status: any;
  beforeAll(async () => {
    writeToyData(flo.dir, silos);
    const started = await flo.start(toySpec("clean", silos));
    expect(started.status).toBe(202);
    expect(started.body.links.status).toBe(`${flo.url}/api/federations/clean`);
    status = await flo.waitFor("clean", finished);
  });

  it("completes all rounds with the model FedAvg of the silos' updates gives", async () => {
    expect(status.runtimeStatus).toBe("Completed");
    expect(status.output.rounds).toBe(3);
    const w = await finalModel(status);
    const expected = expectedToyModel(silos, 3);
    w.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  });

  it("records every round in a manifest with digests, sample counts and metrics", async () => {
    for (const round of [1, 2, 3]) {
      const m = await manifest("clean", round);
      expect(m.status).toBe("aggregated");
      expect(m.sampled).toEqual(["east", "west", "north"]);
      expect(m.silos.map((s) => [s.silo, s.included, s.numExamples])).toEqual([
        ["east", true, 100],
        ["west", true, 300],
        ["north", true, 100],
      ]);
      for (const s of m.silos) {
        const bytes = await store.getBytes(`federations/clean/rounds/${round}/updates/${s.silo}/model.safetensors`);
        expect(s.update?.sha256).toBe(createHash("sha256").update(bytes).digest("hex"));
        expect(s.attempts).toHaveLength(1);
        expect(s.attempts[0].jobName).toBe(`flo-clean-r${round}-${s.silo}`);
      }
      const out = await store.getBytes(store.pathFromUri(m.globalOut!.uri));
      expect(m.globalOut!.sha256).toBe(createHash("sha256").update(out).digest("hex"));
      expect(m.totalExamples).toBe(500);
      expect(m.metrics.loss).toBeGreaterThan(0);
      // the silos evaluate the global model they receive: none exists in round 1
      if (round === 1) expect(m.globalMetrics).toEqual({});
      else expect(m.globalMetrics.loss).toBeGreaterThan(m.metrics.loss);
      if (round > 1) expect(m.globalIn?.sha256).toBe((await manifest("clean", round - 1)).globalOut?.sha256);
    }
    const checkpoint = await store.getJson<any>("federations/clean/checkpoint.json");
    expect(checkpoint.round).toBe(3);
    expect(checkpoint.model.sha256).toBe(status.output.finalModel.sha256);
  });

  it("keeps each job's log", async () => {
    const m = await manifest("clean", 1);
    const log = await store.getBytes(store.pathFromUri(m.silos[0].attempts[0].logUri!));
    expect(log.toString()).toContain("toy trainer: round 1");
  });

  it("refuses a second federation with the same id (409) and lists it", async () => {
    const again = await flo.start(toySpec("clean", silos));
    expect(again.status).toBe(409);
    expect(again.body.detail).toContain("federation clean already ran (Completed)");
    const list = await flo.json("federations");
    expect(list.body.federations.map((f: any) => f.id)).toContain("clean");
  });

  it("serves the report as HTML with the round data", async () => {
    const res = await flo.api("federations/clean/report");
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/html");
    const html = await res.text();
    expect(html).toContain("Federation <code>clean</code>");
    expect(html).toContain(status.output.finalModel.sha256);
  });
});

describe("failures within a round", () => {
  it("a failing silo is retried, then excluded with the reason while the quorum aggregates", async () => {
    const team: ToySilo[] = [silos[0], { ...silos[1], name: "broken", behavior: "fail" }, silos[2]];
    writeToyData(flo.dir, team);
    const res = await flo.start(toySpec("withfailure", team, { rounds: 2, policy: { minSilos: 2, jobRetries: 1, roundTimeout: "PT1M" } }));
    expect(res.status).toBe(202);
    const status = await flo.waitFor("withfailure", finished);
    expect(status.runtimeStatus).toBe("Completed");
    const m = await manifest("withfailure", 1);
    const broken = m.silos.find((s) => s.silo === "broken")!;
    expect(broken.included).toBe(false);
    expect(broken.outcome).toBe("failed");
    expect(broken.attempts.map((a) => [a.jobName, a.state])).toEqual([
      ["flo-withfailure-r1-broken", "failed"],
      ["flo-withfailure-r1-broken-a2", "failed"],
    ]);
    expect(broken.reason).toContain("trainer exited with code 1");
    expect(broken.reason).toContain("failing on purpose");
    const w = await finalModel(status);
    const expected = expectedToyModel(team, 2, (_r, s) => s !== "broken");
    w.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  });

  it("an invalid update (NaN) is excluded by validation; without quorum the federation fails with the reason", async () => {
    const team: ToySilo[] = [silos[0], { ...silos[1], name: "nan", behavior: "nan" }];
    writeToyData(flo.dir, team);
    await flo.start(toySpec("withnan", team, { rounds: 1, policy: { minSilos: 2, roundTimeout: "PT1M" } }));
    const status = await flo.waitFor("withnan", finished);
    expect(status.runtimeStatus).toBe("Failed");
    expect(status.failure).toContain("quorum not reached after validating updates");
    const m = await manifest("withnan", 1);
    expect(m.status).toBe("failed");
    const nan = m.silos.find((s) => s.silo === "nan")!;
    expect(nan.outcome).toBe("succeeded");
    expect(nan.included).toBe(false);
    expect(nan.reason).toMatch(/non-finite|NaN/i);
  });

  it("a silo past the deadline is declared late, its job canceled, and the round closes without it", async () => {
    const team: ToySilo[] = [silos[0], { ...silos[1], name: "slow", behavior: "sleep:30000" }, silos[2]];
    writeToyData(flo.dir, team);
    const t0 = Date.now();
    await flo.start(toySpec("withlate", team, { rounds: 1, policy: { minSilos: 2, roundTimeout: "PT4S", jobRetries: 0 } }));
    const status = await flo.waitFor("withlate", finished);
    expect(status.runtimeStatus).toBe("Completed");
    expect(Date.now() - t0).toBeLessThan(20_000);
    const m = await manifest("withlate", 1);
    const slow = m.silos.find((s) => s.silo === "slow")!;
    expect(slow.outcome).toBe("late");
    expect(slow.included).toBe(false);
    expect(slow.reason).toContain("at the round deadline");
    const jobStatus = JSON.parse(readFileSync(join(flo.dir, "jobs", "flo-withlate-r1-slow", "status.json"), "utf8"));
    expect(jobStatus.state).toBe("canceled");
    // A late completion event for the closed round changes nothing.
    await flo.send("job-events", {
      body: localJobEvent({ jobName: "flo-withlate-r1-slow", tags: floJobTags({ federationId: "withlate", round: 1, silo: "slow" }), state: "completed" }),
    });
    await new Promise((r) => setTimeout(r, 1000));
    const after = (await flo.json("federations/withlate")).body;
    expect(after.output.finalModel.sha256).toBe(status.output.finalModel.sha256);
    const w = await finalModel(status);
    const expected = expectedToyModel(team, 1, (_r, s) => s !== "slow");
    w.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  });

  it("duplicate completion events are harmless", async () => {
    const team = silos.map((s) => ({ ...s, name: `dup-${s.name}`, behavior: "sleep:1500" }));
    writeToyData(flo.dir, team);
    await flo.start(toySpec("dups", team, { rounds: 1 }));
    await flo.waitFor("dups", (s) => s.silos?.every((x: any) => x.state === "queued" || x.state === "running"));
    for (let copy = 0; copy < 3; copy++) {
      for (const s of team) {
        await flo.send("job-events", {
          body: localJobEvent({ jobName: `flo-dups-r1-${s.name}`, tags: floJobTags({ federationId: "dups", round: 1, silo: s.name }), state: "completed", id: `dup-${s.name}` }),
        });
      }
    }
    const status = await flo.waitFor("dups", finished);
    expect(status.runtimeStatus).toBe("Completed");
    const m = await manifest("dups", 1);
    expect(m.silos.every((s) => s.included && s.attempts.length === 1)).toBe(true);
    const w = await finalModel(status);
    const expected = expectedToyModel(team, 1);
    w.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  });
});

describe("the HTTP API", () => {
  it("rejects a bad spec with 400 and every field path", async () => {
    const res = await flo.start({ name: "Bad_Name", rounds: 0, silos: [{ name: "a", compute: { type: "cloud" } }], training: { command: "node t.js" } });
    expect(res.status).toBe(400);
    expect(res.body.title).toBe("Invalid federation spec");
    const paths = res.body.errors.map((e: any) => e.path);
    expect(paths).toEqual(expect.arrayContaining(["name", "rounds", "silos[0].compute.type"]));
    const name = res.body.errors.find((e: any) => e.path === "name");
    expect(name.got).toBe('"Bad_Name"');
  });

  it("rejects YAML syntax errors with their line", async () => {
    const res = await flo.start("name: x\nrounds: [1\n");
    expect(res.status).toBe(400);
    expect(res.body.detail).toMatch(/:\d+:\d+/);
  });

  it("answers 404 for an unknown federation and 401 without a key", async () => {
    expect((await flo.json("federations/nope")).status).toBe(404);
    const res = await fetch(`${flo.url}/api/federations`);
    expect(res.status).toBe(401);
  });

  it("serves its OpenAPI document", async () => {
    const doc = await flo.json("openapi.json");
    expect(doc.status).toBe(200);
    expect(Object.keys(doc.body.paths)).toEqual(expect.arrayContaining(["/federations", "/federations/{id}", "/federations/{id}/cancel", "/federations/{id}/resume", "/federations/{id}/report"]));
  });

  it("cancels a running federation: 202, jobs stopped, instance terminated", async () => {
    const team = silos.map((s) => ({ ...s, name: `c-${s.name}`, behavior: "sleep:60000" }));
    writeToyData(flo.dir, team);
    await flo.start(toySpec("tocancel", team, { rounds: 2 }));
    await flo.waitFor("tocancel", (s) => s.silos?.every((x: any) => x.state === "running"), 30_000);
    const res = await flo.json("federations/tocancel/cancel", { method: "POST" });
    expect(res.status).toBe(202);
    expect(res.body.canceledJobs).toEqual(team.map((s) => `flo-tocancel-r1-${s.name}`).sort());
    const status = await flo.waitFor("tocancel", finished);
    expect(status.runtimeStatus).toBe("Terminated");
    // The round's sub-orchestrations are terminated too: its silo groups and each silo's.
    const instance = async (instanceId: string) => ((await (await flo.management(`instances/${encodeURIComponent(instanceId)}`)).json()) as { runtimeStatus: string }).runtimeStatus;
    const groups = siloGroups(team.map((s) => s.name)).map((_, g) => siloGroupInstanceId("tocancel", 1, g));
    expect(groups.length).toBeGreaterThan(1);
    for (const id of [...groups, ...team.map((s) => siloInstanceId("tocancel", 1, s.name))]) expect(await instance(id)).toBe("Terminated");
    for (const s of team) {
      const job = JSON.parse(readFileSync(join(flo.dir, "jobs", `flo-tocancel-r1-${s.name}`, "status.json"), "utf8"));
      expect(job.state).toBe("canceled");
      expect(await stopsRunning(job.childPid)).toBe(true);
    }
    expect((await flo.json("federations/tocancel/cancel", { method: "POST" })).status).toBe(409);
    expect(existsSync(join(flo.dir, "jobs", "flo-tocancel-r2-c-east"))).toBe(false);
  });
});
