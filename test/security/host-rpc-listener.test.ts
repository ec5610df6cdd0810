/**
 * The durable client's key-less RPC listener: loopback only, a random port that is not the public
 * one, a secret path, and the same Host checks as the public port.
 */
import * as http from "http";
import * as path from "path";
import { startLocalHost, type LocalHost } from "../../lib/runtime/host";

const APP = path.join(__dirname, "..", "apps", "durable-client", "index.js");
const SETTINGS = { FLO_FUNCTION_KEY: "rpc-test-function-key", FLO_MASTER_KEY: "rpc-test-master-key" };

function get(url: URL, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: url.hostname, port: url.port, path: url.pathname + url.search, headers: { host: url.host, ...headers }, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

let first: LocalHost;
let second: LocalHost;
beforeAll(async () => {
  first = await startLocalHost({ appEntry: APP, port: 0, storage: "memory", settings: SETTINGS, log: () => undefined });
  second = await startLocalHost({ appEntry: APP, port: 0, storage: "memory", settings: SETTINGS, log: () => undefined });
});
afterAll(async () => {
  await first?.stop();
  await second?.stop();
});

test("the RPC base is a loopback listener apart from the public port, under a secret path that differs per start", () => {
  const rpc = new URL(first.rpcBaseUrl);
  expect(rpc.hostname).toBe("127.0.0.1");
  expect(rpc.port).not.toBe(new URL(first.url).port);
  const [secret, durabletask, rest] = rpc.pathname.split("/").filter(Boolean);
  expect(secret.length).toBeGreaterThanOrEqual(24);
  expect([durabletask, rest]).toEqual(["durabletask", undefined]);
  expect(new URL(second.rpcBaseUrl).pathname).not.toBe(rpc.pathname);
});

test("the RPC base answers without a key; any other path on that port is a 404; a foreign Host is refused", async () => {
  const rpc = new URL(first.rpcBaseUrl);
  expect((await get(new URL("instances/", rpc))).status).toBe(200);
  const guessed = await get(new URL(`http://127.0.0.1:${rpc.port}/durabletask/instances/`));
  expect(guessed.status).toBe(404);
  expect(guessed.body).toBe("");
  expect((await get(new URL(`${rpc.origin}/runtime/webhooks/durabletask/instances/`))).status).toBe(404);
  expect((await get(new URL("instances/", rpc), { host: `attacker.example:${rpc.port}` })).status).toBe(403);
  expect((await get(new URL("instances/", rpc), { origin: "http://attacker.example" })).status).toBe(403);
});

test("the public management URL needs the master key; the function key is not enough", async () => {
  expect((await fetch(`${first.managementUrl}/instances`)).status).toBe(401);
  expect((await fetch(`${first.managementUrl}/instances`, { headers: { "x-functions-key": SETTINGS.FLO_FUNCTION_KEY } })).status).toBe(401);
  expect((await fetch(`${first.managementUrl}/instances`, { headers: { "x-functions-key": SETTINGS.FLO_MASTER_KEY } })).status).toBe(200);
});
