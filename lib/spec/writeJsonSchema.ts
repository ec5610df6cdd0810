/** `npm run schema`: writes schema/federation.schema.json from the zod schema (a test keeps it in sync). */
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { federationJsonSchemaText } from "./jsonSchema";

/** schema/federation.schema.json under the nearest folder holding package.json (works from lib/ and dist/lib/). */
export function defaultSchemaPath(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`writeJsonSchema: expected a package.json above ${__dirname}, found none`);
    dir = parent;
  }
  return join(dir, "schema", "federation.schema.json");
}

export function writeJsonSchema(path = defaultSchemaPath()): string {
  writeFileSync(path, federationJsonSchemaText());
  return path;
}

if (require.main === module) {
  const path = writeJsonSchema(process.argv[2]);
  console.log(`wrote ${path}`);
}
