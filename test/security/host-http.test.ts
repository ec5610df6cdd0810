/**
 * Attacks on a real `flo host` child process over real HTTP: the Durable management API needs the
 * master key, a browser page (foreign Origin / Host, cross-site, text/plain) cannot drive it, keys are
 * checked before any body byte is read, and bodies are capped. Needs dist/ (`npm test` builds first).
 */
import { spawn } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import { whenHostStarted, type HostProcess } from "../helpers/hostProcess";

const ROOT = path.join(__dirname, "..", "..");
const CLI = path.join(ROOT, "bin", "flo.js");
const FLO_APP = path.join(ROOT, "dist", "functions", "index.js");
const CLIENT_APP = path.join(ROOT, "test", "apps", "durable-client", "index.js");
const FUNCTION_KEY = "security-function-key";
const MASTER_KEY = "security-master-key";

type Host = HostProcess;
const hosts: Host[] = [];
const dirs: string[] = [];

function startHost(app: string, env: Record<string, string> = { FLO_FUNCTION_KEY: FUNCTION_KEY, FLO_MASTER_KEY: MASTER_KEY }): Promise<Host> {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "flo-security-"));
  dirs.push(dataDir);
  const baseEnv = { ...process.env };
  delete baseEnv.FLO_FUNCTION_KEY;
  delete baseEnv.FLO_MASTER_KEY;
  const child = spawn(process.execPath, [CLI, "host", app, "--port", "0", "--data", dataDir, "--storage", "memory"], {
    cwd: ROOT,
    env: { ...baseEnv, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const started = whenHostStarted(child);
  void started.then(
    (host) => hosts.push(host),
    () => child.kill("SIGKILL"),
  );
  return started;
}

afterAll(async () => {
  for (const host of hosts) {
    if (host.child.exitCode === null && host.child.signalCode === null) {
      host.child.kill("SIGTERM");
      await new Promise((resolve) => host.child.once("exit", resolve));
    }
  }
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: string;
  headers: http.IncomingHttpHeaders;
}

/** A raw request (fetch cannot set Host), with any headers and an optional body. */
function request(port: number, method: string, pathAndQuery: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method, path: pathAndQuery, headers: { host: `127.0.0.1:${port}`, ...headers }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString("utf8"), headers: res.headers }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** A POST whose headers announce a body that is never sent: the answer must not wait for it. */
function headersOnly(port: number, pathAndQuery: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: "127.0.0.1", port, method: "POST", path: pathAndQuery, headers, agent: false }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on("error", reject);
    req.flushHeaders();
  });
}

const WEBHOOK = "/runtime/webhooks/durabletask";
const withKey = { "x-functions-key": MASTER_KEY };

async function startApproval(host: Host, id: string): Promise<void> {
  const res = await request(host.port, "POST", `${WEBHOOK}/orchestrators/approval/${id}`, { ...withKey, "content-type": "application/json" }, JSON.stringify({ secret: `input-of-${id}` }));
  expect(res.status).toBe(202);
}

async function statusOf(host: Host, id: string): Promise<{ status: number; runtimeStatus?: string }> {
  const res = await request(host.port, "GET", `${WEBHOOK}/instances/${id}`, withKey);
  return { status: res.status, runtimeStatus: res.status === 404 ? undefined : (JSON.parse(res.body) as { runtimeStatus: string }).runtimeStatus };
}

describe("the Durable management API of `flo host`", () => {
  let host: Host;
  beforeAll(async () => {
    host = await startHost(CLIENT_APP);
    await startApproval(host, "victim-1");
  }, 90_000);

  test("listing with showInput=true without a key is a 401 that reveals nothing; with the key the inputs are shown by default", async () => {
    const res = await request(host.port, "GET", `${WEBHOOK}/instances?showInput=true`);
    expect(res.status).toBe(401);
    expect(res.body).not.toContain("input-of-victim-1");
    const wrongKey = await request(host.port, "GET", `${WEBHOOK}/instances?code=${FUNCTION_KEY}`);
    expect(wrongKey.status).toBe(401); // the function key is not the master key
    const listed = await request(host.port, "GET", `${WEBHOOK}/instances`, withKey);
    expect(listed.status).toBe(200);
    expect(JSON.parse(listed.body)).toEqual([expect.objectContaining({ instanceId: "victim-1", input: { secret: "input-of-victim-1" } })]);
  });

  test("starting an orchestration without the key (text/plain, as a form or a page would) is refused and creates nothing", async () => {
    const res = await request(host.port, "POST", `${WEBHOOK}/orchestrators/quick/intruder-1`, { "content-type": "text/plain" }, '"pwn"');
    expect(res.status).toBe(401);
    const withCode = await request(host.port, "POST", `${WEBHOOK}/orchestrators/quick/intruder-2?code=wrong`, { "content-type": "application/json" }, '"pwn"');
    expect(withCode.status).toBe(401);
    // even with the key, a text/plain body is not JSON: refused (a page can send text/plain without a preflight)
    const plain = await request(host.port, "POST", `${WEBHOOK}/orchestrators/quick/intruder-3`, { ...withKey, "content-type": "text/plain" }, '"pwn"');
    expect(plain.status).toBe(400);
    for (const id of ["intruder-1", "intruder-2", "intruder-3"]) expect((await statusOf(host, id)).status).toBe(404);
  });

  test("a cross-origin text/plain terminate (a web page in the user's browser) is refused, even with the key in the URL", async () => {
    const attacks: Array<Record<string, string>> = [
      { host: "attacker.example", origin: "http://attacker.example", "content-type": "text/plain" },
      { origin: "http://attacker.example", "content-type": "text/plain" },
      { "sec-fetch-site": "cross-site", "content-type": "text/plain" },
      { origin: "null", "content-type": "text/plain" },
    ];
    for (const headers of attacks) {
      const res = await request(host.port, "POST", `${WEBHOOK}/instances/victim-1/terminate?reason=pwned&code=${MASTER_KEY}`, headers, "x");
      expect(res.status).toBe(403);
    }
    expect((await statusOf(host, "victim-1")).runtimeStatus).toBe("Running");
  });

  test("DELETE purge without the key is refused (one instance and the filtered purge)", async () => {
    expect((await request(host.port, "DELETE", `${WEBHOOK}/instances/victim-1`)).status).toBe(401);
    expect((await request(host.port, "DELETE", `${WEBHOOK}/instances?createdTimeFrom=2000-01-01T00:00:00Z`)).status).toBe(401);
    expect((await statusOf(host, "victim-1")).runtimeStatus).toBe("Running");
    // with the key, a filter purge still needs createdTimeFrom (the extension's rule): nothing is deleted
    const noFrom = await request(host.port, "DELETE", `${WEBHOOK}/instances`, withKey);
    expect(noFrom.status).toBe(400);
    expect(JSON.parse(noFrom.body)).toBe("Please provide value for 'createdTimeFrom' parameter.");
    expect((await statusOf(host, "victim-1")).runtimeStatus).toBe("Running");
  });

  test("a foreign Host (DNS rebinding) is refused on every route, with or without the key", async () => {
    for (const pathAndQuery of [`${WEBHOOK}/instances`, `${WEBHOOK}/instances/victim-1`, "/api/ops"]) {
      const res = await request(host.port, "GET", pathAndQuery, { ...withKey, host: `attacker.example:${host.port}` });
      expect(res.status).toBe(403);
      expect(res.body).toContain("does not name this host");
    }
    expect((await request(host.port, "GET", `${WEBHOOK}/instances`, { ...withKey, host: `localhost:${host.port}` })).status).toBe(200);
  });

  test("the public port does not serve the key-less RPC form (/durabletask/...)", async () => {
    const res = await request(host.port, "GET", "/durabletask/instances/victim-1");
    expect(res.status).toBe(404);
    expect(res.body).not.toContain("runtimeStatus");
  });

  test("the app's own durable client still works (its calls go to the loopback RPC listener)", async () => {
    const res = await request(host.port, "POST", "/api/ops", { "content-type": "application/json" }, JSON.stringify({ op: "start", name: "quick", instanceId: "via-client", input: "app" }));
    expect(res.status).toBe(202);
    const payload = JSON.parse(res.body) as { statusQueryGetUri: string };
    // the URLs handed to callers carry the master key, like the real host's system key
    expect(payload.statusQueryGetUri).toMatch(new RegExp(`^${host.url}${WEBHOOK}/instances/via-client\\?taskHub=\\w+&connection=Storage&code=${MASTER_KEY}$`));
    let status = "";
    for (let i = 0; i < 100 && status !== "Completed"; i++) {
      const polled = await fetch(payload.statusQueryGetUri);
      status = ((await polled.json()) as { runtimeStatus: string }).runtimeStatus;
      if (status !== "Completed") await new Promise((r) => setTimeout(r, 50));
    }
    expect(status).toBe("Completed");
  });

  test("the header key wins over ?code= (a wrong header with the right code is refused)", async () => {
    expect((await request(host.port, "GET", `${WEBHOOK}/instances/victim-1?code=${MASTER_KEY}`, { "x-functions-key": "wrong" })).status).toBe(401);
    expect((await request(host.port, "GET", `${WEBHOOK}/instances/victim-1?code=wrong`, withKey)).status).toBe(202); // Running
  });

  test("a 400 MB body without a key is answered 401 before the body is sent, and the connection is closed", async () => {
    const rssBefore = rssKb(host.child.pid!);
    const socket = net.connect(host.port, "127.0.0.1");
    await new Promise<void>((resolve) => socket.once("connect", resolve));
    let received = "";
    socket.on("data", (c: Buffer) => (received += c.toString()));
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    socket.on("error", () => undefined);
    socket.write(`POST ${WEBHOOK}/orchestrators/quick/big-1 HTTP/1.1\r\nHost: 127.0.0.1:${host.port}\r\nContent-Type: application/json\r\nContent-Length: ${400 * 1024 * 1024}\r\n\r\n`);
    // headers only: the answer must come without a single body byte
    const deadline = Date.now() + 5000;
    while (!received.includes("\r\n\r\n") && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(received).toMatch(/^HTTP\/1\.1 401 /);
    expect(received.toLowerCase()).toContain("connection: close");
    // the host does not wait for (or read) the rest: keep sending and the socket is closed on us
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    let sent = 0;
    let closedEarly = false;
    void closed.then(() => (closedEarly = true));
    while (!closedEarly && sent < 400 && !socket.destroyed) {
      const ok = socket.write(chunk);
      sent++;
      if (!ok) await Promise.race([new Promise((r) => socket.once("drain", r)), closed, new Promise((r) => setTimeout(r, 500))]);
    }
    await Promise.race([closed, new Promise((r) => setTimeout(r, 5000))]);
    socket.destroy();
    expect(closedEarly).toBe(true);
    expect(sent).toBeLessThan(400);
    expect(rssKb(host.child.pid!) - rssBefore).toBeLessThan(64 * 1024);
    expect((await statusOf(host, "big-1")).status).toBe(404);
  }, 60_000);

  test("a management body above the cap is a 413 even with the key (declared length, nothing read)", async () => {
    const res = await headersOnly(host.port, `${WEBHOOK}/orchestrators/quick/big-2`, { ...withKey, "content-type": "application/json", "content-length": String(200 * 1024 * 1024) });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).Message).toBe(`the request body is ${200 * 1024 * 1024} bytes; at most ${16 * 1024 * 1024} are accepted`);
  });
});

function rssKb(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

describe("flo's own API on `flo host`", () => {
  let host: Host;
  beforeAll(async () => {
    if (!fs.existsSync(FLO_APP)) throw new Error(`${FLO_APP} is missing: run \`npm run build\` (npm test does it first)`);
    host = await startHost(FLO_APP);
  }, 90_000);

  test("every API route needs a key, openapi.json included; the function key and the master key are accepted", async () => {
    const routes: Array<[string, string]> = [
      ["GET", "/api/openapi.json"],
      ["GET", "/api/federations"],
      ["POST", "/api/federations"],
      ["GET", "/api/federations/x"],
      ["POST", "/api/federations/x/cancel"],
      ["POST", "/api/federations/x/resume"],
      ["GET", "/api/federations/x/report"],
    ];
    for (const [method, route] of routes) {
      const res = await request(host.port, method, route, { "content-type": "application/json" }, method === "POST" ? "{}" : undefined);
      expect([method, route, res.status]).toEqual([method, route, 401]);
    }
    expect((await request(host.port, "GET", "/api/openapi.json", { "x-functions-key": FUNCTION_KEY })).status).toBe(200);
    expect((await request(host.port, "GET", `/api/openapi.json?code=${MASTER_KEY}`)).status).toBe(200);
    expect((await request(host.port, "GET", `/api/openapi.json?code=${FUNCTION_KEY}`, { "x-functions-key": "wrong" })).status).toBe(401);
  });

  test("an internal orchestration (siloRound) cannot be started through the management API without the master key", async () => {
    for (const key of [undefined, FUNCTION_KEY]) {
      const headers: Record<string, string> = { "content-type": "text/plain", ...(key ? { "x-functions-key": key } : {}) };
      const res = await request(host.port, "POST", `${WEBHOOK}/orchestrators/siloRound/evil-1`, headers, JSON.stringify({ silo: "x" }));
      expect(res.status).toBe(401);
    }
    const listed = await request(host.port, "GET", `${WEBHOOK}/instances`, withKey);
    expect(JSON.parse(listed.body)).toEqual([]);
  });

  test("a spec body above 1 MB is refused (413) before it is read", async () => {
    const res = await headersOnly(host.port, "/api/federations", { "x-functions-key": FUNCTION_KEY, "content-type": "application/json", "content-length": String(2 * 1024 * 1024) });
    expect(res.status).toBe(413);
    expect(JSON.parse(res.body).detail).toBe(`the request body is ${2 * 1024 * 1024} bytes; at most ${1024 * 1024} are accepted`);
  });

  test("unset keys are generated, printed once, and differ", async () => {
    const generated = await startHost(FLO_APP, {});
    const fk = /Function key \(generated for this run; set FLO_FUNCTION_KEY to fix it\): (\S+)/.exec(generated.output())?.[1];
    const mk = /Master key for the Durable management API \(generated for this run; set FLO_MASTER_KEY to fix it\): (\S+)/.exec(generated.output())?.[1];
    expect(fk).toBeTruthy();
    expect(mk).toBeTruthy();
    expect(mk).not.toBe(fk);
    expect((await request(generated.port, "GET", `${WEBHOOK}/instances`, { "x-functions-key": fk! })).status).toBe(401);
    expect((await request(generated.port, "GET", `${WEBHOOK}/instances`, { "x-functions-key": mk! })).status).toBe(200);
  }, 90_000);
});
