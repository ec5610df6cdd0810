/**
 * Compute backends by descriptor: the spec's `compute` union, the services' SiloCompute instances
 * and the job-events parser all come from the one list in lib/compute/backends.ts.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ComputeInstances, computeSpecSchema, computeTypes, parseJobEvent } from "../lib/compute/backends";
import { AzureMlSiloCompute } from "../lib/compute/azureml/compute";
import { azureMlWorkspaceId, runStatusChangedEvent } from "../lib/compute/azureml/events";
import { LocalSiloCompute } from "../lib/compute/local/compute";
import { localJobEvent } from "../lib/compute/local/events";
import { floJobTags, type ComputeContext } from "../lib/compute/siloCompute";
import { StubArmCredential } from "./fakes/arm/fakeArm";

const SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa";
const azureml = (workspace: string, computeName = "cpu-cluster") => ({
  type: "azureml" as const,
  subscriptionId: SUBSCRIPTION,
  resourceGroup: "rg",
  workspace,
  computeName,
  exchangeDatastore: "flo_exchange",
});

describe("the spec's compute union", () => {
  test("has one option per backend, by type", () => {
    expect(computeTypes()).toEqual(["local", "azureml"]);
    expect(computeSpecSchema.parse({ type: "local" })).toEqual({ type: "local" });
    expect(
      computeSpecSchema.parse({ type: "azureml", subscriptionId: SUBSCRIPTION, resourceGroup: "rg", workspace: "mlw-east", computeName: "cpu-cluster", exchangeDatastore: "flo_exchange" }),
    ).toEqual(azureml("mlw-east"));
    // The exchange datastore is required and may not be the workspace's default store.
    expect(computeSpecSchema.safeParse({ type: "azureml", subscriptionId: SUBSCRIPTION, resourceGroup: "rg", workspace: "mlw-east", computeName: "cpu-cluster" }).success).toBe(false);
    expect(computeSpecSchema.safeParse({ ...azureml("mlw-east"), exchangeDatastore: "workspaceblobstore" }).success).toBe(false);
    expect(computeSpecSchema.safeParse({ type: "kubernetes" }).success).toBe(false);
    expect(computeSpecSchema.safeParse({ type: "local", workspace: "x" }).success).toBe(false);
  });
});

describe("ComputeInstances", () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(join(tmpdir(), "flo-backends-"));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  function context(): ComputeContext & { credentials: number; published: { id: string }[] } {
    const published: { id: string }[] = [];
    const ctx = {
      env: { FLO_LOCAL_COMPUTE: "enabled", FLO_LOCAL_JOBS_DIR: root },
      credentials: 0,
      published,
      credential: () => {
        ctx.credentials++;
        return new StubArmCredential();
      },
      transfer: {
        source: () => {
          throw new Error("not used");
        },
        downloadFolder: () => Promise.reject(new Error("not used")),
        uploadFolder: () => Promise.reject(new Error("not used")),
        uploadFile: () => Promise.reject(new Error("not used")),
      },
      publishJobEvent: async (event: { id: string }) => void published.push(event),
    };
    return ctx;
  }

  test("builds each backend's SiloCompute by type and shares one per instance key", () => {
    const ctx = context();
    const instances = new ComputeInstances(ctx);
    try {
      const local = instances.for({ type: "local" });
      expect(local).toBeInstanceOf(LocalSiloCompute);
      expect(instances.for({ type: "local" })).toBe(local);

      const east = instances.for(azureml("mlw-east"));
      expect(east).toBeInstanceOf(AzureMlSiloCompute);
      expect(instances.for(azureml("mlw-east"))).toBe(east);
      expect(instances.for(azureml("mlw-west"))).not.toBe(east);
      expect(instances.for(azureml("mlw-east", "gpu-cluster"))).not.toBe(east);
      // One Azure ML compute per workspace/cluster, each asking for the orchestrator's identity.
      expect(ctx.credentials).toBe(3);
    } finally {
      instances.close();
    }
  });

  test("the local backend publishes its own events through the context, and they parse as local job events", async () => {
    const ctx = context();
    const instances = new ComputeInstances(ctx);
    try {
      const local = instances.for({ type: "local" });
      const job = { federationId: "fed", round: 1, silo: "east" };
      await local.submit({
        ...job,
        jobName: "flo-fed-r1-east",
        command: `node -e "process.exit(3)"`,
        inputs: {},
        outputUri: join(root, "out"),
        timeoutSeconds: 30,
        tags: floJobTags(job),
      });
      // The job's only event is its final state (no "queued" event: the orchestration acts on final states only).
      const deadline = Date.now() + 30_000;
      while (ctx.published.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
      expect(ctx.published).toHaveLength(1);
      expect(parseJobEvent(ctx.published[0])).toMatchObject({ kind: "flo-job", backend: "local", federationId: "fed", round: 1, silo: "east", jobKind: "train", status: "failed" });
    } finally {
      instances.close();
    }
  });
});

describe("parseJobEvent tries each backend's parser", () => {
  const tags = floJobTags({ federationId: "fed", round: 2, silo: "west" });

  test("each event is read by its own backend and yields the same neutral fields", () => {
    const local = parseJobEvent(localJobEvent({ jobName: "flo-fed-r2-west", state: "completed", tags, id: "l1" }));
    const aml = parseJobEvent(
      runStatusChangedEvent({ workspaceId: azureMlWorkspaceId(SUBSCRIPTION, "rg", "mlw"), jobName: "flo-fed-r2-west", experimentName: "fed", tags, status: "completed", eventId: "a1" }),
    );
    const neutral = { kind: "flo-job", federationId: "fed", round: 2, silo: "west", jobKind: "train", jobName: "flo-fed-r2-west", status: "completed", correlatedBy: "tags" };
    expect(local).toMatchObject({ ...neutral, backend: "local", eventId: "l1" });
    expect(aml).toMatchObject({ ...neutral, backend: "azureml", eventId: "a1" });
  });
});
