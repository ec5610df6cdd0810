// App settings reach the code through settings modules: only they (and the process's entry points)
// read process.env, so every other module can be given its settings and tested without the environment.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, sep } from "node:path";
import * as ts from "typescript";

const ROOT = join(__dirname, "..");
const SCANNED = ["lib", "functions", "orchestrations"];

/** Who may touch process.env, and why. A settings module is a file named settings.ts or *Settings.ts. */
const ENV_READERS: ReadonlyArray<{ matches: (path: string) => boolean; reason: string }> = [
  { matches: (p) => /(^|\/)settings\.ts$|Settings\.ts$/.test(p), reason: "settings modules turn app settings into typed values" },
  { matches: (p) => p.startsWith("lib/cli/"), reason: "command-line entry points pass process.env into settings at startup" },
  { matches: (p) => p === "lib/runtime/host.ts", reason: "the embedded host exposes app settings to the in-process app as environment variables, as the Functions host does for its worker" },
];

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return tsFiles(path);
    return name.endsWith(".ts") && !name.endsWith(".d.ts") ? [path] : [];
  });
}

/** 1-based lines where `process.env` is used (comments and strings do not count). */
function processEnvLines(source: string): number[] {
  const file = ts.createSourceFile("x.ts", source, ts.ScriptTarget.ES2022, true);
  const lines: number[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isPropertyAccessExpression(node) && node.name.text === "env" && ts.isIdentifier(node.expression) && node.expression.text === "process") {
      lines.push(file.getLineAndCharacterOfPosition(node.getStart()).line + 1);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return lines;
}

test("process.env is found in code, not in comments or strings", () => {
  const source = ["// process.env.A", 'const s = "process.env.B";', "const a = process.env.C;", "", "f(process.env);"].join("\n");
  expect(processEnvLines(source)).toEqual([3, 5]);
});

test("only settings modules and entry points read process.env", () => {
  const offenders: string[] = [];
  for (const folder of SCANNED) {
    for (const file of tsFiles(join(ROOT, folder))) {
      const path = relative(ROOT, file).split(sep).join("/");
      if (ENV_READERS.some((r) => r.matches(path))) continue;
      const source = readFileSync(file, "utf8");
      if (!source.includes("process")) continue;
      for (const line of processEnvLines(source)) offenders.push(`${path}:${line}`);
    }
  }
  if (offenders.length > 0) throw new Error(`process.env read outside a settings module (take the settings as a parameter):\n  ${offenders.join("\n  ")}`);
});
