import { readFileSync } from "node:fs";
import { loadSpecFile, parseSpec, SpecError, validateSpec, type SpecIssue } from "../lib/spec";
import { AZUREML_COMPUTE, issuesOf } from "./helpers/specIssues";

const SPECS = `${__dirname}/../examples/specs`;

/** A valid spec as a plain object; each invalid case below breaks one thing in a fresh copy. */
function base(): any {
  return {
    name: "fraud-demo",
    rounds: 5,
    silos: [
      { name: "east", compute: { type: "local" }, inputs: { data: "data/east" } },
      { name: "west", compute: { type: "local" }, inputs: { data: "data/west" } },
      { name: "north", compute: { type: "local" }, inputs: { data: "data/north" } },
    ],
    training: {
      command: "node train.js $[[--global ${{inputs.global_model}}]] --data ${{inputs.data}} --epochs ${{inputs.epochs}} --out ${{outputs.model_update}}",
      parameters: { epochs: 2, lr: 0.01 },
    },
  };
}

const triples = (issues: SpecIssue[]) => issues.map(({ path, expected, got }) => [path, expected, got]);

describe("valid specs", () => {
  test("the base spec parses with every default applied", () => {
    const spec = validateSpec(base());
    expect(spec.initialModel).toBeNull();
    expect(spec.aggregation).toEqual({ strategy: "fedavg" });
    // minSilos defaults to every sampled silo: a model never silently comes from 1 of 3 silos.
    expect(spec.policy).toEqual({ minSilos: 3, roundTimeout: "PT1H", roundTimeoutSeconds: 3600, jobRetries: 1, sampleFraction: 1, silosPerRound: 3 });
    expect(spec.schedule).toBeUndefined();
    expect(spec.silos[0]).toEqual({ name: "east", compute: { type: "local" }, inputs: { data: "data/east" } });
  });

  test("minimal.yaml: inputs and parameters default to {}", async () => {
    const spec = await loadSpecFile(`${SPECS}/minimal.yaml`);
    expect(spec.training.parameters).toEqual({});
    expect(spec.policy.minSilos).toBe(2);
    expect(spec.silos.map((s) => s.name)).toEqual(["a", "b"]);
  });

  test("fraud-local.yaml: the contract example parses, original field names kept", async () => {
    const spec = await loadSpecFile(`${SPECS}/fraud-local.yaml`);
    expect(spec.name).toBe("fraud-demo");
    expect(spec.rounds).toBe(5);
    expect(spec.training.code).toBe("examples/fraud");
    expect(spec.training.parameters).toEqual({ epochs: 2, lr: 0.01 });
    expect(spec.policy).toEqual({ minSilos: 2, roundTimeout: "PT30M", roundTimeoutSeconds: 1800, jobRetries: 1, sampleFraction: 1, silosPerRound: 3 });
    expect(spec.schedule).toBe("0 0 2 * * 0");
    expect(spec.silos[2].inputs.data).toBe("examples/fraud/data/north region");
  });

  test("fedadam.json: optimizer defaults (tau 1e-3) fill in around the given serverLr; sampling rounds up", async () => {
    const spec = await loadSpecFile(`${SPECS}/fedadam.json`);
    expect(spec.aggregation).toEqual({ strategy: "fedadam", serverLr: 0.05, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
    expect(spec.policy.silosPerRound).toBe(2);
    expect(spec.policy.roundTimeoutSeconds).toBe(1200);
    expect(spec.initialModel).toBe("models/start.safetensors");
    expect(spec).not.toHaveProperty("$schema");
  });

  test("azureml-robust.yaml: azureml compute, multi-krum, clipping defaults", async () => {
    const spec = await loadSpecFile(`${SPECS}/azureml-robust.yaml`);
    expect(spec.silos[0].compute).toEqual({
      ...AZUREML_COMPUTE,
      resourceGroup: "rg-insurer-a",
      workspace: "mlw-insurer-a",
      computeName: "gpu-cluster",
      exchangeDatastore: "flo_exchange",
      exchangeContainer: "flo-exchange",
    });
    expect(spec.silos[0].inputs.data).toEqual({ type: "uri_folder", path: "azureml://datastores/claims/paths/2026/", mode: "ro_mount" });
    expect(spec.silos[1].compute).toMatchObject({ type: "azureml", exchangeDatastore: "flo_exchange" });
    expect(spec.silos[1].inputs.data).toEqual({ type: "uri_folder", path: "azureml:claims-2026@latest", mode: "download" });
    expect(spec.training).toMatchObject({ environment: "azureml:claims-torch@latest", code: "examples/claims" });
    expect(spec.aggregation).toEqual({ strategy: "multi-krum", byzantine: 1, keep: 3, clipping: { mode: "fixed", norm: 1 } });
    expect(spec.policy).toMatchObject({ minSilos: 5, jobRetries: 2, roundTimeoutSeconds: 7200 });
  });

  test("central DP is refused around non-mean strategies, accepted around mean-based ones", () => {
    const agg = (aggregation: unknown) => validateSpec({ ...base(), initialModel: "models/start.safetensors", aggregation }).aggregation;
    for (const strategy of ["median", "trimmed-mean"]) {
      expect(() => agg({ strategy, clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 1 } })).toThrow(new RegExp(`aggregation\\.dp: expected no dp with ${strategy}: Gaussian noise`));
    }
    expect(agg({ strategy: "fedadam", clipping: { mode: "fixed", norm: 1 }, dp: { noiseMultiplier: 1 } })).toMatchObject({ dp: { noiseMultiplier: 1, delta: 1e-5 } });
  });

  test("per-strategy defaults", () => {
    const agg = (aggregation: unknown) => validateSpec({ ...base(), initialModel: "models/start.safetensors", aggregation }).aggregation;
    expect(agg({ strategy: "fedavgm" })).toEqual({ strategy: "fedavgm", serverLr: 1, momentum: 0 });
    expect(agg({ strategy: "fedyogi" })).toEqual({ strategy: "fedyogi", serverLr: 0.01, beta1: 0.9, beta2: 0.99, tau: 1e-3 });
    expect(agg({ strategy: "fedadagrad" })).toEqual({ strategy: "fedadagrad", serverLr: 0.1, tau: 1e-3 });
    expect(agg({ strategy: "trimmed-mean" })).toEqual({ strategy: "trimmed-mean", beta: 0.2 });
    expect(agg({ strategy: "median", clipping: { mode: "adaptive", initialNorm: 0.1 } })).toEqual({
      strategy: "median",
      clipping: { mode: "adaptive", initialNorm: 0.1, targetQuantile: 0.5, learningRate: 0.2 },
    });
    expect(agg({ strategy: "krum", byzantine: 0 })).toEqual({ strategy: "krum", byzantine: 0 });
  });

  test("durations convert to seconds", () => {
    const seconds = (roundTimeout: string) => validateSpec({ ...base(), policy: { roundTimeout } }).policy.roundTimeoutSeconds;
    expect(seconds("PT30M")).toBe(1800);
    expect(seconds("P1DT2H")).toBe(93600);
    expect(seconds("PT1.5S")).toBe(1.5);
    expect(seconds("P2W")).toBe(1209600);
    expect(seconds("PT1H30M15S")).toBe(5415);
  });

  test("sampling: silosPerRound = ceil(fraction x silos), never 0, float noise ignored", () => {
    const perRound = (sampleFraction: number, count: number) => {
      const spec = base();
      spec.silos = Array.from({ length: count }, (_, i) => ({ name: `s${i}`, compute: { type: "local" }, inputs: { data: "d" } }));
      spec.policy = { sampleFraction, minSilos: 1 };
      return validateSpec(spec).policy.silosPerRound;
    };
    expect(perRound(0.3, 10)).toBe(3); // 0.3 * 10 = 3.0000000000000004 in floats
    expect(perRound(0.1, 5)).toBe(1);
    expect(perRound(0.01, 3)).toBe(1);
    expect(perRound(0.5, 3)).toBe(2);
  });

  test("a validated spec validates again to itself (stored spec.json is re-read with parseSpec)", async () => {
    for (const file of ["minimal.yaml", "fraud-local.yaml", "azureml-robust.yaml", "fedadam.json"]) {
      const spec = await loadSpecFile(`${SPECS}/${file}`);
      const stored = JSON.stringify(spec);
      expect(parseSpec(stored, { format: "json", source: "spec.json" })).toEqual(spec);
    }
  });

  test("derived policy fields are accepted only with the value flo derives", () => {
    const spec = validateSpec(base());
    const tampered = { ...spec, policy: { ...spec.policy, roundTimeoutSeconds: 60, silosPerRound: 2 } };
    expect(triples(issuesOf(tampered))).toEqual([
      ["policy.roundTimeoutSeconds", '3600 (derived by flo from policy.roundTimeout "PT1H"; omit this field)', "60"],
      ["policy.silosPerRound", "3 (derived by flo from the silo count and policy.sampleFraction; omit this field)", "2"],
    ]);
  });

  test("JSON text and YAML text give the same spec; format is sniffed when not given", () => {
    const json = JSON.stringify(base());
    expect(parseSpec(json)).toEqual(parseSpec(json, { format: "yaml" }));
    expect(parseSpec(json, { source: "x.json" })).toEqual(validateSpec(base()));
  });
});

describe("invalid specs: each names the path and expected vs got", () => {
  const cases: [string, (spec: any) => void, [string, string, string][]][] = [
    ["silo name with upper case", (s) => (s.silos[1].name = "East_1"), [["silos[1].name", "[a-z0-9-]{1,32}", '"East_1"']]],
    ["federation name", (s) => (s.name = "Fraud Demo"), [["name", "[a-z0-9-]{1,40}", '"Fraud Demo"']]],
    ["rounds missing", (s) => delete s.rounds, [["rounds", "a number", "missing"]]],
    ["rounds not an integer", (s) => (s.rounds = 2.5), [["rounds", "an integer", "2.5"]]],
    ["rounds zero", (s) => (s.rounds = 0), [["rounds", "a number >= 1", "0"]]],
    ["rounds as a string", (s) => (s.rounds = "5"), [["rounds", "a number", '"5"']]],
    ["duplicate silo names", (s) => (s.silos[2].name = "east"), [["silos[2].name", "a name no other silo uses", '"east" (already silos[0].name)']]],
    ["no silos", (s) => (s.silos = []), [["silos", "at least 1 item(s)", "a list of 0"]]],
    ["unknown compute type", (s) => (s.silos[0].compute = { type: "kubernetes" }), [["silos[0].compute.type", "one of local|azureml", '"kubernetes"']]],
    [
      "subscriptionId not a GUID",
      (s) => {
        s.silos[1].compute = { ...AZUREML_COMPUTE, subscriptionId: "my-subscription" };
        s.training.environment = "azureml:flo-node:1";
      },
      [["silos[1].compute.subscriptionId", "a GUID like 00000000-0000-0000-0000-000000000000", '"my-subscription"']],
    ],
    [
      "workspace name too short",
      (s) => {
        s.silos[1].compute = { ...AZUREML_COMPUTE, workspace: "ws" };
        s.training.environment = "azureml:flo-node:1";
      },
      [["silos[1].compute.workspace", "[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}", '"ws"']],
    ],
    [
      "compute name ending with a hyphen, resource group ending with a period",
      (s) => {
        s.silos[0].compute = { ...AZUREML_COMPUTE, computeName: "cluster-", resourceGroup: "rg." };
        s.training.environment = "azureml:flo-node:1";
      },
      [
        ["silos[0].compute.resourceGroup", "[-\\w.()]{0,89}[-\\w()]", '"rg."'],
        ["silos[0].compute.computeName", "[a-zA-Z][a-zA-Z0-9-]{0,22}[a-zA-Z0-9]", '"cluster-"'],
      ],
    ],
    [
      "azureml silo without an environment",
      (s) => (s.silos[2].compute = AZUREML_COMPUTE),
      [["training.environment", "an Azure ML environment such as azureml:flo-node:1 (silos[2] uses azureml compute)", "missing"]],
    ],
    [
      "azureml compute missing computeName",
      (s) => {
        const { computeName: _omitted, ...compute } = AZUREML_COMPUTE;
        s.silos[0].compute = compute;
        s.training.environment = "azureml:flo-node:1";
      },
      [["silos[0].compute.computeName", "a string", "missing"]],
    ],
    ["roundTimeout not ISO-8601", (s) => (s.policy = { roundTimeout: "30m" }), [["policy.roundTimeout", "an ISO-8601 duration such as PT30M or P1DT2H", '"30m"']]],
    ["roundTimeout zero", (s) => (s.policy = { roundTimeout: "PT0S" }), [["policy.roundTimeout", "a duration > 0", '"PT0S"']]],
    ["roundTimeout beyond 30 days", (s) => (s.policy = { roundTimeout: "P31D" }), [["policy.roundTimeout", "a duration <= P30D", '"P31D"']]],
    ["sampleFraction zero", (s) => (s.policy = { sampleFraction: 0 }), [["policy.sampleFraction", "a number > 0", "0"]]],
    ["sampleFraction above 1", (s) => (s.policy = { sampleFraction: 1.5 }), [["policy.sampleFraction", "a number <= 1", "1.5"]]],
    ["minSilos above the silo count", (s) => (s.policy = { minSilos: 4 }), [["policy.minSilos", "<= 3 (the number of silos)", "4"]]],
    ["minSilos above the sampled count", (s) => (s.policy = { minSilos: 2, sampleFraction: 0.3 }), [["policy.minSilos", "<= 1 (silos sampled per round: ceil(sampleFraction 0.3 x 3 silos))", "2"]]],
    ["jobRetries negative", (s) => (s.policy = { jobRetries: -1 }), [["policy.jobRetries", "a number >= 0", "-1"]]],
    ["five-field cron", (s) => (s.schedule = "0 2 * * 0"), [["schedule", 'six-field NCRONTAB "{second} {minute} {hour} {day} {month} {day-of-week}"', '"0 2 * * 0"']]],
    ["cron hour out of range", (s) => (s.schedule = "0 0 25 * * *"), [["schedule", 'six-field NCRONTAB "{second} {minute} {hour} {day} {month} {day-of-week}"', '"0 0 25 * * *"']]],
    [
      "initialModel as a pickled checkpoint",
      (s) => (s.initialModel = "models/start.pt"),
      [["initialModel", "a path, https://, azureml:// or loopback http:// location of a .safetensors file", '"models/start.pt"']],
    ],
    ["initialModel empty", (s) => (s.initialModel = ""), [["initialModel", "at least 1 character(s)", '""']]],
    [
      "environment that is not an Azure ML reference",
      (s) => (s.training.environment = "flo-node:1"),
      [["training.environment", "azureml:<name>:<version>, azureml:<name>@latest, azureml://registries/..., or an ARM id /subscriptions/... (optionally azureml:/subscriptions/...)", '"flo-node:1"']],
    ],
    [
      "initialModel on an unsupported scheme",
      (s) => (s.initialModel = "s3://bucket/model.safetensors"),
      [["initialModel", "a path, https://, azureml:// or loopback http:// location of a .safetensors file", '"s3://bucket/model.safetensors"']],
    ],
    [
      "initialModel over plain http off loopback",
      (s) => (s.initialModel = "http://example.com/m/model.safetensors"),
      [["initialModel", "a path, https://, azureml:// or loopback http:// location of a .safetensors file", '"http://example.com/m/model.safetensors"']],
    ],
    [
      "unknown strategy",
      (s) => (s.aggregation = { strategy: "fedprox" }),
      [["aggregation.strategy", "one of fedavg|fedavgm|fedadam|fedyogi|fedadagrad|median|trimmed-mean|krum|multi-krum|bulyan|geometric-median", '"fedprox"']],
    ],
    ["strategy missing", (s) => (s.aggregation = { beta: 0.1 }), [["aggregation.strategy", expect.stringMatching(/^one of fedavg\|/), "missing"]]],
    ["trimmed-mean beta 0.5 would cut everything", (s) => (s.aggregation = { strategy: "trimmed-mean", beta: 0.5 }), [["aggregation.beta", "a number < 0.5", "0.5"]]],
    ["fedavgm momentum 1", (s) => ((s.initialModel = "m.safetensors"), (s.aggregation = { strategy: "fedavgm", momentum: 1 })), [["aggregation.momentum", "a number < 1", "1"]]],
    ["fedadam tau 0", (s) => ((s.initialModel = "m.safetensors"), (s.aggregation = { strategy: "fedadam", tau: 0 })), [["aggregation.tau", "a number > 0", "0"]]],
    [
      "fedadam without an initial model",
      (s) => (s.aggregation = { strategy: "fedadam" }),
      [["initialModel", "a model.safetensors location: fedadam steps from the global model every round, so round 1 needs one", "missing"]],
    ],
    ["krum without byzantine", (s) => (s.aggregation = { strategy: "krum" }), [["aggregation.byzantine", "a number", "missing"]]],
    [
      "krum with too many byzantine silos for the quorum",
      (s) => (s.aggregation = { strategy: "krum", byzantine: 1 }),
      [["aggregation.byzantine", "<= 0: Krum needs n >= 2f+3 updates and a round may aggregate only policy.minSilos = 3", "1"]],
    ],
    [
      "bulyan needs n >= 4f+3",
      (s) => {
        s.silos = Array.from({ length: 6 }, (_, i) => ({ name: `s${i}`, compute: { type: "local" }, inputs: { data: "d" } }));
        s.aggregation = { strategy: "bulyan", byzantine: 1 };
      },
      [["aggregation.byzantine", "<= 0: Bulyan needs n >= 4f+3 updates and a round may aggregate only policy.minSilos = 6", "1"]],
    ],
    [
      "krum when even byzantine 0 exceeds what the quorum allows",
      (s) => {
        s.policy = { minSilos: 2 };
        s.aggregation = { strategy: "krum", byzantine: 0 };
      },
      [["policy.minSilos", ">= 3: Krum with byzantine 0 needs n >= 2f+3 updates", "2"]],
    ],
    [
      "bulyan with the default quorum too small",
      (s) => {
        s.silos = s.silos.slice(0, 2);
        s.aggregation = { strategy: "bulyan", byzantine: 0 };
      },
      [["policy.minSilos", ">= 3: Bulyan with byzantine 0 needs n >= 4f+3 updates", "2 (the default: every sampled silo)"]],
    ],
    [
      "multi-krum keeping more than the honest quorum",
      (s) => {
        s.silos = Array.from({ length: 5 }, (_, i) => ({ name: `s${i}`, compute: { type: "local" }, inputs: { data: "d" } }));
        s.aggregation = { strategy: "multi-krum", byzantine: 1, keep: 5 };
      },
      [["aggregation.keep", "<= 4 (policy.minSilos = 5 minus byzantine 1)", "5"]],
    ],
    [
      "dp without clipping",
      (s) => (s.aggregation = { strategy: "fedavg", dp: { noiseMultiplier: 1 } }),
      [["aggregation.clipping", "a clipping setting: dp noise is calibrated to the clipping norm", "missing"]],
    ],
    [
      "dp with adaptive clipping and too little count noise (z >= 2 sigma_b)",
      (s) => (s.aggregation = { strategy: "fedavg", clipping: { mode: "adaptive", initialNorm: 0.1 }, dp: { noiseMultiplier: 1 } }),
      [["aggregation.dp.noiseMultiplier", "< 2 x clippedCountStddev = 0.3 (clippedCountStddev from silos per round 3 / 20)", "1"]],
    ],
    [
      "fedadagrad has no beta1",
      (s) => ((s.initialModel = "m.safetensors"), (s.aggregation = { strategy: "fedadagrad", beta1: 0.9 })),
      [["aggregation.beta1", "only known fields (strategy, serverLr, tau, clipping, dp, maxWeightShare, secureAggregation)", 'unknown field "beta1"']],
    ],
    ["misspelt policy field", (s) => (s.policy = { minsilos: 2 }), [["policy.minsilos", "only known fields (minSilos, roundTimeout, jobRetries, sampleFraction)", 'unknown field "minsilos"']]],
    [
      "input name that is not an identifier",
      (s) => (s.training.parameters["learning-rate"] = 0.1),
      [["training.parameters.learning-rate", "a name matching [A-Za-z_][A-Za-z0-9_]{0,254}", '"learning-rate"']],
    ],
    ["null as an input value", (s) => (s.silos[0].inputs.data = null), [["silos[0].inputs.data", "a string, number or boolean", "null"]]],
    [
      "input named like a built-in",
      (s) => (s.silos[0].inputs.round = 3),
      [["silos[0].inputs.round", "a name other than the inputs flo provides (round, silo, federation_id, global_model)", '"round"']],
    ],
    [
      "silo input shadowing a parameter",
      (s) => (s.silos[1].inputs.epochs = 5),
      [["silos[1].inputs.epochs", "a name not already in training.parameters (parameters are the same for every silo)", '"epochs"']],
    ],
    [
      "secret-looking parameter name",
      (s) => (s.training.parameters.storageAccountKey = "abc"),
      [
        [
          "training.parameters.storageAccountKey",
          "no secrets in a spec (silos read their own secrets inside their boundary; flo uses managed identity)",
          'a field named like a secret: the name contains "account key"',
        ],
      ],
    ],
    [
      "SAS token in a silo input value",
      (s) => (s.silos[0].inputs.data = "https://acct.blob.core.windows.net/c/d?sv=2022-11-02&sig=abcDEF%3D"),
      [["silos[0].inputs.data", "no secrets in a spec (silos read their own secrets inside their boundary; flo uses managed identity)", "a URL carrying a SAS token (sig=) (value not shown)"]],
    ],
    [
      "SAS token in initialModel",
      (s) => (s.initialModel = "https://acct.blob.core.windows.net/m/model.safetensors?sv=2022&sig=abc"),
      [["initialModel", "a location without credentials (flo reads models with its managed identity)", "a URL carrying a SAS token (sig=) (value not shown)"]],
    ],
    [
      "literal password on the command line",
      (s) => (s.training.command += " --db-user flo --password hunter2"),
      [["training.command", "no secrets in a spec (silos read their own secrets inside their boundary; flo uses managed identity)", "a literal value after --password (value not shown)"]],
    ],
    [
      "command input defined by no silo",
      (s) => (s.training.command += " --seed ${{inputs.seed}}"),
      [
        [
          "training.command",
          'input "seed" defined in training.parameters, or silos[].inputs of every silo, or a built-in (round, silo, federation_id, global_model)',
          "${{inputs.seed}}, defined nowhere",
        ],
      ],
    ],
    [
      "command input missing for one silo",
      (s) => delete s.silos[1].inputs.data,
      [
        [
          "training.command",
          'input "data" defined in training.parameters, or silos[].inputs of every silo, or a built-in (round, silo, federation_id, global_model)',
          '${{inputs.data}}, undefined for silo "west"',
        ],
      ],
    ],
    [
      "misspelt input inside an optional part",
      (s) => (s.training.command = "node t.js $[[--global ${{inputs.global_modle}}]] --out ${{outputs.model_update}}"),
      [["training.command", 'input "global_modle" defined by some silo or in training.parameters (or a built-in)', "${{inputs.global_modle}}, defined nowhere"]],
    ],
    [
      "global_model required without an initial model",
      (s) => (s.training.command = "node t.js --global ${{inputs.global_model}} --out ${{outputs.model_update}}"),
      [["training.command", "${{inputs.global_model}} inside an optional part $[[ ... ]]: without initialModel round 1 has no global model", "${{inputs.global_model}} outside $[[ ]]"]],
    ],
    [
      "command without the output",
      (s) => (s.training.command = "node t.js --data ${{inputs.data}}"),
      [["training.command", "a reference to ${{outputs.model_update}} (where the trainer writes model.safetensors and metrics.json)", "none"]],
    ],
    [
      "command with an unknown output",
      (s) => (s.training.command += " --metrics ${{outputs.metrics}}"),
      [["training.command", "${{outputs.model_update}} (the only output of a silo job)", "${{outputs.metrics}}"]],
    ],
    [
      "malformed placeholder",
      (s) => (s.training.command += " --x ${{input.data}}"),
      [["training.command", "${{inputs.<name>}} or ${{outputs.<name>}}", `"\${{input.data}}" at character ${base().training.command.length + " --x ".length + 1}`]],
    ],
    [
      "unterminated optional part",
      (s) => (s.training.command = "node t.js $[[--global ${{inputs.global_model}} --out ${{outputs.model_update}}"),
      [["training.command", '"]]" closing the optional part "$[["', "the end of the command at character 11"]],
    ],
    ["unbalanced quote", (s) => (s.training.command = 'node t.js --out "${{outputs.model_update}} --data ${{inputs.data}}'), [["training.command", 'a closing "', "an unterminated double quote"]]],
    ["unknown top-level field", (s) => (s.round = 3), [["round", expect.stringContaining("only known fields (name, description, rounds,"), 'unknown field "round"']]],
  ];

  test.each(cases)("%s", (_label, breakIt, expected) => {
    const spec = base();
    breakIt(spec);
    expect(triples(issuesOf(spec))).toEqual(expected);
  });

  test("there are at least 15 distinct invalid cases", () => {
    expect(new Set(cases.map(([, , e]) => e[0][0] + e[0][1])).size).toBeGreaterThanOrEqual(15);
  });

  test("the message lists every issue, one per line, as `path: expected X, got Y`", () => {
    const spec = base();
    spec.silos[1].name = "East_1";
    spec.rounds = 0;
    spec.policy = { minsilos: 2 };
    let error: SpecError | undefined;
    try {
      validateSpec(spec, { source: "fed.yaml" });
    } catch (e) {
      error = e as SpecError;
    }
    expect(error?.kind).toBe("invalid");
    expect(error?.message.split("\n")).toEqual([
      "invalid federation spec (fed.yaml): 3 problems",
      "  rounds: expected a number >= 1, got 0",
      '  silos[1].name: expected [a-z0-9-]{1,32}, got "East_1"',
      '  policy.minsilos: expected only known fields (minSilos, roundTimeout, jobRetries, sampleFraction), got unknown field "minsilos" (did you mean "minSilos"?)',
    ]);
    expect(JSON.parse(JSON.stringify(error))).toMatchObject({ error: "SpecError", kind: "invalid", source: "fed.yaml", issues: error?.issues });
  });

  test("unknown strategy option suggestion and a non-object spec", () => {
    const spec = base();
    spec.aggregation = { strategy: "trimmed-mean", betta: 0.1 };
    expect(issuesOf(spec)[0].message).toContain('(did you mean "beta"?)');
    expect(triples(issuesOf(["not", "a", "spec"]))).toEqual([["", "a mapping of the spec's fields (name, rounds, silos, training...)", "a list of 3"]]);
  });

  test("secret values are never echoed, whatever rule they break", () => {
    const spec = base();
    spec.initialModel = "https://acct.blob.core.windows.net/m/model.pt?sig=SUPERSECRET";
    spec.silos[0].inputs.conn = "Endpoint=sb://x/;SharedAccessKeyName=root;SharedAccessKey=SUPERSECRET";
    let message = "";
    try {
      validateSpec(spec);
    } catch (e) {
      message = (e as Error).message + JSON.stringify(e);
    }
    expect(message).toContain("initialModel");
    expect(message).toContain("silos[0].inputs.conn");
    expect(message).not.toContain("SUPERSECRET");
  });

  test("an input named __proto__ (from JSON text) is refused, not silently dropped", () => {
    const text = JSON.stringify(base()).replace('"parameters":{', '"parameters":{"__proto__":"x",');
    expect(triples(catchSpec(() => parseSpec(text, { format: "json" })).issues)).toEqual([["training.parameters.__proto__", "an input name other than __proto__", '"__proto__"']]);
  });

  test("names that merely contain secret-ish letters are not flagged", () => {
    const spec = base();
    spec.training.parameters = { ...spec.training.parameters, max_tokens: 512, tokenizer: "bpe", keyframes: 3, passes: 2, monkey: "x", token_budget: 3 };
    spec.silos[0].inputs = { ...spec.silos[0].inputs, api_key_file: "/mnt/secrets/key", db_password_env: "DB_PASSWORD", pad_token: "<pad>", pad_token_id: 0 };
    spec.training.command += " --tokenizer bpe --token-budget 3 --api-key ${{inputs.epochs}} --password-file /mnt/secrets/db";
    expect(() => validateSpec(spec)).not.toThrow();
  });
});

describe("text sources: syntax errors and positions", () => {
  test("YAML syntax error reports line and column", () => {
    const text = readFileSync(`${SPECS}/invalid/syntax-error.yaml`, "utf8");
    let error: SpecError | undefined;
    try {
      parseSpec(text, { source: "syntax-error.yaml" });
    } catch (e) {
      error = e as SpecError;
    }
    expect(error).toBeInstanceOf(SpecError);
    expect(error?.kind).toBe("syntax");
    expect(error?.issues).toHaveLength(1);
    expect(error?.issues[0]).toMatchObject({ path: "", expected: "valid YAML", line: 7, column: 1 });
    expect(error?.message).toContain("syntax-error.yaml:7:1 (spec): expected valid YAML, got");
  });

  test("duplicate keys and multiple documents are syntax errors with positions", () => {
    const dup = () => parseSpec("name: a\nrounds: 1\nname: b\n");
    expect(dup).toThrow(SpecError);
    expect(catchSpec(dup).issues[0]).toMatchObject({ line: 3, column: 1, got: '"Map keys must be unique"' });
    expect(catchSpec(() => parseSpec("name: a\n---\nname: b\n")).issues[0]).toMatchObject({ expected: "one YAML document (one federation per spec)", line: 2 });
  });

  test("JSON syntax error reports line and column", () => {
    const issue = catchSpec(() => parseSpec('{\n  "name": "x",\n  "rounds": }\n', { format: "json" })).issues[0];
    expect(issue).toMatchObject({ path: "", expected: "valid JSON", line: 3, column: 13 });
    expect(catchSpec(() => parseSpec('{"name": "x",,}', { format: "json" })).issues[0]).toMatchObject({ line: 1, column: 14 });
    expect(catchSpec(() => parseSpec('{"name": "x"} trailing', { format: "json" })).issues[0]).toMatchObject({ line: 1, column: 15 });
  });

  test("schema issues carry the line/column of the offending field, in file order", async () => {
    const error = await loadSpecFile(`${SPECS}/invalid/bad-names.yaml`).then(
      () => undefined,
      (e: SpecError) => e,
    );
    expect(error?.issues.map(({ path, line, column }) => [path, line, column])).toEqual([
      ["silos[1].name", 9, 5],
      ["silos[1].compute.workspace", 14, 7],
      ["silos[2].name", 17, 5],
    ]);
    expect(error?.message.split("\n")[1]).toBe(`  ${SPECS}/invalid/bad-names.yaml:9:5 silos[1].name: expected [a-z0-9-]{1,32}, got "East_1"`);
  });

  test("the invalid example files fail for the reasons they document", async () => {
    const paths = async (file: string) => (await loadSpecFile(`${SPECS}/invalid/${file}`).catch((e: SpecError) => e)) as SpecError;
    expect((await paths("secrets.yaml")).issues.map((i) => [i.path, i.line])).toEqual([
      ["silos[0].inputs.storage", 10],
      ["training.parameters.hf_token", 14],
    ]);
    expect((await paths("unknown-input.yaml")).issues.map((i) => i.got)).toEqual(["${{inputs.global_model}} outside $[[ ]]", '${{inputs.data}}, undefined for silo "b"']);
  });

  test("a missing file is an 'unreadable' SpecError naming the file", async () => {
    const error = (await loadSpecFile(`${SPECS}/nope.yaml`).catch((e) => e)) as SpecError;
    expect(error).toBeInstanceOf(SpecError);
    expect(error.kind).toBe("unreadable");
    expect(error.source).toBe(`${SPECS}/nope.yaml`);
    expect(error.issues[0].got).toMatch(/^ENOENT: /);
  });

  test("a YAML alias bomb is refused as a syntax error, not expanded", () => {
    const bomb = [
      "a: &a [x, x, x, x, x, x, x, x, x, x]",
      "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]",
      "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]",
      "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]",
    ].join("\n");
    const error = catchSpec(() => parseSpec(bomb));
    expect(error.kind).toBe("syntax");
    expect(error.issues[0].got).toMatch(/alias/i);
  });

  test("an oversized spec is refused before parsing", () => {
    const text = `name: x\ndescription: "${"a".repeat(8 * 1024 * 1024)}"\n`;
    const error = catchSpec(() => parseSpec(text));
    expect(error.issues[0]).toMatchObject({ expected: "at most 8388608 bytes of spec", got: `${8 * 1024 * 1024 + 24} bytes` });
  });

  test("an empty document is reported as such", () => {
    expect(catchSpec(() => parseSpec("", { source: "empty.yaml" })).issues[0]).toMatchObject({ path: "", got: "null" });
  });
});

function catchSpec(fn: () => unknown): SpecError {
  try {
    fn();
  } catch (error) {
    if (error instanceof SpecError) return error;
    throw error;
  }
  throw new Error("expected a SpecError");
}

describe("secret detection rules", () => {
  const { secretKeyReason } = jest.requireActual<typeof import("../lib/spec/secrets")>("../lib/spec/secrets");
  test.each([
    ["password", '"password"'],
    ["dbPassword", '"password"'],
    ["HF_TOKEN", '"hf token"'],
    ["token", '"token"'],
    ["githubToken", '"github token"'],
    ["storage-account-key", '"account key"'],
    ["AZURE_CLIENT_SECRET", '"secret"'],
    ["connectionString", '"connection string"'],
    ["sas", '"sas"'],
  ])("%s is a secret name", (key, word) => {
    expect(secretKeyReason(key)).toBe(`the name contains ${word}`);
  });
  test.each(["max_tokens", "pad_token", "token_budget", "tokenizer", "keyframes", "password_file", "secret_name", "api_key_env", "monkey", "passes"])("%s is not", (key) => {
    expect(secretKeyReason(key)).toBeUndefined();
  });
});

describe("weight caps and owners", () => {
  test("silos[].maxExamples, aggregation.maxWeightShare and owners are kept as written", () => {
    const s = base();
    s.silos[1].maxExamples = 5000;
    s.aggregation = { strategy: "trimmed-mean", beta: 0.1, maxWeightShare: 0.5 };
    s.owners = ["bank-a", "Insurer-B"];
    const parsed = validateSpec(s);
    expect(parsed.silos[1].maxExamples).toBe(5000);
    expect(parsed.aggregation).toEqual({ strategy: "trimmed-mean", beta: 0.1, maxWeightShare: 0.5 });
    expect(parsed.owners).toEqual(["bank-a", "Insurer-B"]);
  });

  test.each([
    ["aggregation.maxWeightShare", "a number > 0", "0", (s: any) => (s.aggregation = { strategy: "fedavg", maxWeightShare: 0 })],
    ["aggregation.maxWeightShare", "a number <= 1", "1.5", (s: any) => (s.aggregation = { strategy: "fedavg", maxWeightShare: 1.5 })],
    ["silos[1].maxExamples", "a number >= 1", "0", (s: any) => (s.silos[1].maxExamples = 0)],
    ["silos[0].maxExamples", "an integer", "2.5", (s: any) => (s.silos[0].maxExamples = 2.5)],
    ["owners[1]", "[A-Za-z0-9][A-Za-z0-9-]{0,49}", '"bank a"', (s: any) => (s.owners = ["bank-a", "bank a"])],
  ])("%s: expected %s, got %s", (path, expected, got, patch) => {
    const s = base();
    patch(s);
    expect(triples(issuesOf(s))).toEqual([[path, expected, got]]);
  });
});
