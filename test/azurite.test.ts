import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { execFileSync, spawn } from "node:child_process";
import { BlobServiceClient } from "@azure/storage-blob";
import { AzuriteLocationInUseError, AzuriteOptionsError, AzuriteServiceNotStartedError, AzuriteStartError, selectiveFieldFirst, startAzurite, type AzuriteHandle } from "../lib/storage/azurite";
import { AZURITE_ACCOUNT_KEY } from "../lib/storage/devAccount";
import { readSampleData as readAll, useAzurite, writeSampleData as writeAll } from "./helpers/azurite";

const azurite = useAzurite();

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "flo-azurite-"));
}

describe("startAzurite (in-memory fixture)", () => {
  test("endpoints are path-style loopback URLs and the connection string names all three", () => {
    const h = azurite.handle;
    for (const url of [h.blobEndpoint, h.queueEndpoint, h.tableEndpoint]) {
      expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/);
    }
    expect(new Set([h.blobEndpoint, h.queueEndpoint, h.tableEndpoint]).size).toBe(3);
    expect(h.connectionString).toBe(
      `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=${AZURITE_ACCOUNT_KEY};` +
        `BlobEndpoint=${h.blobEndpoint};QueueEndpoint=${h.queueEndpoint};TableEndpoint=${h.tableEndpoint};`,
    );
    expect(h.location).toBeUndefined();
  });

  test("blob, queue and table round-trip through the connection string", async () => {
    await writeAll(azurite.connectionString);
    expect(await readAll(azurite.connectionString)).toEqual({ blob: "hello blob", message: "hello queue", answer: 42 });
  });
});

describe("in-process Azurite costs its host nothing per request beyond its own work", () => {
  test("loading it leaves the process's require unpatched: Azure SDK requests record no telemetry spans", () => {
    const dist = path.resolve(__dirname, "..", "dist", "lib", "storage", "azurite.js");
    if (!fs.existsSync(dist)) throw new Error(`${dist} is missing: run \`npm run build\` (npm test does) before this test`);
    // A fresh Node process: jest's module registry bypasses the require hooks being looked for.
    const script = [
      `const { startAzurite } = require(${JSON.stringify(dist)});`,
      `(async () => {`,
      `  const h = await startAzurite({ services: ["blob"] });`,
      `  const { BlobServiceClient } = require("@azure/storage-blob");`,
      `  await BlobServiceClient.fromConnectionString(h.connectionString).getContainerClient("probe").createIfNotExists();`,
      `  const hooks = Object.keys(require.cache).filter((m) => /node_modules\\/(diagnostic-channel|diagnostic-channel-publishers|require-in-the-middle|@azure\\/opentelemetry-instrumentation-azure-sdk)\\//.test(m));`,
      `  await h.stop();`,
      `  console.log(JSON.stringify({ hooks, env: process.env.APPLICATION_INSIGHTS_NO_DIAGNOSTIC_CHANNEL ?? null }));`,
      `})();`,
    ].join("\n");
    const out = execFileSync(process.execPath, ["-e", script], { cwd: path.resolve(__dirname, ".."), encoding: "utf8" });
    // No hook module loaded, and the switch used while loading Azurite is not left set.
    expect(JSON.parse(out)).toEqual({ hooks: [], env: null });
  }, 30_000);

  test("blob lookups put the field that tells blobs apart first; other queries are untouched", () => {
    const lookup = { accountName: "a", containerName: "c", name: "x/model.safetensors", snapshot: "" };
    expect(Object.keys(selectiveFieldFirst(lookup, "name") as object)).toEqual(["name", "accountName", "containerName", "snapshot"]);
    expect(selectiveFieldFirst(lookup, "name")).toEqual(lookup);
    const listing = { name: { $regex: "^x/" }, accountName: "a", containerName: "c" };
    expect(selectiveFieldFirst(listing, "name")).toBe(listing);
    const byContainer = { accountName: "a", containerName: "c" };
    expect(selectiveFieldFirst(byContainer, "name")).toBe(byContainer);
  });

  test("with many blobs of one prefix, each read, overwrite, block commit and delete reaches the right blob", async () => {
    const container = BlobServiceClient.fromConnectionString(azurite.connectionString).getContainerClient("lookups");
    await container.createIfNotExists();
    const names = Array.from({ length: 60 }, (_, i) => `rounds/1/updates/s${String(i).padStart(4, "0")}/model.safetensors`);
    await Promise.all(names.map((name, i) => container.getBlockBlobClient(name).upload(`blob ${i}`, `blob ${i}`.length)));
    for (const i of [0, 17, 59]) expect((await container.getBlobClient(names[i]).downloadToBuffer()).toString()).toBe(`blob ${i}`);
    await container.getBlockBlobClient(names[17]).upload("replaced", 8);
    const staged = container.getBlockBlobClient(names[30]);
    const blockId = Buffer.from("block-0").toString("base64");
    await staged.stageBlock(blockId, "staged", 6);
    await staged.commitBlockList([blockId]);
    await container.getBlobClient(names[59]).delete();
    expect((await container.getBlobClient(names[17]).downloadToBuffer()).toString()).toBe("replaced");
    expect((await container.getBlobClient(names[30]).downloadToBuffer()).toString()).toBe("staged");
    expect((await container.getBlobClient(names[16]).downloadToBuffer()).toString()).toBe("blob 16");
    expect(await container.getBlobClient(names[59]).exists()).toBe(false);
    const listed: string[] = [];
    for await (const blob of container.listBlobsFlat({ prefix: "rounds/1/updates/" })) listed.push(blob.name);
    expect(listed).toEqual(names.slice(0, 59));
  });
});

describe("startAzurite options", () => {
  test("only the requested services start; others' endpoints throw a named error", async () => {
    const h = await startAzurite({ services: ["blob"] });
    try {
      expect(h.services).toEqual(["blob"]);
      expect(h.connectionString).not.toContain("QueueEndpoint");
      expect(() => h.queueEndpoint).toThrow(AzuriteServiceNotStartedError);
      expect(() => h.queueEndpoint).toThrow("Azurite queue service was not started (started: blob)");
    } finally {
      await h.stop();
    }
    await h.stop(); // idempotent
  });

  test("bad options are rejected naming the field", async () => {
    await expect(startAzurite({ services: ["file" as never] })).rejects.toThrow(new AzuriteOptionsError('services: expected one of blob|queue|table, got "file"'));
    await expect(startAzurite({ ports: { blob: 70000 } })).rejects.toThrow("ports.blob: expected an integer 0..65535, got 70000");
  });

  test("a taken port fails with AzuriteStartError naming the service, and closes what started", async () => {
    const port = Number(new URL(azurite.blobEndpoint).port);
    const err = await startAzurite({ services: ["queue", "blob"], ports: { blob: port } }).catch((e) => e);
    expect(err).toBeInstanceOf(AzuriteStartError);
    expect(err.service).toBe("blob");
    expect(err.message).toContain("EADDRINUSE");
  });

  test("an aborted signal stops the start", async () => {
    const controller = new AbortController();
    controller.abort(new Error("no thanks"));
    await expect(startAzurite({ signal: controller.signal })).rejects.toThrow("no thanks");
  });
});

describe("startAzurite persisted", () => {
  test("a restart on the same folder sees the same blob, queue message and table entity", async () => {
    const location = tempDir();
    let h: AzuriteHandle = await startAzurite({ location });
    await writeAll(h.connectionString);
    await h.stop();
    h = await startAzurite({ location });
    try {
      expect(await readAll(h.connectionString)).toEqual({ blob: "hello blob", message: "hello queue", answer: 42 });
    } finally {
      await h.stop();
      fs.rmSync(location, { recursive: true, force: true });
    }
  });

  test("a restart on the same folder gets the same endpoints back, so recorded blob URIs stay valid", async () => {
    const location = tempDir();
    const first = await startAzurite({ location, services: ["blob", "queue"] });
    const endpoints = [first.blobEndpoint, first.queueEndpoint];
    const container = (h: AzuriteHandle) => BlobServiceClient.fromConnectionString(h.connectionString).getContainerClient("kept");
    await container(first).create();
    await container(first).getBlockBlobClient("x.txt").upload("kept", 4);
    await first.stop();
    const second = await startAzurite({ location, services: ["blob", "queue"] });
    expect([second.blobEndpoint, second.queueEndpoint]).toEqual(endpoints);
    expect(second.portsChanged).toEqual([]);
    await second.stop();
    // If the remembered port is taken meanwhile, a free one is used and reported.
    const squatter = await startAzurite({ services: ["blob"], ports: { blob: Number(new URL(endpoints[0]).port) } });
    const third = await startAzurite({ location, services: ["blob", "queue"] });
    try {
      expect(third.portsChanged).toEqual(["blob"]);
      expect(third.blobEndpoint).not.toBe(endpoints[0]);
      expect(third.queueEndpoint).toBe(endpoints[1]);
      expect((await container(third).getBlockBlobClient("x.txt").downloadToBuffer()).toString()).toBe("kept");
    } finally {
      await third.stop();
      await squatter.stop();
      fs.rmSync(location, { recursive: true, force: true });
    }
  });

  test("one live Azurite per folder: a second start is refused until the first stops", async () => {
    const location = tempDir();
    const first = await startAzurite({ location, services: ["blob"] });
    const err = await startAzurite({ location, services: ["blob"] }).catch((e) => e);
    expect(err).toBeInstanceOf(AzuriteLocationInUseError);
    expect(err.message).toBe(`Azurite location ${location} is in use by process ${process.pid} (lock file ${path.join(location, "flo-azurite.lock")})`);
    await first.stop();
    expect(fs.existsSync(path.join(location, "flo-azurite.lock"))).toBe(false);
    // A lock naming our own pid that this process does not hold is a dead earlier incarnation's
    // (containers reuse pids): taken over.
    fs.writeFileSync(path.join(location, "flo-azurite.lock"), `${process.pid}:0:0`);
    const second = await startAzurite({ location, services: ["blob"] });
    await second.stop();
    fs.rmSync(location, { recursive: true, force: true });
  });

  /**
   * A child process starts persisted Azurite, writes, prints WRITTEN once every write was
   * acknowledged, and is SIGKILLed at once. What it reported must be on disk.
   */
  async function writeInChildThenKill(location: string, durability: "acknowledged" | "periodic"): Promise<void> {
    const script = `
      const swc = require("@swc/core"); const fs = require("fs");
      require.extensions[".ts"] = (m, filename) => m._compile(swc.transformSync(fs.readFileSync(filename, "utf8"),
        { filename, jsc: { target: "es2022", parser: { syntax: "typescript" } }, module: { type: "commonjs" } }).code, filename);
      const { startAzurite } = require(${JSON.stringify(path.join(__dirname, "../lib/storage/azurite.ts"))});
      const { writeSampleData } = require(${JSON.stringify(path.join(__dirname, "helpers/azurite.ts"))});
      startAzurite({ location: process.argv[1], durability: process.argv[2], autosaveIntervalMs: 600000 })
        .then(async (h) => { await writeSampleData(h.connectionString); process.stdout.write("WRITTEN\\n"); setInterval(() => {}, 1000); })
        .catch((e) => { console.error(e); process.exit(3); });`;
    const child = spawn(process.execPath, ["-e", script, location, durability], {
      cwd: path.join(__dirname, ".."),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => {
        if (d.toString().includes("WRITTEN")) {
          child.kill("SIGKILL");
          resolve();
        }
      });
      child.on("exit", (code) => reject(new Error(`child exited early (${code}): ${stderr}`)));
    });
    await new Promise((resolve) => child.once("exit", resolve));
  }

  test("acknowledged writes survive a SIGKILL of the process hosting Azurite", async () => {
    const location = tempDir();
    await writeInChildThenKill(location, "acknowledged");
    expect(fs.existsSync(path.join(location, "flo-azurite.lock"))).toBe(true); // left by the killed child...
    const h = await startAzurite({ location }); // ...and taken over because its owner is dead
    try {
      expect(await readAll(h.connectionString)).toEqual({ blob: "hello blob", message: "hello queue", answer: 42 });
    } finally {
      await h.stop();
      fs.rmSync(location, { recursive: true, force: true });
    }
  }, 90000);

  test("killed mid-stream (8 writers in flight): every blob acknowledged before the kill is there after restart", async () => {
    const location = tempDir();
    const script = `
      const swc = require("@swc/core"); const fs = require("fs");
      require.extensions[".ts"] = (m, filename) => m._compile(swc.transformSync(fs.readFileSync(filename, "utf8"),
        { filename, jsc: { target: "es2022", parser: { syntax: "typescript" } }, module: { type: "commonjs" } }).code, filename);
      const { startAzurite } = require(${JSON.stringify(path.join(__dirname, "../lib/storage/azurite.ts"))});
      const { BlobServiceClient } = require("@azure/storage-blob");
      startAzurite({ location: process.argv[1], services: ["blob"] }).then(async (h) => {
        const container = BlobServiceClient.fromConnectionString(h.connectionString).getContainerClient("stream");
        await container.create();
        let next = 0;
        const writer = async () => { for (;;) { const name = "b" + next++; await container.getBlockBlobClient(name).upload(name, name.length); process.stdout.write("ACK " + name + "\\n"); } };
        for (let i = 0; i < 8; i++) writer();
      }).catch((e) => { console.error(e); process.exit(3); });`;
    const child = spawn(process.execPath, ["-e", script, location], { cwd: path.join(__dirname, ".."), stdio: ["ignore", "pipe", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d) => (stderr += d));
    const acked: string[] = [];
    let pending = "";
    const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (d: Buffer) => {
        pending += d.toString();
        const lines = pending.split("\n");
        pending = lines.pop()!;
        for (const line of lines) if (line.startsWith("ACK ")) acked.push(line.slice(4));
        if (acked.length >= 60 && !child.killed) {
          child.kill("SIGKILL");
          resolve();
        }
      });
      child.once("exit", (code) => (child.killed ? resolve() : reject(new Error(`child exited early (${code}): ${stderr}`))));
    });
    await exited;
    const h = await startAzurite({ location, services: ["blob"] });
    try {
      const container = BlobServiceClient.fromConnectionString(h.connectionString).getContainerClient("stream");
      const missing: string[] = [];
      for (const name of acked) {
        const body = await container
          .getBlockBlobClient(name)
          .downloadToBuffer()
          .catch(() => undefined);
        if (body?.toString() !== name) missing.push(name);
      }
      expect(acked.length).toBeGreaterThanOrEqual(60);
      expect(missing).toEqual([]);
    } finally {
      await h.stop();
      fs.rmSync(location, { recursive: true, force: true });
    }
  }, 90000);

  test("periodic durability loses writes acknowledged since the last autosave (why acknowledged is the default)", async () => {
    const location = tempDir();
    await writeInChildThenKill(location, "periodic");
    const h = await startAzurite({ location });
    try {
      await expect(readAll(h.connectionString)).rejects.toMatchObject({ statusCode: 404 });
    } finally {
      await h.stop();
      fs.rmSync(location, { recursive: true, force: true });
    }
  }, 90000);
});
