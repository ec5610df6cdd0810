/** The JSON Schema of the federation spec, generated from the zod schema (the one source). */
import { z } from "zod";
import { federationSpecSchema } from "./schema";

export const FEDERATION_SCHEMA_ID = "https://flo.dev/schema/federation.schema.json";

/**
 * Draft-07 (what editors' YAML/JSON language servers support best), describing the spec as
 * written: fields with defaults are optional. Cross-field rules (unique silo names, quorum,
 * placeholders, secrets) are runtime-only; `flo` reports them with paths.
 */
export function federationJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(federationSpecSchema, { io: "input", target: "draft-7", unrepresentable: "throw" }) as Record<string, unknown>;
  const { $schema, ...rest } = schema;
  return { $schema, $id: FEDERATION_SCHEMA_ID, ...rest };
}

/** The exact file content of schema/federation.schema.json. */
export function federationJsonSchemaText(): string {
  return `${JSON.stringify(federationJsonSchema(), null, 2)}\n`;
}
