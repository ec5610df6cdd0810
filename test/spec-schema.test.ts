import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parse as parseYaml } from "yaml";
import { strategyNames } from "../lib/aggregation/registry";
import { validateSpec } from "../lib/spec";
import { federationJsonSchema, federationJsonSchemaText } from "../lib/spec/jsonSchema";
import { defaultSchemaPath, writeJsonSchema } from "../lib/spec/writeJsonSchema";

const ROOT = resolve(__dirname, "..");
const SCHEMA_FILE = join(ROOT, "schema", "federation.schema.json");

test("schema/federation.schema.json is in sync with the zod schema (regenerate: npm run build && npm run schema)", () => {
  expect(readFileSync(SCHEMA_FILE, "utf8")).toBe(federationJsonSchemaText());
});

test("writeJsonSchema writes the same text, by default to the repository's schema/ folder", () => {
  expect(defaultSchemaPath()).toBe(SCHEMA_FILE);
  const dir = mkdtempSync(join(tmpdir(), "flo-schema-"));
  try {
    const path = writeJsonSchema(join(dir, "out.json"));
    expect(readFileSync(path, "utf8")).toBe(federationJsonSchemaText());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the JSON Schema is draft-07 with the contract's required fields and every strategy", () => {
  const schema = federationJsonSchema() as any;
  expect(schema.$schema).toBe("http://json-schema.org/draft-07/schema#");
  expect(schema.required).toEqual(["name", "rounds", "silos", "training"]);
  expect(schema.additionalProperties).toBe(false);
  expect(schema.properties.aggregation.oneOf.map((option: any) => option.properties.strategy.const)).toEqual(strategyNames());
  expect(schema.properties.silos.items.properties.name.pattern).toBe("^[a-z0-9-]{1,32}$");
});

test("defaults in the JSON Schema are the defaults the parser applies", () => {
  const schema = federationJsonSchema() as any;
  const spec = validateSpec({
    name: "d",
    rounds: 1,
    silos: Array.from({ length: 7 }, (_, i) => ({ name: `s${i}`, compute: { type: "local" } })),
    training: { command: "t --out ${{outputs.model_update}}" },
  });
  const policyDefaults = Object.fromEntries(
    Object.entries(schema.properties.policy.properties as Record<string, { default?: unknown }>)
      .filter(([, property]) => "default" in property)
      .map(([key, property]) => [key, property.default]),
  );
  expect(policyDefaults).toEqual({ roundTimeout: "PT1H", jobRetries: 1, sampleFraction: 1 });
  for (const [key, value] of Object.entries(policyDefaults)) expect(spec.policy[key as keyof typeof spec.policy]).toBe(value);
  for (const option of schema.properties.aggregation.oneOf) {
    const strategy = option.properties.strategy.const;
    const required = Object.fromEntries((option.required as string[]).filter((k) => k !== "strategy").map((k) => [k, 1]));
    const parsed = validateSpec({ ...spec, policy: {}, initialModel: "models/start.safetensors", aggregation: { strategy, ...required } }).aggregation as Record<string, unknown>;
    for (const [key, property] of Object.entries(option.properties as Record<string, { default?: unknown }>)) {
      if ("default" in property) expect([strategy, key, parsed[key]]).toEqual([strategy, key, property.default]);
    }
  }
});

test("every example spec points editors at the schema", () => {
  const dirs = [join(ROOT, "examples", "specs"), join(ROOT, "examples", "specs", "invalid")];
  const yamlFiles = dirs.flatMap((dir) =>
    readdirSync(dir)
      .filter((f) => f.endsWith(".yaml") && f !== "syntax-error.yaml")
      .map((f) => join(dir, f)),
  );
  expect(yamlFiles.length).toBeGreaterThanOrEqual(6);
  for (const file of yamlFiles) {
    const ref = /^# yaml-language-server: \$schema=(\S+)$/m.exec(readFileSync(file, "utf8"))?.[1];
    expect([file, ref && resolve(dirname(file), ref)]).toEqual([file, SCHEMA_FILE]);
  }
});

/**
 * A minimal draft-07 validator for the keywords the generated schema uses, so the test can check
 * that editors (which validate with the JSON Schema, not with flo) accept what flo accepts.
 * Returns the paths of failing values.
 */
function schemaErrors(schema: any, value: unknown, path = ""): string[] {
  const here = (problem: string) => [`${path || "(root)"}: ${problem}`];
  const typeOf = (v: unknown) => (v === null ? "null" : Array.isArray(v) ? "array" : Number.isInteger(v) ? "integer" : typeof v);
  if (schema.anyOf) return schema.anyOf.some((s: any) => schemaErrors(s, value, path).length === 0) ? [] : here("no anyOf branch matches");
  if (schema.oneOf) {
    const results = schema.oneOf.map((s: any) => schemaErrors(s, value, path));
    const matching = results.filter((r: string[]) => r.length === 0).length;
    if (matching === 1) return [];
    if (matching > 1) return here("several oneOf branches match");
    // Report the branch whose discriminating const matched, as editors do.
    return results.find((r: string[]) => !r.some((e) => e.includes("const"))) ?? here("no oneOf branch matches");
  }
  if (schema.type) {
    const types = ([] as string[]).concat(schema.type);
    const actual = typeOf(value);
    if (!types.includes(actual) && !(actual === "integer" && types.includes("number"))) return here(`type ${actual}, expected ${types.join(",")}`);
  }
  if ("const" in schema && value !== schema.const) return here("const");
  if (typeof value === "string") {
    if (schema.pattern && !new RegExp(schema.pattern).test(value)) return here("pattern");
    if (schema.minLength !== undefined && value.length < schema.minLength) return here("minLength");
    if (schema.maxLength !== undefined && value.length > schema.maxLength) return here("maxLength");
  }
  if (typeof value === "number") {
    if (schema.minimum !== undefined && value < schema.minimum) return here("minimum");
    if (schema.maximum !== undefined && value > schema.maximum) return here("maximum");
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) return here("exclusiveMinimum");
    if (schema.exclusiveMaximum !== undefined && value >= schema.exclusiveMaximum) return here("exclusiveMaximum");
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) return here("minItems");
    if (schema.maxItems !== undefined && value.length > schema.maxItems) return here("maxItems");
    if (schema.items) return value.flatMap((item, i) => schemaErrors(schema.items, item, `${path}[${i}]`));
  }
  if (typeOf(value) === "object") {
    const object = value as Record<string, unknown>;
    const errors: string[] = [];
    for (const key of schema.required ?? []) if (!(key in object)) errors.push(...here(`missing ${key}`));
    for (const [key, child] of Object.entries(object)) {
      const childPath = path ? `${path}.${key}` : key;
      if (schema.propertyNames) errors.push(...schemaErrors(schema.propertyNames, key, `${childPath}(name)`));
      if (schema.properties?.[key]) errors.push(...schemaErrors(schema.properties[key], child, childPath));
      else if (schema.additionalProperties === false) errors.push(`${childPath}: additional property`);
      else if (typeof schema.additionalProperties === "object") errors.push(...schemaErrors(schema.additionalProperties, child, childPath));
    }
    return errors;
  }
  return [];
}

describe("the JSON Schema agrees with flo on field-level rules (what editors will show)", () => {
  const schema = federationJsonSchema();
  const examples = join(ROOT, "examples", "specs");

  test("every valid example passes the JSON Schema", () => {
    const files = readdirSync(examples).filter((f) => /\.(ya?ml|json)$/.test(f));
    expect(files.length).toBeGreaterThanOrEqual(4);
    for (const file of files) {
      const text = readFileSync(join(examples, file), "utf8");
      const value = file.endsWith(".json") ? JSON.parse(text) : parseYaml(text);
      expect([file, schemaErrors(schema, value)]).toEqual([file, []]);
      // ...and so does flo.
      expect(() => validateSpec(value)).not.toThrow();
    }
  });

  test.each([
    ["silo name", (s: any) => (s.silos[1].name = "East_1"), "silos[1].name: pattern"],
    ["unknown strategy", (s: any) => (s.aggregation = { strategy: "fedprox" }), "aggregation: no oneOf branch matches"],
    ["strategy option of another strategy", (s: any) => (s.aggregation = { strategy: "fedavg", beta: 0.1 }), "aggregation.beta: additional property"],
    ["sampleFraction 0", (s: any) => (s.policy = { sampleFraction: 0 }), "policy.sampleFraction: exclusiveMinimum"],
    ["roundTimeout not ISO-8601", (s: any) => (s.policy = { roundTimeout: "30m" }), "policy.roundTimeout: pattern"],
    ["misspelt field", (s: any) => (s.policy = { minsilos: 2 }), "policy.minsilos: additional property"],
    [
      "subscription id",
      (s: any) => (s.silos[0].compute = { type: "azureml", subscriptionId: "x", resourceGroup: "rg", workspace: "mlw-a", computeName: "cpu" }),
      "silos[0].compute.subscriptionId: pattern",
    ],
    ["input name", (s: any) => (s.training.parameters = { "learning-rate": 0.1 }), "training.parameters.learning-rate(name): pattern"],
  ])("rejects %s at the same path flo reports", (_label, breakIt, expected) => {
    const spec: any = parseYaml(readFileSync(join(examples, "fraud-local.yaml"), "utf8"));
    breakIt(spec);
    expect(schemaErrors(schema, spec)).toEqual([expected]);
    expect(() => validateSpec(spec)).toThrow();
  });
});
