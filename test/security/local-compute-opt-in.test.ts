/**
 * Local compute runs the spec's command as the host's user, so a host runs local silos only when
 * its settings opt in (FLO_LOCAL_COMPUTE=enabled). The attack: an API caller POSTs a spec whose
 * local silo runs `sh -c 'id > <marker>'` in `/` with `/etc/passwd` as data. Without the opt-in,
 * every way a federation starts (HTTP start, partner message, resume, the scheduled timer's
 * prepareFederation) answers 400 naming `silos[0].compute.type` and the setting, and nothing runs.
 * The control host (opt-in set) shows the attack is real: there the marker is written.
 * Real `flo host` child processes over HTTP; needs dist/ (`npm test` builds first).
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ComputeInstances } from "../../lib/compute/backends";
import { prepareFederation } from "../../lib/federation/lifecycle";
import { ApiError } from "../../lib/federation/problem";
import type { FederationServices } from "../../lib/federation/services";
import { parseSpec } from "../../lib/spec";
import { finished, startFloHost, type FloHost } from "../helpers/flo";

const SETTING = "FLO_LOCAL_COMPUTE";
const FIELD = "silos[0].compute.type";

function attackSpec(name: string, marker: string, code = "/"): Record<string, unknown> {
  return {
    name,
    rounds: 1,
    silos: [{ name: "evil", compute: { type: "local" }, inputs: { data: "/etc/passwd" } }],
    training: { command: `sh -c 'id > ${marker}' \${{inputs.data}} \${{outputs.model_update}}`, code },
    policy: { minSilos: 1, roundTimeout: "PT1M", jobRetries: 0 },
  };
}

async function settle(ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
}

/** The problem body of a refused start names the field, the setting, and what was got. */
function expectComputeDisabled(body: { detail: string; errors: { path: string; expected: string; got: string }[] }): void {
  expect(body.detail).toContain(FIELD);
  expect(body.detail).toContain(`${SETTING}=enabled`);
  expect(body.errors).toEqual([{ path: FIELD, expected: expect.stringContaining(`${SETTING}=enabled`), got: '"local"', message: expect.any(String) }]);
}

describe("a host without the opt-in", () => {
  let flo: FloHost;
  let dir: string;
  let marker: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "flo-optin-"));
    marker = join(dir, "pwned");
    mkdirSync(join(dir, "registry"));
    writeFileSync(join(dir, "registry", "attackspec.json"), JSON.stringify(attackSpec("attackspec", marker)));
    flo = await startFloHost({ dir, settings: { [SETTING]: "", FLO_PARTNER_ALLOWLIST: "acme", FLO_SPEC_REGISTRY: join(dir, "registry") } });
  });
  afterAll(async () => {
    await flo?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("answers an API caller's local spec with 400 naming the field and the setting, and runs nothing", async () => {
    const spec = attackSpec("attack", marker);
    // The offline parser accepts it (flo run and preflights read any spec): the host refuses it.
    expect(() => parseSpec(JSON.stringify(spec), { format: "json", source: "attack" })).not.toThrow();
    const res = await flo.start(spec);
    expect(res.status).toBe(400);
    expectComputeDisabled(res.body);
    await settle(1500);
    expect(existsSync(marker)).toBe(false);
    expect((await flo.json("federations/attack")).status).toBe(404);
    expect(existsSync(join(dir, "jobs", "flo-attack-r1-evil"))).toBe(false);
  });

  it("rejects a partner's start of a registered local spec with the reason, and runs nothing", async () => {
    await flo.send("partner-acme", { body: { type: "start-federation", spec: "attackspec", runId: "run1" }, messageId: "cmd-attack" });
    const deadline = Date.now() + 20_000;
    let rejected: { applicationProperties: Record<string, string> } | undefined;
    while (!rejected && Date.now() < deadline) {
      rejected = (await flo.peek("partner-acme-rejected")).find((m) => m.messageId === "cmd-attack") as typeof rejected;
      if (!rejected) await settle(200);
    }
    expect(rejected?.applicationProperties.DeadLetterReason).toBe("InvalidSpec");
    expect(rejected?.applicationProperties.DeadLetterErrorDescription).toContain(FIELD);
    expect(rejected?.applicationProperties.DeadLetterErrorDescription).toContain(SETTING);
    expect((await flo.json("federations/attackspec-run1")).status).toBe(404);
    expect(existsSync(marker)).toBe(false);
  }, 30_000);
});

describe("a host with the opt-in (control), then restarted without it", () => {
  let flo: FloHost;
  let dir: string;
  let marker: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "flo-optin-control-"));
    marker = join(dir, "pwned");
    flo = await startFloHost({ dir });
  });
  afterAll(async () => {
    await flo?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("runs the attacker's command when local compute is enabled (the attack is real)", async () => {
    // With the opt-in, `code: /` is refused too (outside the base folder): the control runs from the base folder.
    const res = await flo.start(attackSpec("attack", marker, "."));
    expect(res.status).toBe(202);
    const status = await flo.waitFor("attack", finished, 45_000);
    // The command wrote no model: the federation fails, but the command ran.
    expect(status.runtimeStatus).toBe("Failed");
    expect(readFileSync(marker, "utf8")).toMatch(/^uid=\d+/);
  }, 60_000);

  it("refuses to resume that federation once the opt-in is removed, and runs nothing", async () => {
    rmSync(marker);
    await flo.kill();
    const settingsFile = join(dir, "local.settings.json");
    const settings = JSON.parse(readFileSync(settingsFile, "utf8")) as { Values: Record<string, string> };
    settings.Values[SETTING] = "";
    writeFileSync(settingsFile, JSON.stringify(settings));
    await flo.restart();
    const res = await flo.json("federations/attack/resume", { method: "POST" });
    expect(res.status).toBe(400);
    expectComputeDisabled(res.body);
    await settle(1500);
    expect(existsSync(marker)).toBe(false);
    expect((await flo.json("federations/attack")).body.runtimeStatus).toBe("Failed");
  }, 60_000);
});

describe("the compute lookup itself", () => {
  const transfer = {
    source: () => {
      throw new Error("not used");
    },
    downloadFolder: () => Promise.reject(new Error("not used")),
    uploadFolder: () => Promise.reject(new Error("not used")),
    uploadFile: () => Promise.reject(new Error("not used")),
  };
  const context = (env: Record<string, string>) => ({
    env,
    credential: () => {
      throw new Error("not used");
    },
    transfer,
    publishJobEvent: () => Promise.resolve(),
  });

  it("refuses to build a local SiloCompute without the opt-in, and builds one with it", () => {
    const root = mkdtempSync(join(tmpdir(), "flo-optin-lookup-"));
    const disabled = new ComputeInstances(context({ FLO_LOCAL_JOBS_DIR: root, [SETTING]: "yes" }));
    const enabled = new ComputeInstances(context({ FLO_LOCAL_JOBS_DIR: root, [SETTING]: "enabled" }));
    try {
      expect(() => disabled.for({ type: "local" })).toThrow(
        `expected a compute type this host runs, got "local": local compute runs the spec's command as this host's user and is disabled here (set ${SETTING}=enabled`,
      );
      expect(() => enabled.for({ type: "local" })).not.toThrow();
    } finally {
      disabled.close();
      enabled.close();
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("makes prepareFederation (behind the HTTP start, partner messages and the retraining timer) refuse before anything is stored", async () => {
    const instances = new ComputeInstances(context({}));
    const stored: string[] = [];
    const services = {
      store: { putJson: (path: string) => Promise.resolve(void stored.push(path)) },
      computeFor: (silo: { compute: { type: "local" } }) => instances.for(silo.compute),
    } as unknown as FederationServices;
    const spec = parseSpec(
      JSON.stringify({
        ...attackSpec("timer", "/nonexistent"),
        silos: [
          {
            name: "ok",
            compute: { type: "azureml", subscriptionId: "00000000-0000-0000-0000-000000000000", resourceGroup: "rg", workspace: "mlw-a", computeName: "cpu", exchangeDatastore: "flo_exchange" },
          },
          ...(attackSpec("timer", "/x").silos as object[]),
        ],
        training: { command: "node t.js ${{outputs.model_update}}", environment: "azureml:env:1" },
      }),
      { format: "json", source: "timer" },
    );
    const refused = prepareFederation(services, "timer", spec, new Date());
    await expect(refused).rejects.toBeInstanceOf(ApiError);
    await expect(refused).rejects.toMatchObject({ status: 400, message: expect.stringContaining("silos[1].compute.type") });
    expect(stored).toEqual([]);
  });
});
