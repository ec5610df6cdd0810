/** The spec of secure aggregation: fields, defaults, and the refusals with their reasons and field paths. */
import { validateSpec, type SpecIssue } from "../lib/spec";
import { AZUREML_COMPUTE, issuesOf } from "./helpers/specIssues";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseYaml } from "yaml";
import { encodeKey, generateKeyPair, readSecretKeyFile } from "../lib/secagg/keys";
import { setupSecureDemo } from "../examples/fraud/secureSetup";

const keys = [generateKeyPair(), generateKeyPair(), generateKeyPair()].map((k) => encodeKey(k.publicKey));

/** A valid secure spec; each case breaks one thing in a fresh copy. */
function secure(): any {
  return {
    name: "secure-demo",
    rounds: 2,
    initialModel: "init.safetensors",
    silos: ["east", "west", "north"].map((name, i) => ({
      name,
      compute: { type: "local", keyFile: `keys/${name}.key` },
      inputs: { data: `data/${name}` },
      publicKey: keys[i],
      maxExamples: 1000,
    })),
    training: { command: "node train.js --global ${{inputs.global_model}} --data ${{inputs.data}} --out ${{outputs.model_update}}" },
    aggregation: { strategy: "fedavg", clipping: { mode: "fixed", norm: 1 }, secureAggregation: {} },
  };
}

const paths = (issues: SpecIssue[]) => issues.map((i) => i.path);

describe("aggregation.secureAggregation", () => {
  it("accepts a complete spec and applies the defaults (bits 16, stochastic rounding, no per-silo metrics)", () => {
    const spec = validateSpec(secure());
    expect(spec.aggregation.secureAggregation).toEqual({ bits: 16, rounding: "stochastic", publishSiloMetrics: false });
    expect((spec.silos[0].compute as { keyFile?: string }).keyFile).toBe("keys/east.key");
  });

  it("accepts fedadam and central DP with fixed clipping (strategies on the weighted sum)", () => {
    const spec = secure();
    spec.aggregation = { strategy: "fedadam", clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 0.5 }, secureAggregation: { threshold: 3 } };
    expect(validateSpec(spec).aggregation.strategy).toBe("fedadam");
  });

  it("refuses robust rules with the reason, from the definitions' capabilities", () => {
    const spec = secure();
    spec.aggregation = { strategy: "median", clipping: { mode: "fixed", norm: 1 }, secureAggregation: {} };
    const issue = issuesOf(spec).find((i) => i.path === "aggregation.strategy")!;
    expect(issue.expected).toMatch(/weighted sum.*fedavg.*fedadam/);
    expect(issue.got).toMatch(/^median: a robust rule needs the individual updates/);
    expect(issue.expected).not.toMatch(/median|krum/);
  });

  it("refuses adaptive clipping, missing clipping and a weight share cap", () => {
    const adaptive = secure();
    adaptive.aggregation.clipping = { mode: "adaptive" };
    expect(issuesOf(adaptive).find((i) => i.path === "aggregation.clipping.mode")!.expected).toMatch(/^fixed .*adaptive clipping needs each update's norm/);
    const none = secure();
    delete none.aggregation.clipping;
    expect(issuesOf(none).find((i) => i.path === "aggregation.clipping")!.got).toBe("missing");
    const capped = secure();
    capped.aggregation.maxWeightShare = 0.5;
    expect(paths(issuesOf(capped))).toContain("aggregation.maxWeightShare");
  });

  it("refuses t < 2, t above the silos per round, and minSilos below t", () => {
    const one = secure();
    one.aggregation.secureAggregation.threshold = 1;
    expect(issuesOf(one).find((i) => i.path === "aggregation.secureAggregation.threshold")!.expected).toMatch(/>= 2/);
    const four = secure();
    four.aggregation.secureAggregation.threshold = 4;
    expect(issuesOf(four).find((i) => i.path === "aggregation.secureAggregation.threshold")!.expected).toBe("<= 3 (the silos sampled per round)");
    const quorum = secure();
    quorum.aggregation.secureAggregation.threshold = 3;
    quorum.policy = { minSilos: 2 };
    const issue = issuesOf(quorum).find((i) => i.path === "policy.minSilos")!;
    expect(issue.expected).toMatch(/>= the threshold 3/);
    expect(issue.got).toBe("minSilos 2");
    const defaultT = secure();
    defaultT.policy = { minSilos: 1 };
    expect(issuesOf(defaultT).find((i) => i.path === "policy.minSilos")!.expected).toMatch(/ceil\(2K\/3\) = 2/);
  });

  it("needs every silo's public key, maxExamples and key input, and an initial model", () => {
    const spec = secure();
    delete spec.silos[0].publicKey;
    spec.silos[1].publicKey = "bm90IGEga2V5";
    delete spec.silos[2].maxExamples;
    delete spec.silos[2].compute.keyFile;
    delete spec.initialModel;
    const issues = issuesOf(spec);
    expect(paths(issues)).toEqual(expect.arrayContaining(["silos[0].publicKey", "silos[1].publicKey", "silos[2].maxExamples", "silos[2].compute.keyFile", "initialModel"]));
    expect(issues.find((i) => i.path === "silos[1].publicKey")!.got).toMatch(/expected 32 bytes, got 9/);
  });

  it("takes an Azure ML silo's key as azureml://datastores/<private>/paths/<file> outside the exchange datastore, with a local code folder flo ships the masking package in", () => {
    const spec = secure();
    spec.training.environment = "azureml:flo-node:1";
    spec.training.code = "azureml:flo-code:3";
    spec.silos[0].compute = { ...AZUREML_COMPUTE, secretKey: "https://example.com/key" };
    expect(paths(issuesOf(spec))).toContain("silos[0].compute.secretKey");
    spec.silos[0].compute.secretKey = "azureml://datastores/flo_exchange/paths/flo/silo.key";
    const issues = issuesOf(spec);
    expect(paths(issues).sort()).toEqual(["silos[0].compute.secretKey", "training.code"]);
    expect(issues.find((i) => i.path === "silos[0].compute.secretKey")!.expected).toBe("a file in a datastore private to the silo, not the exchange datastore the orchestrator reads");
    expect(issues.find((i) => i.path === "training.code")!).toMatchObject({ got: '"azureml:flo-code:3"', expected: expect.stringMatching(/flo adds its masking package flo_secagg/) });
    spec.silos[0].compute.secretKey = "azureml://datastores/east_private/paths/flo/silo.key";
    spec.training.code = "trainer";
    expect(validateSpec(spec).silos[0].compute).toMatchObject({ type: "azureml", secretKey: "azureml://datastores/east_private/paths/flo/silo.key" });
  });
});

describe("the secure fraud demo", () => {
  it("its setup makes private keys, writes a copy of the spec with the public keys filled in and the round-1 model; the copy is valid, the tracked spec untouched", async () => {
    const dir = mkdtempSync(join(tmpdir(), "flo-secure-demo-"));
    const template = `${__dirname}/../examples/fraud/secure.yaml`;
    const before = readFileSync(template, "utf8");
    const specFile = join(dir, "out", "secure.yaml");
    expect(() => validateSpec(parseYaml(before))).toThrow(/silos\[0\]\.publicKey/);
    await setupSecureDemo({ spec: template, keys: join(dir, "keys"), out: specFile });
    expect(readFileSync(template, "utf8")).toBe(before);
    const spec = validateSpec(parseYaml(readFileSync(specFile, "utf8")));
    for (const silo of spec.silos) {
      const keyFile = join(dir, "keys", `${silo.name}.key`);
      expect(statSync(keyFile).mode & 0o777).toBe(0o600);
      expect(silo.publicKey).toBe((await readSecretKeyFile(keyFile)).publicKey.toString("base64"));
    }
    expect(statSync(join(dir, "keys", "initial.safetensors")).size).toBeGreaterThan(0);
  }, 60_000);
});
