import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { BlobServiceClient } from "@azure/storage-blob";
import { AzuriteLocationInUseError, AzuriteOptionsError, AzuriteServiceNotStartedError, AzuriteStartError, startAzurite } from "../lib/storage/azurite";
import { startAzuriteThread } from "../lib/storage/azuriteThread";
import { readSampleData, writeSampleData } from "./helpers/azurite";

// The worker runs dist/lib/storage/azurite.js: `npm test` builds it first.

describe("startAzuriteThread: Azurite on a worker thread, same handle and errors", () => {
  test("serves blob, queue and table, and its handle reads like startAzurite's", async () => {
    const h = await startAzuriteThread();
    try {
      expect(h.services).toEqual(["blob", "queue", "table"]);
      expect(h.location).toBeUndefined();
      for (const url of [h.blobEndpoint, h.queueEndpoint, h.tableEndpoint]) expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/devstoreaccount1$/);
      expect(h.connectionString).toContain(`BlobEndpoint=${h.blobEndpoint};`);
      await writeSampleData(h.connectionString);
      expect(await readSampleData(h.connectionString)).toEqual({ blob: "hello blob", message: "hello queue", answer: 42 });
    } finally {
      await h.stop();
    }
    await h.stop(); // idempotent
    // Stopped means closed: the port no longer answers.
    await expect(BlobServiceClient.fromConnectionString(h.connectionString, { retryOptions: { maxTries: 1 } }).getProperties()).rejects.toThrow();
  });

  test("a service not started throws the named error from the handle", async () => {
    const h = await startAzuriteThread({ services: ["blob"] });
    try {
      expect(() => h.queueEndpoint).toThrow(new AzuriteServiceNotStartedError("queue", ["blob"]));
    } finally {
      await h.stop();
    }
  });

  test("the launcher's errors come back with their class and fields", async () => {
    await expect(startAzuriteThread({ services: ["file" as never] })).rejects.toThrow(new AzuriteOptionsError('services: expected one of blob|queue|table, got "file"'));
    const taken = await startAzurite({ services: ["blob"] });
    try {
      const port = Number(new URL(taken.blobEndpoint).port);
      const err = (await startAzuriteThread({ services: ["blob"], ports: { blob: port } }).catch((e: unknown) => e)) as AzuriteStartError;
      expect(err).toBeInstanceOf(AzuriteStartError);
      expect(err.service).toBe("blob");
      expect(err.message).toMatch(/^Azurite blob service failed to start: .*EADDRINUSE/);
    } finally {
      await taken.stop();
    }
  });

  test("persisted: one live Azurite per folder across threads, and data survives a stop and a restart", async () => {
    const location = fs.mkdtempSync(path.join(os.tmpdir(), "flo-azurite-thread-"));
    try {
      const first = await startAzuriteThread({ location });
      try {
        await writeSampleData(first.connectionString);
        await first.flush();
        const err = (await startAzurite({ location }).catch((e: unknown) => e)) as AzuriteLocationInUseError;
        expect(err).toBeInstanceOf(AzuriteLocationInUseError);
        expect(err.ownerPid).toBe(process.pid);
      } finally {
        await first.stop();
      }
      const second = await startAzuriteThread({ location });
      try {
        expect(second.blobEndpoint).toBe(first.blobEndpoint);
        expect(await readSampleData(second.connectionString)).toEqual({ blob: "hello blob", message: "hello queue", answer: 42 });
      } finally {
        await second.stop();
      }
    } finally {
      fs.rmSync(location, { recursive: true, force: true });
    }
  });

  test("an aborted signal stops the start", async () => {
    const controller = new AbortController();
    controller.abort(new Error("changed my mind"));
    await expect(startAzuriteThread({ signal: controller.signal })).rejects.toThrow("changed my mind");
  });
});
