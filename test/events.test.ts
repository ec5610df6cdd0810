import { RUN_COMPLETED, RUN_STATUS_CHANGED, azureMlWorkspaceId, runCompletedEvent, runStatusChangedEvent, toCloudEvent, type AzureMlJobEvent } from "../lib/compute/azureml/events";
import { parseJobEvent } from "../lib/compute/backends";
import { EventParseError } from "../lib/compute/jobEvents";
import { localJobEvent } from "../lib/compute/local/events";
import { floJobName, floJobTags, jobEventName, parseFloJobName } from "../lib/compute/siloCompute";

const WORKSPACE_ID = azureMlWorkspaceId("00000000-0000-0000-0000-0000000000aa", "rg-silo-eu", "mlw-silo-eu");
const FLO_TAGS = { floFederation: "fraud-2026", floRound: "3", floSilo: "eu-west", floApp: "flo" };

/** Verbatim shape of the docs' RunStatusChanged example, with flo's tags. */
function documentedEvent(overrides: Record<string, unknown> = {}, data: Record<string, unknown> = {}) {
  return {
    topic: WORKSPACE_ID,
    subject: "experiments/0fa9dfaa-cba3-4fa7-b590-23e48548f5c1/runs/flo-fraud-2026-r3-eu-west",
    eventType: "Microsoft.MachineLearningServices.RunStatusChanged",
    eventTime: "2026-11-28T07:41:00.9584103Z",
    id: "831e1650-001e-001b-66ab-eeb76e069631",
    data: {
      experimentId: "0fa9dfaa-cba3-4fa7-b590-23e48548f5c1",
      experimentName: "flo-fraud-2026",
      runId: "flo-fraud-2026-r3-eu-west",
      runType: null,
      runTags: FLO_TAGS,
      runProperties: { floFederation: "fraud-2026" },
      runStatus: "failed",
      ...data,
    },
    dataVersion: "",
    metadataVersion: "1",
    ...overrides,
  };
}

const expectedFailed: AzureMlJobEvent = {
  kind: "flo-job",
  federationId: "fraud-2026",
  round: 3,
  silo: "eu-west",
  jobKind: "train",
  backend: "azureml",
  jobName: "flo-fraud-2026-r3-eu-west",
  status: "failed",
  rawStatus: "failed",
  eventType: RUN_STATUS_CHANGED,
  eventId: "831e1650-001e-001b-66ab-eeb76e069631",
  eventTime: "2026-11-28T07:41:00.9584103Z",
  workspaceId: WORKSPACE_ID,
  experimentName: "flo-fraud-2026",
  correlatedBy: "tags",
  schema: "EventGridSchema",
};

describe("parseJobEvent: Event Grid schema", () => {
  test.each([
    ["object", (e: object) => e],
    ["string", (e: object) => JSON.stringify(e)],
    ["Buffer", (e: object) => Buffer.from(JSON.stringify(e))],
    ["Uint8Array", (e: object) => new Uint8Array(Buffer.from(JSON.stringify(e)))],
    ["one-element array", (e: object) => JSON.stringify([e])],
    ["string with BOM and whitespace", (e: object) => `\uFEFF  ${JSON.stringify(e)}\n`],
  ])("body as %s", (_label, encode) => {
    expect(parseJobEvent(encode(documentedEvent()))).toEqual(expectedFailed);
  });

  test("status words compare case-insensitively", () => {
    for (const [word, state] of [
      ["Completed", "completed"],
      ["COMPLETED", "completed"],
      ["running", "running"],
      ["Canceled", "canceled"],
      ["Queued", "queued"],
    ]) {
      const parsed = parseJobEvent(documentedEvent({}, { runStatus: word }));
      expect(parsed).toMatchObject({ kind: "flo-job", status: state, rawStatus: word });
    }
  });

  test("RunCompleted means completed (it has no runStatus)", () => {
    const event = documentedEvent({ eventType: RUN_COMPLETED });
    delete (event.data as { runStatus?: string }).runStatus;
    expect(parseJobEvent(event)).toEqual({ ...expectedFailed, eventType: RUN_COMPLETED, status: "completed", rawStatus: "Completed" });
  });

  test("without flo tags, the deterministic job name correlates (with the attempt suffix)", () => {
    const event = documentedEvent({}, { runTags: {}, runId: "flo-fraud-2026-r12-eu-west-a2", runStatus: "Completed" });
    expect(parseJobEvent(event)).toMatchObject({
      kind: "flo-job",
      federationId: "fraud-2026",
      round: 12,
      silo: "eu-west",
      attempt: 2,
      jobName: "flo-fraud-2026-r12-eu-west-a2",
      status: "completed",
      correlatedBy: "jobName",
    });
  });

  test("runId missing falls back to the subject's run id", () => {
    const event = documentedEvent({}, { runId: undefined, runTags: {} });
    expect(parseJobEvent(event)).toMatchObject({ kind: "flo-job", jobName: "flo-fraud-2026-r3-eu-west", correlatedBy: "jobName" });
  });

  test("a numeric round tag is accepted", () => {
    expect(parseJobEvent(documentedEvent({}, { runTags: { ...FLO_TAGS, floRound: 3 } }))).toMatchObject({ kind: "flo-job", round: 3 });
  });

  test("tag keys are matched case-insensitively", () => {
    const event = documentedEvent({}, { runTags: { flofederation: "fraud-2026", FLOROUND: "3", floSilo: "eu-west" } });
    expect(parseJobEvent(event)).toMatchObject({ kind: "flo-job", federationId: "fraud-2026", round: 3, silo: "eu-west", correlatedBy: "tags" });
  });
});

describe("parseJobEvent: CloudEvents schema", () => {
  test.each([
    ["object", (e: object) => e],
    ["string", (e: object) => JSON.stringify(e)],
    ["Buffer", (e: object) => Buffer.from(JSON.stringify(e))],
  ])("body as %s", (_label, encode) => {
    const cloudEvent = {
      specversion: "1.0",
      id: "831e1650-001e-001b-66ab-eeb76e069631",
      source: WORKSPACE_ID,
      subject: "experiments/0fa9dfaa-cba3-4fa7-b590-23e48548f5c1/runs/flo-fraud-2026-r3-eu-west",
      type: "Microsoft.MachineLearningServices.RunStatusChanged",
      time: "2026-11-28T07:41:00.9584103Z",
      data: documentedEvent().data,
    };
    expect(parseJobEvent(encode(cloudEvent))).toEqual({ ...expectedFailed, schema: "CloudEventSchemaV1_0" });
  });

  test("a CloudEvent with another specversion is rejected", () => {
    const cloudEvent = { ...toCloudEvent(runStatusChangedEvent({ workspaceId: WORKSPACE_ID, jobName: "flo-f-r1-s", experimentName: "flo-f", tags: {}, status: "completed" })), specversion: "0.3" };
    expect(() => parseJobEvent(cloudEvent)).toThrow('Invalid job event: specversion: expected "1.0", got "0.3"');
  });
});

describe("parseJobEvent: not ours", () => {
  test("a run of another application (no flo tags, foreign job name) is ignored", () => {
    const event = documentedEvent({}, { runTags: { team: "vision" }, runId: "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5" });
    expect(parseJobEvent(event)).toEqual({
      kind: "not-ours",
      reason: "job AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5 has no flo tags and its name is not a flo job name",
      eventType: RUN_STATUS_CHANGED,
      eventId: "831e1650-001e-001b-66ab-eeb76e069631",
      jobName: "AutoML_ad912b2d-6467-4f32-a616-dbe4af6dd8fc_5",
    });
  });

  test("a job tagged by another app with a flo-like name is ignored", () => {
    const event = documentedEvent({}, { runTags: { ...FLO_TAGS, floApp: "other" } });
    expect(parseJobEvent(event)).toMatchObject({ kind: "not-ours", reason: 'job flo-fraud-2026-r3-eu-west has floApp="other", not "flo"' });
  });

  test("other event types (model registered, subscription validation) are ignored", () => {
    expect(parseJobEvent(documentedEvent({ eventType: "Microsoft.MachineLearningServices.ModelRegistered" }))).toEqual({
      kind: "not-ours",
      reason: "event type Microsoft.MachineLearningServices.ModelRegistered is not an Azure ML run event",
      eventType: "Microsoft.MachineLearningServices.ModelRegistered",
      eventId: "831e1650-001e-001b-66ab-eeb76e069631",
    });
    const validation = {
      id: "v1",
      topic: "t",
      subject: "",
      eventType: "Microsoft.EventGrid.SubscriptionValidationEvent",
      eventTime: "2026-11-28T00:00:00Z",
      data: { validationCode: "x" },
      dataVersion: "1",
    };
    expect(parseJobEvent(validation)).toMatchObject({ kind: "not-ours" });
  });
});

describe("parseJobEvent: malformed bodies (dead-letter with the field path)", () => {
  function parseError(body: unknown): EventParseError {
    try {
      parseJobEvent(body);
    } catch (error) {
      expect(error).toBeInstanceOf(EventParseError);
      return error as EventParseError;
    }
    throw new Error("expected an EventParseError");
  }

  test.each([
    ["not JSON", "{oops", "(body)"],
    ["a number", 42, "(body)"],
    ["null", null, "(body)"],
    ["an array of two", [documentedEvent(), documentedEvent()], "(body)"],
    ["no id", documentedEvent({ id: undefined }), "id"],
    ["no topic", documentedEvent({ topic: undefined }), "topic"],
    ["data not an object", documentedEvent({ data: "x" }), "data"],
    ["runStatus missing on RunStatusChanged", documentedEvent({}, { runStatus: undefined }), "data.runStatus"],
    ["runId a number", documentedEvent({}, { runId: 7 }), "data.runId"],
    ["runTags an array", documentedEvent({}, { runTags: ["a"] }), "data.runTags"],
    ["floRound not an integer", documentedEvent({}, { runTags: { ...FLO_TAGS, floRound: "three" } }), "data.runTags.floRound"],
    ["floSilo missing while other flo tags exist", documentedEvent({}, { runTags: { floFederation: "f", floRound: "1" } }), "data.runTags.floSilo"],
  ])("%s", (_label, body, fieldPath) => {
    expect(parseError(body).fieldPath).toBe(fieldPath);
  });

  test("a body with no event type says what is missing", () => {
    expect(parseError({ id: "x", data: {} }).message).toBe("Invalid job event: eventType: expected a non-empty string, got nothing");
  });

  test("messages say expected vs got", () => {
    const error = parseError(documentedEvent({}, { runTags: { ...FLO_TAGS, floRound: "three" } }));
    expect(error.message).toBe('Invalid job event: data.runTags.floRound: expected a non-negative integer as a string, got "three"');
  });
});

describe("runStatusChangedEvent builder", () => {
  test("produces the Event Grid delivery shape, field for field, and round-trips through the parser", () => {
    const event = runStatusChangedEvent({
      workspaceId: WORKSPACE_ID,
      jobName: "flo-fraud-2026-r3-eu-west",
      experimentName: "flo-fraud-2026",
      tags: FLO_TAGS,
      status: "completed",
      eventId: "evt-1",
      eventTime: "2026-11-28T07:41:00.000Z",
    });
    expect(Object.keys(event)).toEqual(["topic", "subject", "eventType", "eventTime", "id", "data", "dataVersion", "metadataVersion"]);
    expect(event).toEqual({
      topic: WORKSPACE_ID,
      subject: `experiments/${event.data.experimentId}/runs/flo-fraud-2026-r3-eu-west`,
      eventType: RUN_STATUS_CHANGED,
      eventTime: "2026-11-28T07:41:00.000Z",
      id: "evt-1",
      data: {
        experimentId: event.data.experimentId,
        experimentName: "flo-fraud-2026",
        runId: "flo-fraud-2026-r3-eu-west",
        runType: null,
        runTags: FLO_TAGS,
        runProperties: {},
        runStatus: "Completed",
      },
      dataVersion: "",
      metadataVersion: "1",
    });
    expect(event.data.experimentId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    // Same experiment, same GUID (Azure ML keeps one id per experiment).
    expect(runStatusChangedEvent({ workspaceId: WORKSPACE_ID, jobName: "x", experimentName: "flo-fraud-2026", tags: {}, status: "Running" }).data.experimentId).toBe(event.data.experimentId);

    const parsed = parseJobEvent(Buffer.from(JSON.stringify(event)));
    expect(parsed).toMatchObject({ kind: "flo-job", federationId: "fraud-2026", round: 3, silo: "eu-west", status: "completed", rawStatus: "Completed", eventId: "evt-1", workspaceId: WORKSPACE_ID });
    expect(parseJobEvent(toCloudEvent(event))).toMatchObject({ kind: "flo-job", status: "completed", schema: "CloudEventSchemaV1_0" });
  });

  test("JobStates and Azure ML status words both work; RunCompleted has no runStatus", () => {
    const base = { workspaceId: WORKSPACE_ID, jobName: "flo-f-r1-s", experimentName: "flo-f", tags: {} };
    expect(runStatusChangedEvent({ ...base, status: "failed" }).data.runStatus).toBe("Failed");
    expect(runStatusChangedEvent({ ...base, status: "canceled" }).data.runStatus).toBe("Canceled");
    expect(runStatusChangedEvent({ ...base, status: "Finalizing" }).data.runStatus).toBe("Finalizing");
    const completed = runCompletedEvent(base);
    expect(completed.eventType).toBe(RUN_COMPLETED);
    expect("runStatus" in completed.data).toBe(false);
    expect(parseJobEvent(completed)).toMatchObject({ kind: "flo-job", federationId: "f", round: 1, silo: "s", status: "completed", correlatedBy: "jobName" });
    const running = { ...base, status: "running" as const };
    expect(runStatusChangedEvent(running).id).not.toBe(runStatusChangedEvent(running).id);
  });
});

describe("parseFloJobName", () => {
  test.each([
    ["flo-fraud-r1-eu", { federationId: "fraud", round: 1, silo: "eu", kind: "train" }],
    ["flo-fraud-2026-r10-eu-west", { federationId: "fraud-2026", round: 10, silo: "eu-west", kind: "train" }],
    ["flo-fraud-r0-eu-a3", { federationId: "fraud", round: 0, silo: "eu", attempt: 3, kind: "train" }],
    // A dash is part of the silo name: this is silo "east-eval"'s training job.
    ["flo-fraud-r5-east-eval", { federationId: "fraud", round: 5, silo: "east-eval", kind: "train" }],
  ])("%s", (name, parts) => {
    expect(parseFloJobName(name)).toEqual(parts);
  });
  test.each([
    "fraud-r1-eu",
    "flo-fraud-eu",
    "flo--r1-",
    "AutoML_ad912b2d_5",
    "flo-fraud-rx-eu",
    // "_" only ever separates a job kind, and these kinds do not exist:
    "flo-my_fed-r2-silo_1",
    "flo-fraud-r5-east_eval",
    // training names carry no kind suffix
    "flo-fraud-r5-east_train",
  ])("%s is not a flo job name", (name) => {
    expect(parseFloJobName(name)).toBeUndefined();
  });
});

describe("job kinds in names, tags and event names", () => {
  test("training job names, tags and completion events are the contract's", () => {
    const job = { federationId: "fraud-demo", round: 3, silo: "east" };
    expect(floJobName(job)).toBe("flo-fraud-demo-r3-east");
    expect(floJobName({ ...job, attempt: 2, kind: "train" })).toBe("flo-fraud-demo-r3-east-a2");
    expect(floJobTags(job)).toEqual({ floFederation: "fraud-demo", floRound: "3", floSilo: "east", floKind: "train", floApp: "flo" });
    expect(jobEventName(job)).toBe("silo-done:3:east");
  });

  test("names read back to their parts when no part looks like `-r<n>-` or `-a<n>`", () => {
    for (const federationId of ["f", "fraud-2026"]) {
      for (const silo of ["east", "east-eval", "eu-west-2"]) {
        for (const attempt of [1, 2, 17]) {
          const parsed = parseFloJobName(floJobName({ federationId, round: 4, silo, attempt }));
          expect(parsed).toEqual({ federationId, round: 4, silo, kind: "train", ...(attempt > 1 ? { attempt } : {}) });
        }
      }
    }
  });

  test("a name that reads two ways is settled by the job's tags, the primary correlation", () => {
    // Silo "r2-a2" of federation "f" in round 4: by name alone, federation "f-r4", round 2, silo "a2".
    const jobName = floJobName({ federationId: "f", round: 4, silo: "r2-a2" });
    expect(parseFloJobName(jobName)).toMatchObject({ federationId: "f-r4", round: 2 });
    const event = localJobEvent({ jobName, state: "completed", tags: floJobTags({ federationId: "f", round: 4, silo: "r2-a2" }) });
    expect(parseJobEvent(event)).toMatchObject({ federationId: "f", round: 4, silo: "r2-a2", correlatedBy: "tags" });
  });

  test("an unknown kind is refused when naming a job", () => {
    expect(() => floJobName({ federationId: "f", round: 1, silo: "s", kind: "eval" as never })).toThrow('floJobName: kind must be one of train, unmask, evaluate, got "eval"');
  });

  test("an event whose floKind tag is unknown is dead-lettered with the field path", () => {
    const event = runStatusChangedEvent({ workspaceId: WORKSPACE_ID, jobName: "flo-f-r1-s", experimentName: "f", tags: { ...FLO_TAGS, floKind: "sideways" }, status: "completed" });
    expect(() => parseJobEvent(event)).toThrow('Invalid job event: data.runTags.floKind: expected one of train, unmask, evaluate, got "sideways"');
  });
});

describe("parseJobEvent: local backend events", () => {
  const tags = floJobTags({ federationId: "fraud-demo", round: 2, silo: "west" });

  test("a local job event is read by the local parser, tags first", () => {
    const event = localJobEvent({ jobName: "flo-fraud-demo-r2-west-a2", state: "failed", tags, id: "e1", time: new Date("2026-12-01T10:00:00Z") });
    expect(parseJobEvent(Buffer.from(JSON.stringify(event)))).toEqual({
      kind: "flo-job",
      federationId: "fraud-demo",
      round: 2,
      silo: "west",
      jobKind: "train",
      attempt: 2,
      jobName: "flo-fraud-demo-r2-west-a2",
      status: "failed",
      rawStatus: "failed",
      eventId: "e1",
      eventTime: "2026-12-01T10:00:00.000Z",
      backend: "local",
      correlatedBy: "tags",
    });
  });

  test("without tags the job name correlates", () => {
    const event = localJobEvent({ jobName: "flo-fraud-demo-r2-west", state: "completed", tags: {} });
    expect(parseJobEvent(event)).toMatchObject({ kind: "flo-job", federationId: "fraud-demo", round: 2, silo: "west", correlatedBy: "jobName", backend: "local" });
  });

  test("a malformed local event names the field", () => {
    const event = { ...localJobEvent({ jobName: "flo-f-r1-s", state: "completed", tags }), state: "done" };
    expect(() => parseJobEvent(event)).toThrow('Invalid job event: state: expected one of queued, running, completed, failed, canceled, got "done"');
  });
});
