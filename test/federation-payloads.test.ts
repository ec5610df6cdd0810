/**
 * What the federation passes through Durable Functions stays bounded: flo's real orchestrators
 * (dist/) run on the embedded Durable engine with instant activities (test/apps/federation-instant),
 * and a recording store captures every payload the engine persists (each episode's custom status,
 * each execution's input, every history event's input or result). A long federation (200 rounds) and
 * a wide one (2,000 silos) must keep every custom status within the extension's 16 KB and nothing
 * may grow with the rounds.
 */
import { join, resolve } from "node:path";
import { loadFunctionsApp, type FunctionRegistry } from "../lib/runtime/functionsCore";
import { createInvoker } from "../lib/runtime/invoke";
import { VirtualClock } from "../lib/runtime/clock";
import { DurableEngine } from "../lib/runtime/durable/engine";
import { InMemoryDurableStore, type EpisodeRecord, type InstanceRecord } from "../lib/runtime/durable/store";
import { durablePayloadBytes, fitCustomStatus, MAX_CUSTOM_STATUS_BYTES, MAX_DIGEST_METRICS, RECENT_ROUNDS, recentRounds, roundDigest } from "../lib/federation/payloads";
import type { FederationRunInput, FederationStatus, FederationSummary, RoundDigest, RoundSummary } from "../lib/federation/types";

const REPO = resolve(__dirname, "..");
// The longest federation id the API accepts: the ids are in every URI and instance id.
const LONG_ID = `f${"0123456789abcdef".repeat(4).slice(0, 63)}`;

interface Recorded {
  /** Every custom status the engine stored for the federation instance, as stored (JSON text), with its round. */
  statuses: { round: number; text: string }[];
  /** Every execution input of the federation instance (one per round: start and each continueAsNew). */
  inputs: { round: number; text: string }[];
  /** The largest custom status of any other instance (siloGroup, siloRound). */
  largestOtherStatus: number;
  /** Per federation execution (round), the largest input or result of its history events. */
  largestEventPayload: Map<number, number>;
  output?: string;
}

/** An in-memory Durable store that records the payloads the engine persists. */
class RecordingStore extends InMemoryDurableStore {
  readonly recorded: Recorded = { statuses: [], inputs: [], largestOtherStatus: 0, largestEventPayload: new Map() };
  private readonly executionRound = new Map<string, number>();

  constructor(private readonly federationId: string) {
    super();
  }

  override async putInstance(instance: InstanceRecord): Promise<void> {
    if (instance.instanceId === this.federationId) {
      const input = JSON.parse(instance.input ?? "null") as FederationRunInput;
      this.executionRound.set(instance.executionId, input.round);
      const last = this.recorded.inputs.at(-1);
      if (last?.text !== instance.input) this.recorded.inputs.push({ round: input.round, text: instance.input! });
      if (instance.customStatus !== null && this.recorded.statuses.at(-1)?.text !== instance.customStatus) {
        this.recorded.statuses.push({ round: input.round, text: instance.customStatus });
      }
      if (instance.output !== null) this.recorded.output = instance.output;
    } else if (instance.customStatus !== null) {
      this.recorded.largestOtherStatus = Math.max(this.recorded.largestOtherStatus, instance.customStatus.length * 2);
    }
    return super.putInstance(instance);
  }

  override async appendEpisode(episode: EpisodeRecord): Promise<void> {
    if (episode.instanceId === this.federationId) {
      const round = this.executionRound.get(episode.executionId) ?? episode.instanceAfter.generation + 1;
      for (const event of episode.events) {
        const payload = [event.Input, event.Result].filter((p): p is string => typeof p === "string");
        for (const text of payload) this.recorded.largestEventPayload.set(round, Math.max(this.recorded.largestEventPayload.get(round) ?? 0, text.length * 2));
      }
    }
    return super.appendEpisode(episode);
  }
}

let registry: FunctionRegistry;
beforeAll(() => {
  // appRoot: the whole repo, so this worker loads (and registers) flo's orchestrators afresh.
  registry = loadFunctionsApp(join(REPO, "test", "apps", "federation-instant", "index.js"), { appRoot: REPO });
});

/** Runs one federation to its end on a virtual clock; returns what the store recorded. */
async function runFederation(options: { silos: string[]; rounds: number }): Promise<{ recorded: Recorded; runtimeStatus: string; output: FederationSummary }> {
  const store = new RecordingStore(LONG_ID);
  const engine = await DurableEngine.start({ invoker: createInvoker(registry), clock: new VirtualClock(Date.parse("2026-01-01T00:00:00Z")), store, logger: () => undefined });
  const input: FederationRunInput = {
    federationId: LONG_ID,
    spec: { uri: `https://flostorageacct0123456789.blob.core.windows.net/flo-models/federations/${LONG_ID}/spec.json`, sha256: "a".repeat(64), size: 4096 },
    rounds: options.rounds,
    round: 1,
    silos: options.silos,
    policy: { minSilos: 1, sampleFraction: 1, roundTimeoutSeconds: 3600, jobRetries: 2, statusPollSeconds: 60 },
    recent: [],
    startedAt: "2026-01-01T00:00:00.000Z",
  };
  try {
    await engine.startNew("federation", { instanceId: LONG_ID, input });
    await engine.whenIdle();
    const status = engine.getStatus(LONG_ID)!;
    return { recorded: store.recorded, runtimeStatus: status.runtimeStatus, output: status.output as FederationSummary };
  } finally {
    await engine.stop();
  }
}

const maxBytes = (texts: { text: string }[]) => Math.max(...texts.map((t) => t.text.length * 2));
const between = <T extends { round: number }>(list: T[], from: number, to: number) => list.filter((x) => x.round >= from && x.round <= to);

describe("a federation of 200 rounds x 3 silos", () => {
  let run: Awaited<ReturnType<typeof runFederation>>;
  beforeAll(async () => {
    run = await runFederation({ silos: ["east", "west", "north"], rounds: 200 });
  }, 240_000);

  it("completes, with an output that points at the history instead of carrying it", () => {
    expect(run.runtimeStatus).toBe("Completed");
    expect(run.output.rounds).toBe(200);
    expect(run.output.historyUri).toBe(`https://flostorageacct0123456789.blob.core.windows.net/flo-models/federations/${LONG_ID}/checkpoint.json`);
    expect(run.output.lastRound).toMatchObject({ round: 200, included: 3, excluded: 0, modelSha256: run.output.finalModel.sha256 });
    expect(run.recorded.output!.length * 2).toBeLessThan(4096);
  });

  it("keeps every custom status under 16 KB and flat across rounds", () => {
    const { statuses } = run.recorded;
    // training, aggregating and completed (or continued) of every round
    expect(new Set(statuses.map((s) => s.round)).size).toBe(200);
    expect(statuses.length).toBeGreaterThanOrEqual(400);
    for (const s of statuses) {
      // the guard measures a payload as the host does: the stored JSON text's UTF-16 size
      expect(durablePayloadBytes(JSON.parse(s.text))).toBe(s.text.length * 2);
      expect(s.text.length * 2).toBeLessThanOrEqual(MAX_CUSTOM_STATUS_BYTES);
    }
    // Once the tail is full (round 4), only the digits of round numbers and metric values can vary.
    expect(maxBytes(between(statuses, 101, 200)) - maxBytes(between(statuses, 11, 100))).toBeLessThan(200);
    expect(maxBytes(statuses)).toBeLessThan(6 * 1024);
  });

  it("shows the last rounds, compact, in the final status", () => {
    const last = JSON.parse(run.recorded.statuses.at(-1)!.text) as FederationStatus;
    expect(last).toMatchObject({ round: 200, rounds: 200, phase: "completed", counts: { sampled: 3, succeeded: 3, failed: 0, late: 0 } });
    expect(last.recent.map((d) => d.round)).toEqual([198, 199, 200]);
    expect(last.recent[2]).toMatchObject({ modelSha256: run.output.finalModel.sha256, included: 3, excluded: 0, manifestUri: expect.stringMatching(/\/rounds\/200\/manifest\.json$/) });
    expect(Object.keys(last.recent[2].metrics)).toEqual(["accuracy", "auc", "f1", "loss"]);
    expect(last.links).toEqual({ checkpoint: run.output.historyUri, manifest: last.recent[2].manifestUri });
  });

  it("keeps every execution input and every history payload flat across rounds", () => {
    const { inputs, largestEventPayload } = run.recorded;
    expect(inputs.map((i) => i.round)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    const round1 = inputs[0].text.length * 2;
    // the tail of rounds, the global model, the strategy state and the checkpoint: long URIs, a fixed number of them
    expect(maxBytes(inputs)).toBeLessThan(round1 + 8192);
    expect(maxBytes(between(inputs, 101, 200)) - maxBytes(between(inputs, 11, 100))).toBeLessThan(200);
    const largest = (from: number, to: number) => Math.max(...[...largestEventPayload].filter(([r]) => r >= from && r <= to).map(([, bytes]) => bytes));
    expect(largest(101, 200) - largest(11, 100)).toBeLessThan(200);
    expect(largest(1, 200)).toBeLessThan(8 * 1024);
  });
});

describe("one round with 2,000 silos", () => {
  const silos = Array.from({ length: 2000 }, (_, i) => `partner-silo-${String(i).padStart(4, "0")}`);
  let run: Awaited<ReturnType<typeof runFederation>>;
  beforeAll(async () => {
    run = await runFederation({ silos, rounds: 1 });
  }, 300_000);

  it("completes with every custom status under 16 KB, whatever the instance", () => {
    expect(run.runtimeStatus).toBe("Completed");
    expect(run.output.lastRound).toMatchObject({ round: 1, included: 2000, excluded: 0 });
    const { statuses } = run.recorded;
    expect(statuses.map((s) => (JSON.parse(s.text) as FederationStatus).phase)).toEqual(["training", "aggregating", "finalizing", "completed"]);
    expect(JSON.parse(statuses[3].text)).toMatchObject({ counts: { sampled: 2000, succeeded: 2000, failed: 0, late: 0 } });
    expect(maxBytes(statuses)).toBeLessThan(4 * 1024);
    expect(run.recorded.largestOtherStatus).toBeGreaterThan(0);
    expect(run.recorded.largestOtherStatus).toBeLessThanOrEqual(MAX_CUSTOM_STATUS_BYTES);
  });

  it("has an input that is the silo list plus a constant", () => {
    const [input] = run.recorded.inputs;
    const siloListBytes = durablePayloadBytes(silos);
    expect(input.text.length * 2).toBeGreaterThan(siloListBytes);
    expect(input.text.length * 2).toBeLessThan(siloListBytes + 2048);
  });
});

describe("the payload guard", () => {
  const summary = (round: number, metricNames: string[]): RoundSummary => ({
    round,
    model: { uri: `https://x/r${round}/model.safetensors`, sha256: "b".repeat(64) },
    manifestUri: `https://x/r${round}/manifest.json`,
    included: ["a", "b"],
    excluded: [{ silo: "c", reason: "job failed" }],
    metrics: Object.fromEntries(metricNames.map((n, i) => [n, i])),
    globalMetrics: { loss: 0.5 },
    startedAt: "2026-01-01T00:00:00.000Z",
    aggregatedAt: "2026-01-01T00:01:00.000Z",
  });

  it("counts UTF-16 code units of the JSON text, 2 bytes each", () => {
    expect(durablePayloadBytes({ a: "x" })).toBe('{"a":"x"}'.length * 2);
    // é is one UTF-16 unit, an emoji two (a surrogate pair), whatever their UTF-8 size
    expect(durablePayloadBytes("é")).toBe(6);
    expect(durablePayloadBytes("😀")).toBe(8);
    expect(durablePayloadBytes(undefined)).toBe(0);
  });

  it("digests a round into counts and at most a few metrics", () => {
    const digest = roundDigest(summary(7, ["z", "y", "x", "w", "v", "u"]));
    expect(digest).toEqual({
      round: 7,
      modelSha256: "b".repeat(64),
      manifestUri: "https://x/r7/manifest.json",
      included: 2,
      excluded: 1,
      metrics: { u: 5, v: 4, w: 3, x: 2 },
      globalMetrics: { loss: 0.5 },
    });
    expect(Object.keys(digest.metrics)).toHaveLength(MAX_DIGEST_METRICS);
  });

  it("keeps the last rounds, oldest first, without duplicating a re-run round", () => {
    let recent: RoundDigest[] = [];
    for (const round of [1, 2, 3, 4, 5]) recent = recentRounds(recent, roundDigest(summary(round, ["loss"])));
    expect(recent.map((d) => d.round)).toEqual([3, 4, 5]);
    expect(recentRounds(recent, roundDigest(summary(5, ["loss"]))).map((d) => d.round)).toEqual([3, 4, 5]);
    expect(recent).toHaveLength(RECENT_ROUNDS);
  });

  it("trims an oversized status: metrics first, then the oldest rounds", () => {
    const huge = (round: number, nameLength: number): RoundDigest => ({
      ...roundDigest(summary(round, ["loss"])),
      metrics: { ["m".repeat(nameLength)]: 1 },
    });
    const base: FederationStatus = { round: 4, rounds: 9, phase: "training", roundStartedAt: "2026-01-01T00:00:00.000Z", counts: { sampled: 3 }, recent: [], links: {} };
    const small = { ...base, recent: [huge(1, 10), huge(2, 10), huge(3, 10)] };
    expect(fitCustomStatus(small)).toBe(small);

    const longNames = { ...base, recent: [huge(1, 3000), huge(2, 3000), huge(3, 3000)] };
    const fitted = fitCustomStatus(longNames);
    expect(fitted.recent.map((d) => [d.round, d.metrics, d.globalMetrics])).toEqual([
      [1, {}, {}],
      [2, {}, {}],
      [3, {}, {}],
    ]);

    const longUris = { ...base, recent: [1, 2, 3].map((round) => ({ ...huge(round, 1), manifestUri: `https://x/${"u".repeat(5000)}` })) };
    const trimmed = fitCustomStatus(longUris);
    expect(trimmed.recent.map((d) => d.round)).toEqual([3]);
    expect(durablePayloadBytes(trimmed)).toBeLessThanOrEqual(MAX_CUSTOM_STATUS_BYTES);
    expect(durablePayloadBytes(longUris)).toBeGreaterThan(MAX_CUSTOM_STATUS_BYTES);
  });
});
