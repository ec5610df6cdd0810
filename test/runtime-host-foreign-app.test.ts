/**
 * The foreign app (test/apps/foreign-app: only public @azure/functions + durable-functions APIs)
 * running unchanged on the local host, driven over HTTP like a user would with `func start`.
 */
import * as path from "path";
import { startLocalHost, type LocalHost } from "../lib/runtime/host";

const APP = path.join(__dirname, "apps", "foreign-app", "index.js");

interface CheckStatus {
  id: string;
  statusQueryGetUri: string;
  sendEventPostUri: string;
  terminatePostUri: string;
  purgeHistoryDeleteUri: string;
}
interface Status {
  runtimeStatus: string;
  output: unknown;
  customStatus: unknown;
  input: unknown;
  name: string;
  instanceId: string;
}

let host: LocalHost;
const logs: string[] = [];
beforeAll(async () => {
  host = await startLocalHost({
    appEntry: APP,
    port: 0,
    storage: "memory",
    settings: { FLO_FUNCTION_KEY: "foreign-key", JOB_QUEUE: "job-done" },
    serviceBusPollIntervalMs: 50,
    log: (l) => logs.push(l),
  });
});
afterAll(async () => host?.stop());

async function start(name: string, input?: unknown, instanceId?: string): Promise<CheckStatus> {
  const res = await fetch(`${host.url}/api/orchestrators/${name}${instanceId ? `/${instanceId}` : ""}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: input === undefined ? "" : JSON.stringify(input),
  });
  expect(res.status).toBe(202);
  const body = (await res.json()) as CheckStatus;
  expect(res.headers.get("location")).toBe(body.statusQueryGetUri);
  return body;
}

async function status(check: CheckStatus): Promise<Status> {
  const res = await fetch(check.statusQueryGetUri);
  expect([200, 202]).toContain(res.status);
  return (await res.json()) as Status;
}

async function waitForStatus(check: CheckStatus, wanted: (s: Status) => boolean, timeoutMs = 15_000): Promise<Status> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await status(check);
    if (wanted(s)) return s;
    if (Date.now() > deadline) throw new Error(`instance ${check.id} still ${s.runtimeStatus} (${JSON.stringify(s.customStatus)}): ${JSON.stringify(host.engine.history(check.id))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
const finished = (s: Status): boolean => ["Completed", "Failed", "Terminated"].includes(s.runtimeStatus);

test("check-status URLs point at the local host", async () => {
  const check = await start("chaining", undefined, "urls-1");
  expect(check.id).toBe("urls-1");
  expect(check.statusQueryGetUri.startsWith(`${host.url}/runtime/webhooks/durabletask/instances/urls-1`)).toBe(true);
  await waitForStatus(check, finished);
});

test("function chaining", async () => {
  const check = await start("chaining");
  const s = await waitForStatus(check, finished);
  expect(s).toMatchObject({ runtimeStatus: "Completed", name: "chaining", output: ["Hello Tokyo!", "Hello Seattle!", "Hello London!"] });
});

test("fan-out / fan-in", async () => {
  const s = await waitForStatus(await start("fanOutFanIn", 10), finished);
  expect(s).toMatchObject({ runtimeStatus: "Completed", output: { count: 10, sum: 385 }, input: 10 });
});

test("human interaction: approved via df.getClient().raiseEvent, and timed out", async () => {
  const approved = await start("approval", { timeoutMs: 60_000 }, "approval-yes");
  const unauthorized = await fetch(`${host.url}/api/approve/approval-yes`, { method: "POST", body: JSON.stringify({ by: "mallory" }) });
  expect(unauthorized.status).toBe(401);
  const ok = await fetch(`${host.url}/api/approve/approval-yes?code=foreign-key`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ by: "alice" }) });
  expect(ok.status).toBe(202);
  expect(await waitForStatus(approved, finished)).toMatchObject({ runtimeStatus: "Completed", output: { approved: true, by: "alice" } });

  const timedOut = await start("approval", { timeoutMs: 300 });
  expect(await waitForStatus(timedOut, finished)).toMatchObject({ runtimeStatus: "Completed", output: { approved: false, reason: "timed out" } });
});

test("human interaction: event sent to the management API's sendEventPostUri", async () => {
  const check = await start("approval", { timeoutMs: 60_000 });
  const url = check.sendEventPostUri.replace("{eventName}", "Approval");
  const res = await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ by: "bob" }) });
  expect(res.status).toBe(202);
  expect(await waitForStatus(check, finished)).toMatchObject({ output: { approved: true, by: "bob" } });
});

test("monitor with continueAsNew", async () => {
  const s = await waitForStatus(await start("monitor", { poll: 1, readyAfter: 3, intervalMs: 100 }), finished);
  expect(s).toMatchObject({ runtimeStatus: "Completed", output: { polls: 3, status: "Completed" } });
});

test("retry: the host retries the activity after timers; exhausted retries surface the error", async () => {
  const ok = await start("retrying");
  const exhausted = await start("retryExhausted");
  expect(await waitForStatus(ok, finished)).toMatchObject({ runtimeStatus: "Completed", output: "succeeded on attempt 3" });
  const s = await waitForStatus(exhausted, finished);
  expect(s.runtimeStatus).toBe("Completed");
  expect(s.output).toMatchObject({ failed: true });
  expect(String((s.output as { message: string }).message)).toContain("attempt 2 failed");
});

test("sub-orchestrations with explicit child ids", async () => {
  const check = await start("parent", undefined, "parent-1");
  expect(await waitForStatus(check, finished)).toMatchObject({
    runtimeStatus: "Completed",
    output: { greetings: ["Hello Tokyo!", "Hello Seattle!", "Hello London!"], squares: { count: 3, sum: 14 } },
  });
  const child = await (await fetch(`${host.url}/api/status/parent-1:squares`)).json();
  expect(child).toMatchObject({ runtimeStatus: "Completed", output: { count: 3, sum: 14 } });
});

test("terminate through the client, and through terminatePostUri", async () => {
  const a = await start("waitForever", undefined, "forever-a");
  await waitForStatus(a, (s) => s.customStatus === "waiting");
  expect((await fetch(`${host.url}/api/terminate/forever-a`, { method: "POST" })).status).toBe(202);
  expect(await waitForStatus(a, finished)).toMatchObject({ runtimeStatus: "Terminated", output: "stopped by test" });

  const b = await start("waitForever");
  await waitForStatus(b, (s) => s.customStatus === "waiting");
  const res = await fetch(b.terminatePostUri.replace("{text}", "via uri"), { method: "POST" });
  expect(res.status).toBe(202);
  expect(await waitForStatus(b, finished)).toMatchObject({ runtimeStatus: "Terminated", output: "via uri" });
});

test("starting an unknown orchestrator is a clean failure, not a hang", async () => {
  const res = await fetch(`${host.url}/api/orchestrators/doesNotExist`, { method: "POST" });
  expect(res.status).toBe(500);
  expect(logs.some((l) => l.includes("httpStart"))).toBe(true);
});

test("a Service Bus-triggered durable client (df.app.client.serviceBusQueue) raises the event that completes an instance", async () => {
  const check = await start("awaitJob", "train-7", "await-job-1");
  await waitForStatus(check, (s) => s.runtimeStatus === "Running");
  await host.serviceBus.send("job-done", { body: { status: "Completed", metrics: { acc: 0.91 } }, applicationProperties: { InstanceId: "await-job-1" } });
  expect(await waitForStatus(check, finished)).toMatchObject({
    runtimeStatus: "Completed",
    output: { job: "train-7", result: { status: "Completed", metrics: { acc: 0.91 }, deliveryCount: 1 } },
  });
});

test("a timer-triggered durable client (df.app.client.timer, runOnStartup) started an instance at host start", async () => {
  const res = await fetch(`${host.url}/api/status/nightly-on-time`);
  expect(res.status).toBe(200);
  const deadline = Date.now() + 10_000;
  let s = (await res.json()) as Status;
  while (s.runtimeStatus !== "Completed" && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    s = (await (await fetch(`${host.url}/api/status/nightly-on-time`)).json()) as Status;
  }
  expect(s).toMatchObject({ runtimeStatus: "Completed", output: ["Hello Tokyo!", "Hello Seattle!", "Hello London!"] });
});
