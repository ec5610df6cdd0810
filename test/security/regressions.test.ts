/**
 * Protections that already held when the trust boundaries were reviewed, kept as attacks that must
 * keep failing: hostile spec text, shell metacharacters in parameters, markup in names and metrics,
 * poisoned updates, and a forged "Completed" job event.
 */
import { promises as fs } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { runAggregate } from "../../lib/cli/aggregate";
import { renderCommand } from "../../lib/compute/commandTemplate";
import { localJobEvent } from "../../lib/compute/local/events";
import { floJobName, floJobTags } from "../../lib/compute/siloCompute";
import { MANIFEST_SCHEMA, type RoundManifest } from "../../lib/federation/manifest";
import { jobEventMessage } from "../../lib/messaging/wireMessages";
import { encodeFloats } from "../../lib/models/dtypes";
import { fileSink } from "../../lib/models/fileBytes";
import { writeSafetensors } from "../../lib/models/safetensors";
import { renderReport } from "../../lib/report/html";
import { finished, startFloHost, toySpec, writeToyData, type FloHost, type ToySilo } from "../helpers/flo";

describe("hostile spec text through the API of a real flo host", () => {
  let flo: FloHost;
  beforeAll(async () => {
    flo = await startFloHost({ settings: { FLO_LOCAL_COMPUTE: "enabled" } });
  });
  afterAll(async () => {
    await flo?.stop();
  });
  const post = (body: string, contentType: string) => flo.api("federations", { method: "POST", body, headers: { "content-type": contentType } });

  test("a YAML alias bomb is a 400 syntax error, not expanded", async () => {
    const bomb = [
      "a: &a [x, x, x, x, x, x, x, x, x, x]",
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
      "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
      "e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]",
    ].join("\n");
    const res = await post(bomb, "application/yaml");
    expect(res.status).toBe(400);
    expect(JSON.stringify(await res.json())).toMatch(/alias/i);
  });

  test("deeply nested JSON is a 400, not a stack overflow", async () => {
    const res = await post(`${"[".repeat(100_000)}${"]".repeat(100_000)}`, "application/json");
    expect(res.status).toBe(400);
    expect(((await res.json()) as { status: number }).status).toBe(400);
  });

  test("a __proto__ key in the spec is refused by name, not silently dropped", async () => {
    const spec = JSON.stringify(toySpec("proto", [{ name: "east", target: [1, 1, 1, 1], n: 1 }])).replace('"training":{', '"training":{"parameters":{"__proto__":"x"},');
    const res = await post(spec, "application/json");
    expect(res.status).toBe(400);
    expect(JSON.stringify(await res.json())).toContain("training.parameters.__proto__");
  });
});

test("parameters reach the trainer as single argv entries: no shell ever sees them", () => {
  const argv = renderCommand("python train.py --data ${{inputs.data}} --note ${{inputs.note}} --out ${{outputs.model_update}}", {
    inputs: { data: "/data/x; rm -rf / #", note: "$(id) `id` && echo pwned | tee /tmp/p" },
    outputs: { model_update: "/out dir" },
  });
  expect(argv).toEqual(["python", "train.py", "--data", "/data/x; rm -rf / #", "--note", "$(id) `id` && echo pwned | tee /tmp/p", "--out", "/out dir"]);
});

test("report.html escapes silo names, reasons and metric names (no markup from a silo reaches the page)", () => {
  const evil = '<img src=x onerror="alert(1)">';
  const manifest: RoundManifest = {
    schema: MANIFEST_SCHEMA,
    federationId: `fed-${evil}`,
    round: 1,
    status: "aggregated",
    spec: { uri: "mem://spec", sha256: "0".repeat(64) },
    sampled: [evil, "east"],
    silos: [
      { silo: evil, outcome: "failed", attempts: [], included: false, reason: `${evil} </script><script>alert(2)</script>`, metrics: { [evil]: 1 } },
      { silo: "east", outcome: "succeeded", attempts: [], included: true, numExamples: 1, metrics: { [`${evil}acc`]: 0.5 } },
    ],
    strategy: { name: "fedavg", options: {} },
    metrics: { [`${evil}acc`]: 0.5 },
    globalMetrics: {},
    totalExamples: 1,
    timings: { roundStartedAt: new Date(0).toISOString() },
  };
  const html = renderReport({ federationId: `fed-${evil}`, runtimeStatus: "Completed", manifests: [manifest] });
  expect(html).toContain("&lt;img src=x onerror=");
  expect(html).not.toContain(evil);
  expect(html).not.toContain("<script>alert(2)</script>");
});

describe("poisoned updates are excluded with their reason", () => {
  let dir: string;
  beforeAll(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "flo-sec-poison-"));
    const write = async (silo: string, values: number[], shape: number[] = [values.length]) => {
      await fs.mkdir(path.join(dir, silo));
      await writeSafetensors(fileSink(path.join(dir, silo, "model.safetensors")), [{ name: "w", dtype: "F32", shape, data: encodeFloats(values, "F32") }]);
      await fs.writeFile(path.join(dir, silo, "metrics.json"), JSON.stringify({ num_examples: 1 }));
    };
    await write("east", [1, 1]);
    await write("west", [3, 3]);
    await write("nan", [Number.NaN, 1]);
    await write("shape", [1, 2, 3]);
    await fs.mkdir(path.join(dir, "garbage"));
    await fs.writeFile(path.join(dir, "garbage", "model.safetensors"), "not a model at all");
    await fs.writeFile(path.join(dir, "garbage", "metrics.json"), JSON.stringify({ num_examples: 1 }));
  });
  afterAll(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  test("NaN, a shape mismatch and a malformed file each excluded; the honest average stands", async () => {
    const lines: string[] = [];
    const code = await runAggregate(
      { out: path.join(dir, "global.safetensors"), strategy: "fedavg", minUpdates: 2, updateDirs: ["east", "west", "nan", "shape", "garbage"].map((d) => path.join(dir, d)) },
      { out: (l) => lines.push(l), err: (l) => lines.push(l) },
    );
    expect(code).toBe(0);
    expect(lines.find((l) => l.startsWith("excluded  nan"))).toMatch(/non-finite|NaN/i);
    expect(lines.find((l) => l.startsWith("excluded  shape"))).toMatch(/layout mismatch/);
    expect(lines.find((l) => l.startsWith("excluded  garbage"))).toMatch(/invalid model/);
    expect(lines.at(-1)).toBe("aggregated 2 of 5 updates with fedavg (2 examples)");
  });
});

describe("a forged Completed job event on a real flo host", () => {
  let flo: FloHost;
  beforeAll(async () => {
    flo = await startFloHost({ settings: { FLO_LOCAL_COMPUTE: "enabled" } });
  });
  afterAll(async () => {
    await flo?.stop();
  });

  test("is confirmed against the job's status: a still-running job does not complete its silo early", async () => {
    const silos: ToySilo[] = [
      { name: "slow", target: [1, 1, 1, 1], n: 10, behavior: "sleep:6000" },
      { name: "quick", target: [3, 3, 3, 3], n: 10 },
    ];
    writeToyData(flo.dir, silos);
    const id = "forged-event";
    expect((await flo.start(toySpec(id, silos, { rounds: 1, policy: { minSilos: 2, roundTimeout: "PT1M" } }))).status).toBe(202);
    const jobName = floJobName({ federationId: id, round: 1, silo: "slow", attempt: 1 });
    // Wait until the slow job was submitted (queued or running: it sleeps 6 s), then claim it completed.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const status = await flo.json<{ silos?: { silo: string; state: string }[] }>(`federations/${id}`);
      if (status.body.silos?.some((s) => s.silo === "slow" && (s.state === "queued" || s.state === "running"))) break;
      if (Date.now() > deadline) throw new Error(`slow never ran: ${JSON.stringify(status.body)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    await flo.send("job-events", jobEventMessage(localJobEvent({ jobName, state: "completed", tags: floJobTags({ federationId: id, round: 1, silo: "slow" }) })));
    const final = await flo.waitFor(id, finished, 60_000);
    expect(final.runtimeStatus).toBe("Completed");
    // Had the claim been believed, the silo's output (not written yet) would have been missing and the
    // silo excluded; confirmed against the job, the round waited for the real job and took its update.
    const status = await flo.json<{ history: { included: string[]; excluded: unknown[] }[] }>(`federations/${id}`);
    expect(status.body.history[0].included.sort()).toEqual(["quick", "slow"]);
    expect(status.body.history[0].excluded).toEqual([]);
  });
});
