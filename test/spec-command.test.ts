import { CommandTemplateError, commandInputNames, commandOutputNames, federationInstanceId, parseCommandTemplate, renderCommand, siloJobInputs, validateSpec } from "../lib/spec";

const CONTRACT = "node train.js $[[--global ${{inputs.global_model}}]] --out ${{outputs.model_update}} --data ${{inputs.data}} --epochs ${{inputs.epochs}} --round ${{inputs.round}}";
const outputs = { model_update: "/tmp/out/update" };
const baseInputs = { data: "/data/east", epochs: "2", round: "1" };

describe("renderCommand", () => {
  test("round 1 without a global model: the optional part is dropped", () => {
    expect(renderCommand(CONTRACT, { inputs: baseInputs, outputs })).toEqual(["node", "train.js", "--out", "/tmp/out/update", "--data", "/data/east", "--epochs", "2", "--round", "1"]);
  });

  test("with a global model the optional part is kept, placeholders substituted", () => {
    expect(renderCommand(CONTRACT, { inputs: { ...baseInputs, round: "2", global_model: "/tmp/in/global" }, outputs })).toEqual([
      "node",
      "train.js",
      "--global",
      "/tmp/in/global",
      "--out",
      "/tmp/out/update",
      "--data",
      "/data/east",
      "--epochs",
      "2",
      "--round",
      "2",
    ]);
  });

  test("an input explicitly undefined counts as absent", () => {
    expect(renderCommand(CONTRACT, { inputs: { ...baseInputs, global_model: undefined }, outputs })).not.toContain("--global");
  });

  test("values with spaces stay one argument, quoted in the template or not", () => {
    const inputs = { data: "/data/north region/2026", name: 'it\'s "quoted"' };
    expect(renderCommand("run ${{inputs.data}} '${{inputs.data}}' \"${{inputs.data}}\" --out=${{outputs.model_update}}", { inputs, outputs })).toEqual([
      "run",
      "/data/north region/2026",
      "/data/north region/2026",
      "/data/north region/2026",
      "--out=/tmp/out/update",
    ]);
    // Quotes inside a value are data, never syntax.
    expect(renderCommand("echo ${{inputs.name}}", { inputs, outputs })).toEqual(["echo", 'it\'s "quoted"']);
  });

  test("template quoting: single, double with escapes, backslash, empty argument, adjacent pieces", () => {
    expect(renderCommand(`python -c 'print("a b")' "x \\"y\\" \\\\" a\\ b "" pre-\${{inputs.v}}-post`, { inputs: { v: "V" }, outputs })).toEqual([
      "python",
      "-c",
      'print("a b")',
      'x "y" \\',
      "a b",
      "",
      "pre-V-post",
    ]);
  });

  test("an optional part with several inputs is kept only when all are present", () => {
    const template = "t $[[--resume ${{inputs.global_model}} --from ${{inputs.checkpoint_round}}]] --out ${{outputs.model_update}}";
    expect(renderCommand(template, { inputs: { global_model: "g" }, outputs })).toEqual(["t", "--out", "/tmp/out/update"]);
    expect(renderCommand(template, { inputs: { global_model: "g", checkpoint_round: "3" }, outputs })).toEqual(["t", "--resume", "g", "--from", "3", "--out", "/tmp/out/update"]);
  });

  test("placeholders tolerate inner spaces like Azure ML", () => {
    expect(renderCommand("t ${{ inputs.data }} ${{outputs.model_update }}", { inputs: baseInputs, outputs })).toEqual(["t", "/data/east", "/tmp/out/update"]);
  });

  test("a required input that is absent is a CommandTemplateError naming it", () => {
    const render = () => renderCommand(CONTRACT, { inputs: { data: "d", round: "1" }, outputs });
    expect(render).toThrow(CommandTemplateError);
    expect(render).toThrow('expected a value for input "epochs", got none (${{inputs.epochs}} is outside an optional part)');
  });

  test("a missing output is an error naming it", () => {
    expect(() => renderCommand(CONTRACT, { inputs: baseInputs, outputs: {} })).toThrow('expected a location for output "model_update", got none');
  });

  test.each([
    ["t ${{inputs.}}", '"${{inputs.}}"', 2],
    ["t ${{params.x}}", '"${{params.x}}"', 2],
    ["t ${{inputs.a-b}}", '"${{inputs.a-b}}"', 2],
  ])("malformed placeholder %s", (template, shown, index) => {
    let error: CommandTemplateError | undefined;
    try {
      parseCommandTemplate(template);
    } catch (e) {
      error = e as CommandTemplateError;
    }
    expect(error).toBeInstanceOf(CommandTemplateError);
    expect(error?.expected).toBe("${{inputs.<name>}} or ${{outputs.<name>}}");
    expect(error?.got).toBe(shown);
    expect(error?.details.index).toBe(index);
  });

  test("optional-part syntax errors", () => {
    expect(() => parseCommandTemplate("t $[[a $[[ ${{inputs.x}} ]] ]]")).toThrow('at character 8: expected "]]" closing the "$[[" at character 3 first, got a nested "$[["');
    expect(() => parseCommandTemplate("t $[[--verbose]]")).toThrow("expected an ${{inputs.<name>}} inside the optional part $[[ ... ]], got none");
    expect(() => parseCommandTemplate("t $[[--g ${{inputs.g}}")).toThrow('expected "]]" closing the optional part "$[[", got the end of the command');
  });

  test("unterminated quote", () => {
    expect(() => renderCommand("t 'abc ${{outputs.model_update}}", { inputs: {}, outputs })).toThrow("expected a closing ', got an unterminated single quote");
  });
});

describe("commandInputNames / parseCommandTemplate", () => {
  test("distinct names in order of first appearance, optional flag per name", () => {
    expect(commandInputNames(CONTRACT)).toEqual(["global_model", "data", "epochs", "round"]);
    expect(commandOutputNames(CONTRACT)).toEqual(["model_update"]);
    const template = parseCommandTemplate("t $[[--a ${{inputs.a}}]] ${{inputs.b}} ${{inputs.a}} $[[${{inputs.c}}]] ${{inputs.b}}");
    expect(template.inputs).toEqual([
      { name: "a", optional: false },
      { name: "b", optional: false },
      { name: "c", optional: true },
    ]);
  });

  test("a command without placeholders has no inputs", () => {
    expect(commandInputNames("echo hello")).toEqual([]);
  });
});

describe("federationInstanceId", () => {
  test("the spec name, or <name>-<runSuffix>", () => {
    expect(federationInstanceId({ name: "fraud-demo" })).toBe("fraud-demo");
    expect(federationInstanceId({ name: "fraud-demo" }, { runSuffix: "20261128t0200z" })).toBe("fraud-demo-20261128t0200z");
  });

  test("run suffix rule", () => {
    expect(() => federationInstanceId({ name: "x" }, { runSuffix: "Run 1" })).toThrow('runSuffix must match ^[a-z0-9][a-z0-9-]{0,22}$, got "Run 1"');
    expect(() => federationInstanceId({ name: "x" }, { runSuffix: "a".repeat(24) })).toThrow(RangeError);
  });
});

describe("siloJobInputs", () => {
  const spec = validateSpec({
    name: "fraud-demo",
    rounds: 2,
    silos: [{ name: "east", compute: { type: "local" }, inputs: { data: "data/east", shuffle: true } }],
    training: { command: CONTRACT, parameters: { epochs: 2, lr: 0.01 } },
  });

  test("parameters + silo inputs + built-ins, as strings; renders the contract command", () => {
    const inputs = siloJobInputs(spec, "east", { federationId: "fraud-demo", round: 2, globalModel: "/g" });
    expect(inputs).toEqual({ epochs: "2", lr: "0.01", data: "data/east", shuffle: "true", round: "2", silo: "east", federation_id: "fraud-demo", global_model: "/g" });
    expect(renderCommand(spec.training.command, { inputs, outputs })).toContain("--global");
    const round1 = siloJobInputs(spec, "east", { federationId: "fraud-demo", round: 1 });
    expect(round1).not.toHaveProperty("global_model");
    expect(renderCommand(spec.training.command, { inputs: round1, outputs })).not.toContain("--global");
  });

  test("unknown silo", () => {
    expect(() => siloJobInputs(spec, "west", { federationId: "f", round: 1 })).toThrow('siloJobInputs: expected a silo of federation "fraud-demo", got "west"');
  });
});

describe("checkNcrontab (also for schedules coming from app settings)", () => {
  const { checkNcrontab } = jest.requireActual<typeof import("../lib/spec")>("../lib/spec");
  test.each(["0 0 2 * * 0", "0 */5 * * * *", "0 30 9 * * MON-FRI", "0 0 0 1 JAN,JUL *", "0 0 4 * * wed", "0 0 4 * AUG-DEC SUN"])("accepts %s", (expression) => {
    expect(checkNcrontab(expression)).toBeUndefined();
  });
  test.each([
    ["0 2 * * 0", "six fields {second} {minute} {hour} {day} {month} {day-of-week}, found 5"],
    ["0 0 2 * * 0 2026", "six fields {second} {minute} {hour} {day} {month} {day-of-week}, found 7"],
    ["0 0 2 L * *", "only numbers, names, * , - / (NCRONTAB has no ? L W # or @macros)"],
    ["0 0 2 15W * *", "only numbers, names, * , - / (NCRONTAB has no ? L W # or @macros)"],
    ["61 0 2 * * *", "a valid six-field NCRONTAB (Constraint error, got value 61 expected range 0-59)"],
  ])("rejects %s", (expression, expected) => {
    expect(checkNcrontab(expression)).toBe(expected);
  });
});
