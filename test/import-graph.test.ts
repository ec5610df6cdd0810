// The layering of lib/, enforced on its real import graph: which folder may import which, and no
// cycles between lib/'s top-level folders. To add a rule, add a row to LAYERING_RULES.
import { join } from "node:path";
import { describeEdge, folderCycles, forbiddenEdges, importSpecifiers, readImportGraph, topFolder, type ImportEdge, type ImportRule } from "./helpers/importGraph";

const LIB = join(__dirname, "..", "lib");

const LAYERING_RULES: readonly ImportRule[] = [
  {
    from: ["federation", "aggregation", "compute", "models", "secagg"],
    forbidden: ["runtime"],
    reason: "domain code must not load the embedded emulator (production on Azure would load it too)",
  },
  {
    from: ["runtime"],
    forbidden: ["federation", "aggregation", "compute", "models", "spec", "secagg", "report", "cli"],
    reason: "the embedded runtime is a generic Functions + Durable host: it knows nothing of federated learning",
  },
  {
    from: ["messaging"],
    forbidden: ["runtime", "federation"],
    reason: "the bus is shared by the emulator's triggers and the federation, so it depends on neither",
  },
  {
    from: ["aggregation", "compute", "models", "secagg", "messaging", "storage", "spec"],
    forbidden: ["federation", "cli", "report"],
    reason: "the federation composes these building blocks (and the CLI and report are their callers), never the other way round",
  },
];

function edge(fromFile: string, toFile: string): ImportEdge {
  return { fromFile, toFile, fromFolder: topFolder(fromFile), toFolder: topFolder(toFile) };
}

describe("import graph helpers", () => {
  test("every kind of specifier counts; comments and strings do not", () => {
    const source = [
      '// import "./commented"',
      'import a from "./static";',
      'import type { B } from "./typeOnly";',
      'export * from "./reexport";',
      'const c = require("./required");',
      'async function d() { return import("./dynamic"); }',
      'type E = typeof import("./typeofImport");',
      "const f = \"import('./inString')\";",
      'import * as path from "node:path";',
    ].join("\n");
    expect(importSpecifiers(source)).toEqual(["./static", "./typeOnly", "./reexport", "./required", "./dynamic", "./typeofImport", "node:path"]);
  });

  test("a forbidden edge is reported with its files; others are not", () => {
    const edges = [edge("federation/services.ts", "runtime/host.ts"), edge("federation/services.ts", "messaging/transport.ts"), edge("runtime/host.ts", "federation/api.ts")];
    expect(forbiddenEdges(edges, LAYERING_RULES[0]).map(describeEdge)).toEqual(["federation/services.ts -> runtime/host.ts"]);
  });

  test("folder cycles: a 3-folder loop is one cycle with its closing edges; a chain is none", () => {
    const loop = [edge("a/x.ts", "b/y.ts"), edge("b/y.ts", "c/z.ts"), edge("c/z.ts", "a/w.ts"), edge("c/z.ts", "d/v.ts"), edge("a/x.ts", "a/w.ts")];
    expect(folderCycles(loop)).toEqual([{ folders: ["a", "b", "c"], edges: loop.slice(0, 3) }]);
    expect(folderCycles([edge("a/x.ts", "b/y.ts"), edge("b/y.ts", "c/z.ts")])).toEqual([]);
  });
});

describe("lib/ layering", () => {
  const edges = readImportGraph(LIB);

  test("the graph is read (sanity: known edges are present)", () => {
    expect(edges.map(describeEdge)).toEqual(
      expect.arrayContaining(["federation/services.ts -> messaging/transport.ts", "runtime/triggers/serviceBus/serviceBusTriggers.ts -> messaging/connection.ts"]),
    );
  });

  test.each(LAYERING_RULES.map((rule) => [`${rule.from.join(", ")} must not import ${rule.forbidden.join(", ")}`, rule] as const))("%s", (_name, rule) => {
    const violations = forbiddenEdges(edges, rule).map(describeEdge);
    if (violations.length > 0) throw new Error(`${rule.reason}; forbidden imports:\n  ${violations.join("\n  ")}`);
  });

  test("no import cycle between lib/ top-level folders", () => {
    const cycles = folderCycles(edges).map((c) => `cycle among ${c.folders.join(", ")}:\n    ${c.edges.map(describeEdge).join("\n    ")}`);
    if (cycles.length > 0) throw new Error(`folder-level import cycles:\n  ${cycles.join("\n  ")}`);
  });
});
