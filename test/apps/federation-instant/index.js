// flo's real federation orchestrations (compiled, dist/) with instant activities: every silo job
// completes at submission and aggregation returns a summary shaped like the real one, with the URIs of
// an Azure deployment. For measuring what the orchestrations pass through Durable at large scale
// without training or storage.
const path = require("path");
const { createHash } = require("crypto");
const df = require("durable-functions");

const dist = path.join(__dirname, "..", "..", "..", "dist");
require(path.join(dist, "orchestrations", "federation.js"));
require(path.join(dist, "orchestrations", "siloGroup.js"));
require(path.join(dist, "orchestrations", "siloRound.js"));

// A storage account name of the maximal 24 characters, as a deployment's blob URIs carry it.
const CONTAINER = "https://flostorageacct0123456789.blob.core.windows.net/flo-models";
const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const federationFolder = (id) => `${CONTAINER}/federations/${id}`;

df.app.activity("submitSiloJob", {
  handler: (input) => ({
    jobName: `flo-${input.federationId}-r${input.round}-${input.silo}-a${input.attempt}`,
    state: "completed",
    rawStatus: "Completed",
    outputUri: `${federationFolder(input.federationId)}/rounds/${input.round}/updates/${input.silo}/`,
  }),
});
df.app.activity("getSiloJobStatus", { handler: (input) => ({ jobName: input.jobName, state: "completed", rawStatus: "Completed" }) });
df.app.activity("cancelSiloJob", { handler: () => undefined });
df.app.activity("notifyPartners", { handler: () => ({ sent: false }) });
df.app.activity("recordRoundFailure", { handler: (input) => ({ manifestUri: `${federationFolder(input.federationId)}/rounds/${input.round}/manifest.json` }) });

df.app.activity("finalizeFederation", {
  handler: (input) => ({
    finalModel: { ...input.lastModel, uri: `${federationFolder(input.federationId)}/final/model.safetensors` },
    lastModel: input.lastModel,
    selection: { round: input.lastRound, last: true, reason: "the last round's model (no evaluation.select)" },
    modelCardUri: `${federationFolder(input.federationId)}/final/model-card.md`,
  }),
});

df.app.activity("aggregateRound", {
  handler: (input) => {
    const succeeded = input.results.filter((r) => r.outcome === "succeeded");
    const folder = federationFolder(input.federationId);
    const model = { uri: `${folder}/rounds/${input.round + 1}/global/model.safetensors`, sha256: sha256(`${input.federationId}/${input.round}`), size: 4_000_000 };
    // More metrics than the status keeps, some with long names, with values of full double precision.
    const metrics = Object.fromEntries(["accuracy", "loss", "auc", "f1", "precision_at_recall_0_9_on_the_holdout_split", "num_batches"].map((name, i) => [name, Math.sin(input.round * 7 + i) / 3]));
    return {
      ok: true,
      summary: {
        round: input.round,
        model,
        manifestUri: `${folder}/rounds/${input.round}/manifest.json`,
        included: succeeded.map((r) => r.silo),
        excluded: input.results.filter((r) => r.outcome !== "succeeded").map((r) => ({ silo: r.silo, reason: r.reason ?? r.outcome })),
        metrics,
        globalMetrics: metrics,
        startedAt: input.roundStartedAt,
        aggregatedAt: input.roundStartedAt,
      },
      strategyState: { uri: `${folder}/rounds/${input.round}/state/strategy.json`, sha256: sha256(`state/${input.round}`) },
      checkpointUri: `${folder}/checkpoint.json`,
    };
  },
});
