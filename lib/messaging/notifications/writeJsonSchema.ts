/** Writes schema/notification.schema.json from the zod schema (test/notifications.test.ts keeps it in sync). */
import { existsSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { notificationJsonSchemaText } from "./schema";

export function defaultNotificationSchemaPath(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, "package.json"))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`writeJsonSchema: expected a package.json above ${__dirname}, found none`);
    dir = parent;
  }
  return join(dir, "schema", "notification.schema.json");
}

if (require.main === module) {
  const path = process.argv[2] ?? defaultNotificationSchemaPath();
  writeFileSync(path, notificationJsonSchemaText());
  console.log(`wrote ${path}`);
}
