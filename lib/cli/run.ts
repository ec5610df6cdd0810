/**
 * `flo run <spec>`: runs a whole federation on this machine. Starts the embedded runtime (flo's
 * Functions app on `flo host`, Azurite, local silo jobs), submits the spec through the HTTP API like
 * any client would, shows live progress per round and silo, then writes the final model, all round
 * manifests and an HTML report to `--out`.
 */
import type { Command } from "commander";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { extname, join, resolve } from "node:path";
// Types only at the top: the spec schema (zod), the runtime (Azurite, Azure SDKs), the model store and
// the report load inside the command (`loadRunModules`), so `flo --help` does not pay for them.
import type { LocalHost } from "../runtime/host";
import type { Baselines } from "../report/html";
import type { FederationServices } from "../federation/services";
import type { RoundManifest } from "../federation/manifest";
import type { FederationSummary, RoundSummary } from "../federation/types";

export interface RunOptions {
  out?: string;
  /** Runtime data folder (Azurite, job folders); default: a temporary folder removed afterwards. */
  data?: string;
  port?: number;
  baselines?: string;
  /** Where progress lines go (default stdout). */
  print?: (line: string) => void;
  /** Show animated progress bars (default: when stdout is a TTY). */
  bars?: boolean;
  pollIntervalMs?: number;
}

export interface RunResult {
  federationId: string;
  runtimeStatus: string;
  outDir: string;
  modelPath?: string;
  reportPath: string;
  manifests: RoundManifest[];
  failure?: string;
}

const APP_ENTRY = resolve(__dirname, "..", "..", "functions", "index.js");

interface StatusBody {
  runtimeStatus: string;
  round?: number;
  rounds?: number;
  phase?: string;
  silos?: { silo: string; state?: string; outcome?: string; attempt?: number }[];
  history?: RoundSummary[];
  output?: FederationSummary;
  failure?: unknown;
}

/** The modules `flo run` needs, loaded when it runs. */
async function loadRunModules() {
  const [spec, runtime, store, settings, report, manifests, card] = await Promise.all([
    import("../spec"),
    import("../runtime/host"),
    import("../models/store"),
    import("../federation/settings"),
    import("../report/html"),
    import("../report/load"),
    import("../federation/modelCard"),
  ]);
  return {
    loadSpecFile: spec.loadSpecFile,
    startLocalHost: runtime.startLocalHost,
    ModelStore: store.ModelStore,
    modelContainerFromSettings: settings.modelContainerFromSettings,
    renderReport: report.renderReport,
    loadManifests: manifests.loadManifests,
    loadEvaluations: manifests.loadEvaluations,
    finalModelComparison: report.finalModelComparison,
    modelCardFiles: [card.MODEL_CARD_MARKDOWN, card.MODEL_CARD_JSON],
  };
}

export async function runFederation(specPath: string, options: RunOptions = {}): Promise<RunResult> {
  const print = options.print ?? ((line: string) => console.log(line));
  const { loadSpecFile, startLocalHost, ModelStore, modelContainerFromSettings, renderReport, loadManifests, loadEvaluations, finalModelComparison, modelCardFiles } = await loadRunModules();
  const spec = await loadSpecFile(specPath); // fails fast, with every error and its field path
  const outDir = resolve(options.out ?? join("out", spec.name));
  const dataDir = options.data ? resolve(options.data) : mkdtempSync(join(tmpdir(), "flo-run-"));
  const started = Date.now();
  let host: LocalHost | undefined;
  try {
    host = await startLocalHost({
      appEntry: APP_ENTRY,
      port: options.port ?? 0,
      dataDir,
      storage: options.data ? "persisted" : "memory",
      settings: { FLO_LOCAL_COMPUTE: "enabled", FLO_LOCAL_JOBS_DIR: join(dataDir, "jobs"), FLO_LOCAL_BASE_DIR: process.cwd() },
      log: () => undefined,
    });
    print(
      `flo: local runtime up at ${host.url} (${((Date.now() - started) / 1000).toFixed(1)} s); federation ${spec.name}: ${spec.rounds} round(s), ${spec.silos.length} silo(s), strategy ${spec.aggregation.strategy}`,
    );
    const api = (path: string, init?: RequestInit) => fetch(`${host!.url}/api/${path}`, { ...init, headers: { "x-functions-key": host!.functionKey, ...(init?.headers ?? {}) } });
    const text = readFileSync(specPath, "utf8");
    const contentType = extname(specPath).toLowerCase() === ".json" ? "application/json" : "application/yaml";
    const startResponse = await api("federations", { method: "POST", body: text, headers: { "content-type": contentType } });
    const startBody = (await startResponse.json()) as { id?: string; detail?: string };
    if (startResponse.status !== 202 || !startBody.id) throw new Error(`the federation did not start (HTTP ${startResponse.status}): ${startBody.detail ?? JSON.stringify(startBody)}`);
    const id = startBody.id;

    const final = await followProgress(id, spec.rounds, api, print, options);
    const store = ModelStore.fromConnectionString(host.storageConnectionString, modelContainerFromSettings(process.env));
    const manifests = await loadManifests({ store } as FederationServices, id);
    const evaluations = await loadEvaluations({ store } as FederationServices, id);
    mkdirSync(outDir, { recursive: true });
    writeFileSync(join(outDir, "rounds.json"), JSON.stringify(manifests, null, 2) + "\n");
    writeFileSync(join(outDir, "evaluation.json"), JSON.stringify(evaluations, null, 2) + "\n");
    let modelPath: string | undefined;
    const output = final.runtimeStatus === "Completed" ? final.output : undefined;
    if (output) {
      modelPath = join(outDir, "model.safetensors");
      await store.downloadToFile(store.pathFromUri(output.finalModel.uri), modelPath);
      // The last round's model is kept beside the delivered one (they differ when evaluation.select chose).
      if (output.lastModel) await store.downloadToFile(store.pathFromUri(output.lastModel.uri), join(outDir, "model-last.safetensors"));
      const finalFolderUri = output.finalModel.uri.slice(0, output.finalModel.uri.lastIndexOf("/") + 1);
      for (const name of modelCardFiles) if (output.modelCardUri) await store.downloadToFile(store.pathFromUri(`${finalFolderUri}${name}`), join(outDir, name));
    }
    const baselines = options.baselines && existsSync(options.baselines) ? (JSON.parse(readFileSync(options.baselines, "utf8")) as Baselines) : undefined;
    const reportPath = join(outDir, "report.html");
    const reportInput = { federationId: id, runtimeStatus: final.runtimeStatus, manifests, evaluations, selection: output?.selection, baselines };
    writeFileSync(reportPath, renderReport(reportInput));
    printSummary(manifests, print);
    printFinalModel(finalModelComparison(reportInput), output, print);
    const failure = final.runtimeStatus === "Completed" ? undefined : typeof final.failure === "string" ? final.failure : JSON.stringify(final.failure);
    print(`flo: ${final.runtimeStatus.toLowerCase()} in ${((Date.now() - started) / 1000).toFixed(1)} s${failure ? `: ${failure}` : ""}`);
    if (modelPath && output) {
      const chosen =
        output.selection && !output.selection.last ? `, round ${output.selection.round}'s model chosen by ${output.selection.metric ?? "selection"}; the last round's is model-last.safetensors` : "";
      print(`flo: final model ${modelPath} (sha256 ${output.finalModel.sha256}${chosen})`);
      if (output.modelCardUri) print(`flo: model card ${join(outDir, modelCardFiles[0])}`);
    }
    print(`flo: report ${reportPath}`);
    print(`flo: round manifests ${join(outDir, "rounds.json")}`);
    if (evaluations.length > 0) print(`flo: evaluation manifests ${join(outDir, "evaluation.json")}`);
    return { federationId: id, runtimeStatus: final.runtimeStatus, outDir, modelPath, reportPath, manifests, failure };
  } finally {
    await host?.stop();
    if (!options.data) rmSync(dataDir, { recursive: true, force: true });
  }
}

async function followProgress(id: string, rounds: number, api: (path: string) => Promise<Response>, print: (line: string) => void, options: RunOptions): Promise<StatusBody> {
  const bars = options.bars ?? Boolean(process.stdout.isTTY);
  const { MultiBar, Presets } = await import("cli-progress");
  const multi = bars ? new MultiBar({ format: "{name} |{bar}| {value}/{total} {info}", hideCursor: true, clearOnComplete: false }, Presets.shades_classic) : undefined;
  const roundBar = multi?.create(rounds, 0, { name: "rounds".padEnd(10), info: "" });
  const roundStart = new Map<number, number>();
  const seen = new Map<string, string>();
  const log = (line: string) => (multi ? multi.log(`${line}\n`) : print(line));
  try {
    for (;;) {
      const response = await api(`federations/${encodeURIComponent(id)}`);
      const status = (await response.json()) as StatusBody;
      const round = status.round ?? 0;
      if (!roundStart.has(round)) roundStart.set(round, Date.now());
      const elapsed = ((Date.now() - (roundStart.get(round) ?? Date.now())) / 1000).toFixed(1);
      // While evaluating, the silos listed are the evaluation jobs of the round's output, not its training jobs.
      const job = status.phase === "evaluating" ? "evaluation " : "";
      for (const s of status.silos ?? []) {
        const state = s.outcome ?? s.state ?? "pending";
        const key = `${round}:${job}${s.silo}`;
        if (seen.get(key) !== state) {
          seen.set(key, state);
          log(`round ${round} silo ${s.silo.padEnd(12)} ${job}${state}${s.attempt && s.attempt > 1 ? ` (attempt ${s.attempt})` : ""} after ${elapsed} s`);
        }
      }
      for (const h of status.history ?? []) {
        const key = `done:${h.round}`;
        if (!seen.has(key)) {
          seen.set(key, "1");
          log(`round ${h.round} aggregated: ${h.included.length}/${h.included.length + h.excluded.length} silos; ${formatMetrics(h.globalMetrics, "global ")}${formatMetrics(h.metrics, "trained ")}`);
        }
      }
      roundBar?.update(status.history?.length ?? 0, { info: `round ${round} ${status.phase ?? ""} ${elapsed}s` });
      if (["Completed", "Failed", "Terminated", "Canceled"].includes(status.runtimeStatus)) return status;
      await new Promise((r) => setTimeout(r, options.pollIntervalMs ?? 400));
    }
  } finally {
    multi?.stop();
  }
}

function formatMetrics(metrics: Record<string, number> | undefined, prefix: string): string {
  const entries = Object.entries(metrics ?? {});
  return entries.length ? `${entries.map(([k, v]) => `${prefix}${k}=${v.toFixed(4)}`).join(" ")} ` : "";
}

function printSummary(manifests: RoundManifest[], print: (line: string) => void): void {
  const metricNames = [...new Set(manifests.flatMap((m) => Object.keys(m.globalMetrics).concat(Object.keys(m.metrics))))].slice(0, 3);
  const header = ["round", "status", "silos", ...metricNames.map((m) => `global ${m}`), ...metricNames.map((m) => `trained ${m}`), "seconds"];
  const rows = manifests.map((m) => [
    String(m.round),
    m.status,
    `${m.silos.filter((s) => s.included).length}/${m.silos.length}`,
    ...metricNames.map((n) => (m.globalMetrics[n] !== undefined ? m.globalMetrics[n].toFixed(4) : "-")),
    ...metricNames.map((n) => (m.metrics[n] !== undefined ? m.metrics[n].toFixed(4) : "-")),
    m.timings.aggregatedAt ? ((Date.parse(m.timings.aggregatedAt) - Date.parse(m.timings.roundStartedAt)) / 1000).toFixed(1) : "-",
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  print(line(header));
  for (const r of rows) print(line(r));
  for (const m of manifests) for (const s of m.silos) if (!s.included) print(`  round ${m.round}: ${s.silo} excluded: ${s.reason ?? s.outcome}`);
}

/** The delivered model's test metric per silo and weighted, beside the baselines on the same rows with the same weights. */
function printFinalModel(table: ReturnType<ReportModules["finalModelComparison"]>, output: FederationSummary | undefined, print: (line: string) => void): void {
  if (!output) return;
  if (!table) {
    print(output.finalEvaluation ? "final model: its evaluation did not reach the quorum" : "final model: not evaluated (the spec has no evaluation section)");
    return;
  }
  const selection = output.selection;
  const chosen = selection?.metric ? `; chosen by ${selection.metric} (${selection.mode}) = ${selection.value?.toFixed(4)}, biased upward by the choice` : "";
  print(`final model: round ${table.round}'s${selection?.last ? " (the last round)" : ""}${chosen}; held-out ${table.metric} per silo beside the baselines, on the same rows:`);
  const cell = (v: number | undefined) => (v === undefined ? "-" : v.toFixed(4));
  const header = ["silo", "rows", `federated ${table.metric}`, "centralized", "local-only (own model)"];
  const rows = table.rows.map((r) => [r.silo, String(r.numExamples ?? "-"), cell(r.federated), cell(r.centralized), cell(r.localOnly)]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i])).join("  ");
  print(line(header));
  for (const r of rows) print(line(r));
}

type ReportModules = Awaited<ReturnType<typeof loadRunModules>>;

export function register(command: Command): void {
  command
    .argument("<spec>", "federation spec (YAML or JSON)")
    .option("--out <dir>", "output folder (default out/<name>/)")
    .option("--data <dir>", "keep the runtime's data (Azurite, job folders) in this folder")
    .option("--port <port>", "HTTP port of the local runtime (default: a free port)", (v) => Number.parseInt(v, 10))
    .option("--baselines <file>", "baselines JSON shown in the report (local-only and centralized results)")
    .action(async (specPath: string, opts: { out?: string; data?: string; port?: number; baselines?: string }) => {
      try {
        const result = await runFederation(specPath, opts);
        if (result.runtimeStatus !== "Completed") process.exitCode = 1;
      } catch (err) {
        const { SpecError } = await import("../spec");
        if (err instanceof SpecError) {
          console.error(err.message);
          process.exitCode = 2;
          return;
        }
        throw err;
      }
    });
}
