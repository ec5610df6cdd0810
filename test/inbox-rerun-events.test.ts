/**
 * A secure round re-run under a new session runs new sub-orchestrations (`<fed>:r<round>.s<n>:...`):
 * its jobs carry the session in their tags, so the job-event inbox raises their events on those
 * instances instead of the first session's (where they would be lost and the silo left to poll).
 */
import type { DurableClient } from "durable-functions";
import { runStatusChangedEvent, azureMlWorkspaceId } from "../lib/compute/azureml/events";
import { localJobEvent } from "../lib/compute/local/events";
import { floJobName, floJobTags, type JobKind } from "../lib/compute/siloCompute";
import { siloInstanceId } from "../lib/federation/decisions";
import { handleJobEvent, type InboxDelivery } from "../lib/federation/inbox";
import type { FederationServices } from "../lib/federation/services";

interface Raised {
  instanceId: string;
  eventName: string;
  payload: { jobName: string; state?: string };
}

/** A durable client that knows only the given instances and records what is raised on them (a raise on another is the Durable API's 404). */
function fakeClient(instances: readonly string[]): { client: DurableClient; raised: Raised[] } {
  const raised: Raised[] = [];
  const client = {
    raiseEvent: (instanceId: string, eventName: string, payload: Raised["payload"]) => {
      if (!instances.includes(instanceId)) return Promise.reject(new Error(`No instance with ID '${instanceId}' found.`));
      raised.push({ instanceId, eventName, payload });
      return Promise.resolve();
    },
  } as unknown as DurableClient;
  return { client, raised };
}

function delivery(body: unknown, rejected: unknown[]): InboxDelivery {
  const services = { messages: { send: (queue: string, message: unknown) => Promise.resolve(void rejected.push({ queue, message })) } } as unknown as FederationServices;
  return { services, queue: "job-events", message: { body, messageId: "m1" }, log: () => undefined };
}

const FED = "fed-1";
const job = (kind: JobKind, rerun: number, attempt: number) => ({ federationId: FED, round: 2, silo: "east", kind, rerun, attempt });

describe("job events of re-run secure sessions", () => {
  // Both sessions' instances exist (the first session's ended but is still on record).
  const instances = [siloInstanceId(FED, 2, "east"), siloInstanceId(FED, 2, "east", "unmask"), siloInstanceId(FED, 2, "east", undefined, 1), siloInstanceId(FED, 2, "east", "unmask", 1)];

  it.each([
    ["train", 0, 1, "fed-1:r2:east", "silo-done:2:east"],
    ["train", 1, 3, "fed-1:r2.s1:east", "silo-done:2:east"],
    ["unmask", 1, 3, "fed-1:r2.s1:east:unmask", "unmask-done:2:east"],
  ] as const)("a local %s job of session %i (attempt %i) is raised on %s", async (kind, rerun, attempt, instanceId, eventName) => {
    const { client, raised } = fakeClient(instances);
    const name = floJobName(job(kind, rerun, attempt));
    const body = localJobEvent({ jobName: name, state: "completed", tags: floJobTags(job(kind, rerun, attempt)) });
    await expect(handleJobEvent(client, delivery(body, []))).resolves.toBe("raised");
    expect(raised).toEqual([{ instanceId, eventName, payload: expect.objectContaining({ jobName: name, state: "completed" }) }]);
  });

  it("an Azure ML run event of a re-run job reaches the re-run's instance", async () => {
    const { client, raised } = fakeClient(instances);
    const tags = floJobTags(job("train", 2, 5));
    expect(tags.floRerun).toBe("2");
    const body = runStatusChangedEvent({
      workspaceId: azureMlWorkspaceId("00000000-0000-0000-0000-0000000000aa", "rg", "mlw"),
      jobName: floJobName(job("train", 2, 5)),
      experimentName: FED,
      tags,
      status: "failed",
    });
    // Session 2's instance does not exist in this client: the event is not raised on session 0's.
    await expect(handleJobEvent(client, delivery(body, []))).resolves.toBe("no-instance");
    const withSession2 = fakeClient([...instances, siloInstanceId(FED, 2, "east", undefined, 2)]);
    await expect(handleJobEvent(withSession2.client, delivery(body, []))).resolves.toBe("raised");
    expect(withSession2.raised.map((r) => r.instanceId)).toEqual(["fed-1:r2.s2:east"]);
    expect(raised).toEqual([]);
  });

  it("the first session's jobs carry no session tag (their tags are unchanged)", () => {
    expect(Object.keys(floJobTags(job("train", 0, 1))).sort()).toEqual(["floApp", "floFederation", "floKind", "floRound", "floSilo"]);
  });

  it("a malformed session tag is rejected with its field path", async () => {
    const { client, raised } = fakeClient(instances);
    const rejected: { queue: string; message: unknown }[] = [];
    const body = localJobEvent({ jobName: floJobName(job("train", 1, 3)), state: "completed", tags: { ...floJobTags(job("train", 1, 3)), floRerun: "one" } });
    await expect(handleJobEvent(client, delivery(body, rejected))).resolves.toBe("rejected");
    expect(raised).toEqual([]);
    expect(rejected).toHaveLength(1);
    expect(JSON.stringify(rejected[0].message)).toContain('tags.floRerun: expected a non-negative integer as a string, got \\"one\\"');
  });
});
