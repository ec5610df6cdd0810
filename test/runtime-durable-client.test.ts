import * as http from "http";
import { AddressInfo } from "net";
import * as path from "path";
import { loadFunctionsApp } from "../lib/runtime/functionsCore";
import { createInvoker, durableClientBindings, Invoker } from "../lib/runtime/invoke";
import { DurableEngine } from "../lib/runtime/durable/engine";
import { clientBindingData, createManagementHandler } from "../lib/runtime/durable/managementApi";

const appPath = path.join(__dirname, "apps", "durable-client", "index.js");

let engine: DurableEngine;
let invoker: Invoker;
let server: http.Server;
let origin: string;
const seenRequests: Array<{ method: string; url: string; continuation?: string }> = [];

beforeAll(async () => {
  const registry = loadFunctionsApp(appPath);
  invoker = createInvoker(registry);
  engine = await DurableEngine.start({ invoker, taskHubName: "TestHub" });
  const handler = createManagementHandler(engine, { pageSize: 2 });
  server = http.createServer((req, res) => {
    seenRequests.push({ method: req.method!, url: req.url!, continuation: req.headers["x-ms-continuation-token"] as string | undefined });
    void handler(req, res).then((handled) => {
      if (!handled) {
        res.statusCode = 404;
        res.end();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await engine.stop();
  await new Promise((resolve) => server.close(resolve));
});

/** Invoke the app's HTTP function worker-style, with the durable client binding payload. */
async function op(body: Record<string, unknown>): Promise<{ status: number; json: any; headers: Record<string, string> }> {
  const fn = invoker.get("clientOps")!;
  const [clientBinding] = durableClientBindings(fn.metadata);
  const result = await invoker.invoke(
    "clientOps",
    {
      http: {
        method: "POST",
        url: `${origin}/api/ops`,
        headers: { "content-type": "application/json" },
        query: {},
        params: {},
        body: { string: JSON.stringify(body) },
      },
    },
    { [clientBinding]: { string: JSON.stringify(clientBindingData({ origin, taskHubName: engine.taskHubName })) } },
  );
  const response = result.returnValue!.http as { statusCode: string | number; headers: Record<string, string>; body?: { bytes?: Uint8Array } };
  const text = response.body?.bytes ? Buffer.from(response.body.bytes).toString("utf8") : "";
  return { status: Number(response.statusCode), json: text ? JSON.parse(text) : undefined, headers: response.headers };
}

describe("management API driven by the real df.getClient", () => {
  it("startNew + createCheckStatusResponse URLs resolve against the local server", async () => {
    const started = await op({ op: "start", name: "approval", instanceId: "c-1", input: { amount: 5 } });
    expect(started.status).toBe(202);
    expect(started.json.id).toBe("c-1");
    expect(started.json.statusQueryGetUri).toBe(`${origin}/runtime/webhooks/durabletask/instances/c-1?taskHub=TestHub&connection=Storage`);
    expect(started.headers.location ?? started.headers.Location).toBe(started.json.statusQueryGetUri);
    expect(seenRequests.some((r) => r.method === "POST" && r.url === "/durabletask/orchestrators/approval/c-1")).toBe(true);
    await engine.waitForStatus("c-1", (s) => s.runtimeStatus === "Running");
    const polled = await fetch(started.json.statusQueryGetUri);
    expect(polled.status).toBe(202);
    expect(await polled.json()).toMatchObject({ instanceId: "c-1", runtimeStatus: "Running", customStatus: "waiting for approval", input: { amount: 5 }, output: null });
  });

  it("raiseEvent completes the instance; getStatus returns the output (200 when finished)", async () => {
    expect((await op({ op: "raise", instanceId: "c-1", eventName: "decision", data: { approved: true, by: "ann" } })).json).toEqual({ raised: true });
    await engine.waitForStatus("c-1", (s) => s.runtimeStatus === "Completed");
    const status = await op({ op: "status", instanceId: "c-1" });
    expect(status.json).toMatchObject({ runtimeStatus: "Completed", output: { approved: true, greeting: "hello ann", input: { amount: 5 } } });
    const direct = await fetch(`${origin}/durabletask/instances/c-1`);
    expect(direct.status).toBe(200);
  });

  it("showHistory returns the extension's reshaped historyEvents", async () => {
    const response = await fetch(`${origin}/durabletask/instances/c-1?showHistory=true&showHistoryOutput=true`);
    const body = (await response.json()) as { historyEvents: Array<Record<string, unknown>> };
    expect(body.historyEvents.map((e) => e.EventType)).toEqual(["ExecutionStarted", "EventRaised", "TaskCompleted", "ExecutionCompleted"]);
    expect(body.historyEvents[0]).toMatchObject({ FunctionName: "approval", Input: '{"amount":5}' });
    expect(body.historyEvents[2]).toMatchObject({ FunctionName: "greet", Result: "hello ann" });
    expect(typeof body.historyEvents[2].ScheduledTime).toBe("string");
    expect(body.historyEvents[3]).toMatchObject({ OrchestrationStatus: "Completed", Result: { approved: true } });
    expect(body.historyEvents.every((e) => !("EventId" in e) && !("IsPlayed" in e))).toBe(true);
    const withoutOutput = (await (await fetch(`${origin}/durabletask/instances/c-1?showHistory=true`)).json()) as typeof body;
    expect(withoutOutput.historyEvents[2]).not.toHaveProperty("Result");
  });

  it("raiseEvent on unknown instances rejects (404); on finished ones it resolves (410)", async () => {
    const unknown = await op({ op: "raise", instanceId: "nope", eventName: "x", data: 1 }).catch((err: Error) => err);
    // The app's error comes from another realm (natively loaded), so check its message only.
    expect((unknown as Error).message).toContain("No instance with ID 'nope' found");
    expect((await op({ op: "raise", instanceId: "c-1", eventName: "decision", data: {} })).json).toEqual({ raised: true });
    const gone = await fetch(`${origin}/durabletask/instances/c-1/raiseEvent/decision`, { method: "POST", headers: { "content-type": "application/json" }, body: "{}" });
    expect(gone.status).toBe(410);
  });

  it("getStatus of an unknown id fails with the client's 404 message", async () => {
    const result = await op({ op: "status", instanceId: "missing-1" });
    expect(result.status).toBe(404);
    expect(result.json.error).toContain("Durable Functions extension replied with HTTP 404 response");
  });

  it("getStatusBy follows x-ms-continuation-token across pages", async () => {
    for (const id of ["c-2", "c-3", "c-4"]) await op({ op: "start", name: "approval", instanceId: id, input: id });
    for (const id of ["c-2", "c-3", "c-4"]) await engine.waitForStatus(id, (s) => s.runtimeStatus === "Running");
    seenRequests.length = 0;
    const running = await op({ op: "statusBy", runtimeStatus: ["Running"] });
    expect(running.json).toEqual(["c-2", "c-3", "c-4"]);
    expect(seenRequests.filter((r) => r.url.startsWith("/durabletask/instances/")).map((r) => r.continuation)).toEqual([undefined, "2"]);
    expect((await op({ op: "statusAll" })).json).toBe(4);
  });

  it("terminate sets Terminated with the reason as output", async () => {
    await op({ op: "terminate", instanceId: "c-2", reason: "bye" });
    await engine.waitForStatus("c-2", (s) => s.runtimeStatus === "Terminated");
    expect((await op({ op: "status", instanceId: "c-2" })).json).toMatchObject({ runtimeStatus: "Terminated", output: "bye" });
  });

  it("purges one instance and by status filter", async () => {
    expect((await op({ op: "purge", instanceId: "c-1" })).json).toEqual({ instancesDeleted: 1 });
    expect((await op({ op: "purge", instanceId: "c-1" })).json).toEqual({ instancesDeleted: 0 });
    expect((await op({ op: "purgeBy", runtimeStatus: ["Terminated"] })).json).toEqual({ instancesDeleted: 1 });
    expect(engine.list().map((s) => s.instanceId)).toEqual(["c-3", "c-4"]);
  });

  it("answers bad requests with specific errors", async () => {
    const unknownFn = await fetch(`${origin}/durabletask/orchestrators/nope`, { method: "POST", body: "" });
    expect(unknownFn.status).toBe(400);
    expect(((await unknownFn.json()) as { Message: string }).Message).toContain("The function 'nope' doesn't exist");
    const running = await fetch(`${origin}/durabletask/orchestrators/approval/c-3`, { method: "POST", body: "" });
    expect(running.status).toBe(500);
    const badJson = await fetch(`${origin}/durabletask/orchestrators/approval`, { method: "POST", body: "{oops" });
    expect(badJson.status).toBe(400);
    // Like the extension (Enum.TryParse per value): an unknown runtimeStatus is skipped, not an error.
    const unknownStatus = await fetch(`${origin}/durabletask/instances/?runtimeStatus=Sleeping`);
    expect(unknownStatus.status).toBe(200);
    expect(((await unknownStatus.json()) as Array<{ instanceId: string }>).map((s) => s.instanceId)).toEqual(["c-3", "c-4"]);
    const mixed = (await (await fetch(`${origin}/durabletask/instances/?runtimeStatus=Sleeping,Completed`)).json()) as unknown[];
    expect(mixed).toEqual([]);
  });
});

describe("management API matches the extension's HttpApiHandler", () => {
  const post = (path: string, body?: string, headers: Record<string, string> = { "content-type": "application/json" }) => fetch(`${origin}/durabletask/${path}`, { method: "POST", headers, body });
  const until = (id: string) => engine.waitForStatus(id, (s) => ["Completed", "Failed", "Terminated"].includes(s.runtimeStatus));

  it("DELETE instances/ without createdTimeFrom is a 400 with the extension's message and purges nothing", async () => {
    const before = engine.list().length;
    expect(before).toBeGreaterThan(0);
    const res = await fetch(`${origin}/durabletask/instances/?runtimeStatus=Running`, { method: "DELETE" });
    expect(res.status).toBe(400);
    expect(await res.json()).toBe("Please provide value for 'createdTimeFrom' parameter.");
    expect(engine.list()).toHaveLength(before);
  });

  it("listing shows inputs by default; showInput=false hides them; top pages with a continuation token", async () => {
    for (const id of ["q-1", "q-2", "q-3"]) expect((await post(`orchestrators/quick/${id}`, JSON.stringify(id))).status).toBe(202);
    for (const id of ["q-1", "q-2", "q-3"]) await until(id);
    const listed = (await (await fetch(`${origin}/durabletask/instances/?instanceIdPrefix=q-&top=10`)).json()) as Array<{ instanceId: string; input: unknown; output: unknown }>;
    expect(listed.map((s) => [s.instanceId, s.input, s.output])).toEqual([
      ["q-1", "q-1", "hello q-1"],
      ["q-2", "q-2", "hello q-2"],
      ["q-3", "q-3", "hello q-3"],
    ]);
    const hidden = (await (await fetch(`${origin}/durabletask/instances/?instanceIdPrefix=q-&showInput=false&top=10`)).json()) as Array<{ input: unknown }>;
    expect(hidden.map((s) => s.input)).toEqual([null, null, null]);
    const first = await fetch(`${origin}/durabletask/instances/?instanceIdPrefix=q-&top=1`);
    expect(((await first.json()) as Array<{ instanceId: string }>).map((s) => s.instanceId)).toEqual(["q-1"]);
    const token = first.headers.get("x-ms-continuation-token")!;
    expect(token).toBeTruthy();
    const second = await fetch(`${origin}/durabletask/instances/?instanceIdPrefix=q-&top=2`, { headers: { "x-ms-continuation-token": token } });
    expect(((await second.json()) as Array<{ instanceId: string }>).map((s) => s.instanceId)).toEqual(["q-2", "q-3"]);
    expect(second.headers.get("x-ms-continuation-token")).toBeNull();
  });

  it("returnInternalServerErrorOnFailure=true answers 500 for a Failed instance (200 without it)", async () => {
    expect((await post("orchestrators/doomed/f-1")).status).toBe(202);
    expect((await until("f-1")).runtimeStatus).toBe("Failed");
    expect((await fetch(`${origin}/durabletask/instances/f-1`)).status).toBe(200);
    const loud = await fetch(`${origin}/durabletask/instances/f-1?returnInternalServerErrorOnFailure=true`);
    expect(loud.status).toBe(500);
    expect(await loud.json()).toMatchObject({ instanceId: "f-1", runtimeStatus: "Failed" });
    // a completed one stays 200 with the flag
    expect((await fetch(`${origin}/durabletask/instances/q-1?returnInternalServerErrorOnFailure=true`)).status).toBe(200);
  });

  it("start-and-wait (?timeout=&pollingInterval=) answers the output once completed, else 202 with the status URLs", async () => {
    const waited = await post("orchestrators/quick/w-1?timeout=10&pollingInterval=1", JSON.stringify("wait"));
    expect(waited.status).toBe(200);
    expect(await waited.json()).toBe("hello wait");
    const tooShort = await post("orchestrators/approval/w-2?timeout=0.3&pollingInterval=0.1", JSON.stringify({}));
    expect(tooShort.status).toBe(202);
    expect(await tooShort.json()).toMatchObject({ id: "w-2", statusQueryGetUri: expect.stringContaining("/instances/w-2?") });
    const failedWait = await post("orchestrators/doomed/w-3?timeout=10&pollingInterval=1");
    expect(failedWait.status).toBe(200);
    expect(await failedWait.json()).toMatchObject({ instanceId: "w-3", runtimeStatus: "Failed" });
    const badInterval = await post("orchestrators/quick/w-4?timeout=1&pollingInterval=5", JSON.stringify("x"));
    expect(badInterval.status).toBe(400);
    expect(((await badInterval.json()) as { Message: string }).Message).toBe("Total timeout 1 should be bigger than retry timeout 5");
  });

  it("function names are case-insensitive (orchestrators and activities)", async () => {
    const res = await post("orchestrators/QUICK/ci-1", JSON.stringify("case"));
    expect(res.status).toBe(202);
    const done = await until("ci-1");
    expect(done).toMatchObject({ runtimeStatus: "Completed", output: "hello case" });
  });

  it("raiseEvent without a JSON content type is a 400 (none at all included); start takes only JSON bodies", async () => {
    expect((await post("orchestrators/approval/r-1", JSON.stringify({}))).status).toBe(202);
    await engine.waitForStatus("r-1", (s) => s.runtimeStatus === "Running");
    for (const headers of [{}, { "content-type": "text/plain" }] as Array<Record<string, string>>) {
      const res = await fetch(`${origin}/durabletask/instances/r-1/raiseEvent/decision`, { method: "POST", headers, body: "{}" });
      expect(res.status).toBe(400);
      expect(((await res.json()) as { Message: string }).Message).toBe("Only application/json request content is supported");
    }
    const plainStart = await post("orchestrators/quick/r-2", '"x"', { "content-type": "text/plain" });
    expect(plainStart.status).toBe(400);
    expect(engine.getStatus("r-2")).toBeUndefined();
    expect(engine.getStatus("r-1")!.runtimeStatus).toBe("Running");
  });

  it("an activity failure caught by the orchestrator reads Reason, then the Details (the error and its stack)", async () => {
    expect((await post("orchestrators/caught/d-1")).status).toBe(202);
    const done = await until("d-1");
    const message = done.output as string;
    const [reason, details] = message.split(" \n ");
    expect(reason).toBe("Activity function 'explode' failed: boom: x");
    expect(details).toMatch(/^Error: boom: x\n\s+at /);
  });

  it("a custom status above 16 KB (UTF-16, whole KB like the extension) fails the orchestration; 16 KB passes", async () => {
    // "s" x n serializes to n + 2 characters = 2n + 4 UTF-16 bytes; the extension truncates to whole KB.
    const fits = 8701; // 17,406 bytes = 16 KB
    expect((await post("orchestrators/loud/cs-1", String(fits))).status).toBe(202);
    const ok = await until("cs-1");
    expect(ok.runtimeStatus).toBe("Completed");
    expect((ok.customStatus as string).length).toBe(fits);
    expect((await post("orchestrators/loud/cs-2", String(fits + 1))).status).toBe(202); // 17,408 bytes = 17 KB
    const failed = await until("cs-2");
    expect(failed.runtimeStatus).toBe("Failed");
    expect(failed.output).toBe("Orchestrator function 'loud' failed: The UTF-16 size of the JSON-serialized payload must not exceed 16 KB. The current payload size is 17 KB.");
    expect(failed.customStatus).toBeNull();
    expect(engine.history("cs-2").some((e) => String(e.EventType) === "TaskScheduled")).toBe(false);
  });

  it("callHttp fails the orchestration with a clear message (a documented limit of the local runtime)", async () => {
    expect((await post("orchestrators/fetcher/h-1")).status).toBe(202);
    const done = await until("h-1");
    expect(done).toMatchObject({ runtimeStatus: "Failed", output: "Orchestrator function 'fetcher' failed: callHttp is not supported by flo's local runtime." });
  });
});
