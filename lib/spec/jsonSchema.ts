/** The JSON Schema of the federation spec, generated from the zod schema (the one source). */
import { z } from "zod";
import { aggregationUnion, federationSpecSchema } from "./schema";

export const FEDERATION_SCHEMA_ID = "https://flo.dev/schema/federation.schema.json";

/**
 * Draft-07 (what editors' YAML/JSON language servers support best), describing the spec as
 * written: fields with defaults are optional. Cross-field rules (unique silo names, quorum,
 * placeholders, secrets) are runtime-only; `flo` reports them with paths.
 */
export function federationJsonSchema(): Record<string, unknown> {
  const settings = { io: "input", target: "draft-7", unrepresentable: "throw" } as const;
  const schema = z.toJSONSchema(federationSpecSchema, settings) as Record<string, unknown>;
  // The spec checks `aggregation` against the strategy registry at parse time; editors get the
  // registry's definitions as of generation (the built-in strategies).
  const properties = schema.properties as Record<string, Record<string, unknown>>;
  const { $schema: _draft, ...aggregation } = z.toJSONSchema(aggregationUnion(), settings) as Record<string, unknown>;
  properties.aggregation = { ...properties.aggregation, ...aggregation };
  const { $schema, ...rest } = schema;
  return { $schema, $id: FEDERATION_SCHEMA_ID, ...rest };
}

/** The exact file content of schema/federation.schema.json. */
export function federationJsonSchemaText(): string {
  return `${JSON.stringify(federationJsonSchema(), null, 2)}\n`;
}
