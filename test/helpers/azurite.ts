/**
 * Jest helper: one in-memory Azurite per test file, on free loopback ports, telemetry off.
 *
 *   const azurite = useAzurite();              // registers beforeAll/afterAll
 *   test("...", () => azurite.connectionString ...);
 */
import { BlobServiceClient } from "@azure/storage-blob";
import { QueueServiceClient } from "@azure/storage-queue";
import { TableClient } from "@azure/data-tables";
import { startAzurite, type AzuriteHandle, type StartAzuriteOptions } from "../../lib/storage/azurite";

export interface AzuriteFixture {
  /** The running handle; throws if read outside a test (before beforeAll ran). */
  readonly handle: AzuriteHandle;
  readonly connectionString: string;
  readonly blobEndpoint: string;
  readonly queueEndpoint: string;
  readonly tableEndpoint: string;
}

export function useAzurite(options: Omit<StartAzuriteOptions, "location"> = {}): AzuriteFixture {
  let handle: AzuriteHandle | undefined;
  beforeAll(async () => {
    handle = await startAzurite(options);
  });
  afterAll(async () => {
    await handle?.stop();
    handle = undefined;
  });
  const running = (): AzuriteHandle => {
    if (!handle) throw new Error("useAzurite: Azurite is not running here (use it inside a test or hook)");
    return handle;
  };
  return {
    get handle() {
      return running();
    },
    get connectionString() {
      return running().connectionString;
    },
    get blobEndpoint() {
      return running().blobEndpoint;
    },
    get queueEndpoint() {
      return running().queueEndpoint;
    },
    get tableEndpoint() {
      return running().tableEndpoint;
    },
  };
}

/** Writes one blob, one queue message and one table entity (used by persistence tests, also from a child process). */
export async function writeSampleData(connectionString: string): Promise<void> {
  const container = BlobServiceClient.fromConnectionString(connectionString).getContainerClient("models");
  await container.createIfNotExists();
  await container.getBlockBlobClient("a/b.txt").upload("hello blob", 10);
  const queue = QueueServiceClient.fromConnectionString(connectionString).getQueueClient("events");
  await queue.createIfNotExists();
  await queue.sendMessage(Buffer.from("hello queue").toString("base64"));
  const table = TableClient.fromConnectionString(connectionString, "state", { allowInsecureConnection: true });
  await table.createTable();
  await table.upsertEntity({ partitionKey: "p", rowKey: "r", answer: 42 });
}

/** Reads back what writeSampleData wrote; rejects with the SDK's 404 error if any of it is missing. */
export async function readSampleData(connectionString: string): Promise<{ blob: string; message: string; answer: unknown }> {
  const container = BlobServiceClient.fromConnectionString(connectionString).getContainerClient("models");
  const blob = (await container.getBlockBlobClient("a/b.txt").downloadToBuffer()).toString();
  const queue = QueueServiceClient.fromConnectionString(connectionString).getQueueClient("events");
  const peeked = await queue.peekMessages({ numberOfMessages: 1 });
  const message = Buffer.from(peeked.peekedMessageItems[0]?.messageText ?? "", "base64").toString();
  const table = TableClient.fromConnectionString(connectionString, "state", { allowInsecureConnection: true });
  const entity = await table.getEntity<{ answer: number }>("p", "r");
  return { blob, message, answer: entity.answer };
}
