import * as path from "path";
import { loadFunctionsApp } from "../lib/runtime/functionsCore";
import { createInvoker, durableClientBindings, fromTypedData, FunctionNotFoundError } from "../lib/runtime/invoke";

const basicApp = path.join(__dirname, "apps", "durable-basic", "index.js");
const otherApp = path.join(__dirname, "apps", "durable-other", "index.js");

describe("loadFunctionsApp", () => {
  it("captures every registration with its metadata and the programming model", () => {
    const registry = loadFunctionsApp(basicApp);
    expect([...registry.functions.keys()].sort()).toEqual(["chain", "double", "echo", "fails", "hello", "startChain"]);
    expect(registry.programmingModel?.name).toBe("@azure/functions");
    const hello = registry.functions.get("hello")!.metadata;
    const trigger = Object.values(hello.bindings).find((b) => b.type === "httpTrigger")!;
    expect(trigger.route).toBe("hello/{name}");
    expect(Object.values(registry.functions.get("chain")!.metadata.bindings)[0].type).toBe("orchestrationTrigger");
  });

  it("isolates apps loaded one after another in the same process", () => {
    const first = loadFunctionsApp(basicApp);
    const second = loadFunctionsApp(otherApp);
    const again = loadFunctionsApp(basicApp);
    expect([...second.functions.keys()]).toEqual(["shout"]);
    expect(again.functions.size).toBe(first.functions.size);
    expect(again.programmingModel).not.toBe(first.programmingModel);
  });

  it("wraps an entry module that throws while loading, naming the file", () => {
    const broken = path.join(__dirname, "apps", "durable-broken", "index.js");
    expect(() => loadFunctionsApp(broken)).toThrow(`Loading Functions app ${broken} failed: missing setting FLO_SOMETHING`);
    // The failed load must not leave the loader stuck: the next app loads normally.
    expect(loadFunctionsApp(otherApp).functions.has("shout")).toBe(true);
  });

  it("names a missing entry file in the error", () => {
    expect(() => loadFunctionsApp("/nonexistent/app.js")).toThrow("Functions app entry not found: /nonexistent/app.js");
  });
});

describe("createInvoker", () => {
  const registry = loadFunctionsApp(basicApp);
  const invoker = createInvoker(registry);

  it("converts activity inputs and results like the worker (string data is JSON-parsed)", async () => {
    const result = await invoker.invoke("double", { string: "21" });
    expect(result.returnValue).toEqual({ int: 42 });
    const echoed = await invoker.invoke("echo", { string: JSON.stringify({ k: "v" }) });
    expect(fromTypedData(echoed.returnValue)).toEqual({ k: "v" });
  });

  it("rethrows the handler's error", async () => {
    await expect(invoker.invoke("fails", { string: '"x"' })).rejects.toThrow("boom x");
  });

  it("invokes HTTP handlers with route params and returns the RPC http response", async () => {
    const result = await invoker.invoke("hello", {
      http: { method: "GET", url: "http://localhost/api/hello/ann?q=1", headers: {}, query: { q: "1" }, params: { name: "ann" } },
    });
    const http = result.returnValue!.http as { statusCode: string; body: { bytes: Uint8Array } };
    expect(Number(http.statusCode)).toBe(200);
    expect(JSON.parse(Buffer.from(http.body.bytes).toString("utf8"))).toEqual({ hello: "ann", q: "1" });
  });

  it("lists the durable client binding names, which are random per process", () => {
    const names = durableClientBindings(registry.functions.get("startChain")!.metadata);
    expect(names).toHaveLength(1);
    expect(names[0]).toMatch(/^durableClient/);
    expect(durableClientBindings(registry.functions.get("hello")!.metadata)).toEqual([]);
  });

  it("rejects unknown functions and unknown binding names with specific errors", async () => {
    await expect(invoker.invoke("nope", { string: "1" })).rejects.toBeInstanceOf(FunctionNotFoundError);
    await expect(invoker.invoke("double", { string: "1" }, { wrong: { string: "1" } })).rejects.toThrow('Function "double" has no binding named "wrong"');
  });
});
