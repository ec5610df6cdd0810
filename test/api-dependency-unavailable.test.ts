/**
 * The HTTP API when storage does not answer: 503 with a problem body and Retry-After (a client may
 * retry), the cause in the host's log only; any other unexpected error still reaches the host (500).
 * The error comes from the real storage SDK talking to a closed port, so its shape is the real one.
 */
import { createServer } from "node:net";
import { BlobServiceClient, StorageSharedKeyCredential } from "@azure/storage-blob";
import { handleApi, isDependencyUnavailable, UNAVAILABLE_RETRY_AFTER_SECONDS } from "../lib/federation/api";
import { AZURITE_ACCOUNT_KEY, AZURITE_ACCOUNT_NAME } from "../lib/storage/devAccount";

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function storageError(): Promise<unknown> {
  const url = `http://127.0.0.1:${await closedPort()}/${AZURITE_ACCOUNT_NAME}`;
  const client = new BlobServiceClient(url, new StorageSharedKeyCredential(AZURITE_ACCOUNT_NAME, AZURITE_ACCOUNT_KEY), { retryOptions: { maxTries: 1 } });
  try {
    await client.getContainerClient("flo").getBlockBlobClient("federations/x/spec.json").upload("{}", 2);
  } catch (err) {
    return err;
  }
  throw new Error("the upload to a closed port succeeded");
}

test("storage that does not answer gives 503 with a problem body and Retry-After; the cause is logged, not returned", async () => {
  const err = await storageError();
  expect(isDependencyUnavailable(err)).toBe(true);
  const lines: string[] = [];
  const response = await handleApi(() => Promise.reject(err), { log: (line) => lines.push(line) });
  expect(response).toEqual({
    status: 503,
    headers: { "content-type": "application/problem+json", "retry-after": String(UNAVAILABLE_RETRY_AFTER_SECONDS) },
    body: { type: "https://flo.dev/problems/503", title: "Service Unavailable", status: 503, detail: `flo's storage did not answer; retry after ${UNAVAILABLE_RETRY_AFTER_SECONDS} s` },
  });
  expect(JSON.stringify(response.body)).not.toContain("127.0.0.1");
  expect(lines).toEqual([expect.stringMatching(/^answered 503: a dependency did not answer: .*ECONNREFUSED/)]);
});

test("an error wrapping an unreachable dependency is recognised through its cause; other errors still reach the host", async () => {
  expect(isDependencyUnavailable(new Error("checkpoint write failed", { cause: await storageError() }))).toBe(true);
  expect(isDependencyUnavailable({ statusCode: 503 })).toBe(true);
  expect(isDependencyUnavailable({ statusCode: 500, code: "InternalError" })).toBe(false);
  const bug = new TypeError("x is undefined");
  await expect(handleApi(() => Promise.reject(bug))).rejects.toBe(bug);
});
