/**
 * A final job event is raised on the silo's sub-orchestration in one request to the Durable API:
 * no status lookup first. A missing instance is recognised from the raise's own 404.
 */
import type { DurableClient } from "durable-functions";
import { localJobEvent } from "../lib/compute/local/events";
import { floJobTags } from "../lib/compute/siloCompute";
import { handleJobEvent, type InboxDelivery } from "../lib/federation/inbox";
import type { FederationServices } from "../lib/federation/services";

interface Call {
  method: string;
  args: unknown[];
}

function fakeClient(raise: (instanceId: string) => Promise<void>): { client: DurableClient; calls: Call[] } {
  const calls: Call[] = [];
  const client = {
    raiseEvent: (...args: unknown[]) => {
      calls.push({ method: "raiseEvent", args });
      return raise(args[0] as string);
    },
    getStatus: (...args: unknown[]) => {
      calls.push({ method: "getStatus", args });
      return Promise.reject(new Error("getStatus must not be called"));
    },
  } as unknown as DurableClient;
  return { client, calls };
}

function delivery(state: "completed" | "running", lines: string[]): InboxDelivery {
  const job = { federationId: "fed", round: 2, silo: "east" };
  return {
    services: {} as FederationServices,
    queue: "job-events",
    message: { body: localJobEvent({ jobName: "flo-fed-r2-east", state, tags: floJobTags(job), id: "event-1" }) },
    log: (line) => lines.push(line),
  };
}

test("a final state is raised on the silo's instance with one call", async () => {
  const { client, calls } = fakeClient(() => Promise.resolve());
  expect(await handleJobEvent(client, delivery("completed", []))).toBe("raised");
  expect(calls).toEqual([{ method: "raiseEvent", args: ["fed:r2:east", "silo-done:2:east", { jobName: "flo-fed-r2-east", state: "completed", rawStatus: "completed", eventId: "event-1" }] }]);
});

test("an event for an instance that does not exist is ignored with the reason, from the raise's 404", async () => {
  const lines: string[] = [];
  const { client, calls } = fakeClient((id) => Promise.reject(new Error(`No instance with ID '${id}' found.`)));
  expect(await handleJobEvent(client, delivery("completed", lines))).toBe("no-instance");
  expect(calls.map((c) => c.method)).toEqual(["raiseEvent"]);
  expect(lines).toEqual(["job event event-1 for flo-fed-r2-east ignored: no orchestration fed:r2:east"]);
});

test("any other failure of the raise is thrown (the message is retried)", async () => {
  const { client } = fakeClient(() => Promise.reject(new Error("The operation failed with an unexpected status code: 500")));
  await expect(handleJobEvent(client, delivery("completed", []))).rejects.toThrow("unexpected status code: 500");
});

test("an in-progress state is only logged", async () => {
  const { client, calls } = fakeClient(() => Promise.resolve());
  expect(await handleJobEvent(client, delivery("running", []))).toBe("in-progress");
  expect(calls).toEqual([]);
});
