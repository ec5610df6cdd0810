/**
 * The silo job contract's own rules, whatever the backend: job names, and the one metrics.json
 * parser (what an update must report to be weighed).
 */
import { createHash } from "node:crypto";
import { floJobName, JOB_NAME_PATTERN, MAX_METRICS_BYTES, parseSiloMetrics, readSiloMetrics, SiloOutputError } from "../lib/compute/siloCompute";
import { memorySource } from "./fixtures/memoryBytes";

describe("floJobName", () => {
  test("flo-<federationId>-r<round>-<silo>, with -a<attempt> after the first attempt", () => {
    expect(floJobName({ federationId: "fraud-demo", round: 3, silo: "east" })).toBe("flo-fraud-demo-r3-east");
    expect(floJobName({ federationId: "fraud-demo", round: 3, silo: "east", attempt: 1 })).toBe("flo-fraud-demo-r3-east");
    expect(floJobName({ federationId: "fraud-demo", round: 3, silo: "east", attempt: 2 })).toBe("flo-fraud-demo-r3-east-a2");
  });

  test("characters outside Azure ML's rule are replaced", () => {
    const name = floJobName({ federationId: "fraud.demo/2026 run", round: 1, silo: "east" });
    expect(name).toBe("flo-fraud-demo-2026-run-r1-east");
    expect(name).toMatch(JOB_NAME_PATTERN);
  });

  test("over-long ids are shortened with a hash: <= 255 characters, suffix kept, distinct ids stay distinct", () => {
    const long1 = `${"a".repeat(300)}-1`;
    const long2 = `${"a".repeat(300)}-2`;
    const name1 = floJobName({ federationId: long1, round: 12, silo: "silo-with-a-long-name-0123456789", attempt: 3 });
    const name2 = floJobName({ federationId: long2, round: 12, silo: "silo-with-a-long-name-0123456789", attempt: 3 });
    expect(name1).toHaveLength(255);
    expect(name1).toMatch(JOB_NAME_PATTERN);
    expect(name1.endsWith(`-${createHash("sha256").update(long1).digest("hex").slice(0, 8)}-r12-silo-with-a-long-name-0123456789-a3`)).toBe(true);
    expect(name1).not.toBe(name2);
    // Deterministic: the orchestrator recomputes it on replay.
    expect(floJobName({ federationId: long1, round: 12, silo: "silo-with-a-long-name-0123456789", attempt: 3 })).toBe(name1);
  });

  test("an id that exactly fits is not shortened", () => {
    const id = "b".repeat(255 - "flo-".length - "-r1-s".length);
    expect(floJobName({ federationId: id, round: 1, silo: "s" })).toBe(`flo-${id}-r1-s`);
    expect(floJobName({ federationId: id, round: 1, silo: "s" })).toHaveLength(255);
  });

  test("bad round or attempt is a RangeError", () => {
    expect(() => floJobName({ federationId: "f", round: 0, silo: "s" })).toThrow("floJobName: round must be an integer >= 1, got 0");
    expect(() => floJobName({ federationId: "f", round: 1.5, silo: "s" })).toThrow(RangeError);
    expect(() => floJobName({ federationId: "f", round: 1, silo: "s", attempt: 0 })).toThrow("floJobName: attempt must be an integer >= 1, got 0");
  });
});
describe("metrics.json: one parser, one rule", () => {
  test("num_examples and metrics are read, global_metrics when reported", () => {
    expect(parseSiloMetrics('{"num_examples": 1234, "metrics": {"loss": 0.25, "auc": 0.91}, "global_metrics": {"loss": 0.4}}', "m")).toEqual({
      numExamples: 1234,
      metrics: { loss: 0.25, auc: 0.91 },
      globalMetrics: { loss: 0.4 },
    });
  });

  test("metrics are optional: an update without them weighs num_examples and reports nothing", () => {
    expect(parseSiloMetrics('\uFEFF{"num_examples": 7}', "m")).toEqual({ numExamples: 7, metrics: {} });
  });

  test.each([
    ['{"num_examples": 0, "metrics": {}}', "num_examples: expected an integer > 0, got 0"],
    ['{"num_examples": -1, "metrics": {}}', "num_examples: expected an integer > 0, got -1"],
    ['{"num_examples": 2.5, "metrics": {}}', "num_examples: expected an integer > 0, got 2.5"],
    ['{"num_examples": "12"}', 'num_examples: expected an integer > 0, got "12"'],
    ['{"examples": 3}', "num_examples: expected an integer > 0, got nothing"],
    ['{"num_examples": 3, "metrics": [1]}', "metrics: expected an object of metric name -> number, got [1]"],
    ['{"num_examples": 3, "metrics": {"loss": "low"}}', 'metrics.loss: expected a finite number, got "low"'],
    ['{"num_examples": 3, "metrics": {}, "global_metrics": {"auc": null}}', "global_metrics.auc: expected a finite number, got null"],
    ["[1]", 'metrics.json: expected a JSON object {"num_examples": int > 0, "metrics": {...}}, got an array'],
    ["", "metrics.json: expected JSON, got unparseable text (Unexpected end of JSON input)"],
  ])("%s is refused", (text, message) => {
    expect(() => parseSiloMetrics(text, "blob://m")).toThrow(`Invalid silo output at blob://m: ${message}`);
  });

  test("readSiloMetrics reads the whole file, names it in errors, and refuses one over the size limit", async () => {
    await expect(readSiloMetrics(memorySource("east/metrics.json", Buffer.from('{"num_examples": 3, "metrics": {"acc": 0.5}}')))).resolves.toEqual({ numExamples: 3, metrics: { acc: 0.5 } });
    const bad = await readSiloMetrics(memorySource("east/metrics.json", Buffer.from("{nope"))).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(SiloOutputError);
    expect((bad as SiloOutputError).location).toBe("east/metrics.json");
    const huge = Buffer.alloc(MAX_METRICS_BYTES + 1, 0x20);
    await expect(readSiloMetrics(memorySource("west/metrics.json", huge))).rejects.toThrow(
      `Invalid silo output at west/metrics.json: metrics.json: expected at most ${MAX_METRICS_BYTES} bytes, got ${MAX_METRICS_BYTES + 1} bytes`,
    );
  });
});
