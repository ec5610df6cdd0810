import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { STRATEGIES, validateSpec } from "../lib/spec";
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
  expect(schema.properties.aggregation.oneOf.map((option: any) => option.properties.strategy.const)).toEqual([...STRATEGIES]);
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
    const parsed = validateSpec({ ...spec, policy: {}, initialModel: undefined, aggregation: { strategy, ...required } }).aggregation as Record<string, unknown>;
    for (const [key, property] of Object.entries(option.properties as Record<string, { default?: unknown }>)) {
      if ("default" in property) expect([strategy, key, parsed[key]]).toEqual([strategy, key, property.default]);
    }
  }
});

test("every example spec points editors at the schema", () => {
  const dirs = [join(ROOT, "examples", "specs"), join(ROOT, "examples", "specs", "invalid")];
  const yamlFiles = dirs.flatMap((dir) => readdirSync(dir).filter((f) => f.endsWith(".yaml") && f !== "syntax-error.yaml").map((f) => join(dir, f)));
  expect(yamlFiles.length).toBeGreaterThanOrEqual(6);
  for (const file of yamlFiles) {
    const ref = /^# yaml-language-server: \$schema=(\S+)$/m.exec(readFileSync(file, "utf8"))?.[1];
    expect([file, ref && resolve(dirname(file), ref)]).toEqual([file, SCHEMA_FILE]);
  }
});
