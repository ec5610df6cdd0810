/**
 * The federation report: one self-contained HTML file (Chart.js inlined, no network needed) with
 * the global model's metrics per round against local-only and centralized baselines, each silo's
 * metrics per round, round timings, and a table of what every round included and excluded.
 */
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import type { RoundManifest, SiloManifestEntry } from "../federation/manifest";
import type { EvaluationManifest } from "../federation/evaluation";
import type { ModelSelection } from "../federation/types";

/** Reference results the federation is compared against (see docs/report.md). */
export interface Baselines {
  /** Metric the baselines were computed for, e.g. "auc". */
  metric?: string;
  /** One model trained on all silos' data pooled (what FL tries to approach without pooling). */
  centralized?: Record<string, number>;
  /** One model per silo trained on its own data only (what a silo gets without federating). */
  localOnly?: Record<string, Record<string, number>>;
  /** What the baselines were measured on, shown in the report. */
  description?: string;
  /** Per silo, on the same rows as the federated evaluation: the centralized model, and the silo's own local-only model. */
  bySilo?: { centralized?: Record<string, Record<string, number>>; localOnly?: Record<string, Record<string, number>> };
}

export interface ReportInput {
  federationId: string;
  runtimeStatus: string;
  manifests: readonly RoundManifest[];
  /** Evaluation manifests (the spec's evaluation section), in round order. */
  evaluations?: readonly EvaluationManifest[];
  /** Which model was delivered, when the federation completed. */
  selection?: ModelSelection;
  baselines?: Baselines;
  generatedAt?: Date;
}

let chartJsSource: string | undefined;
function chartJs(): string {
  // The package's exports map hides dist/; its main entry sits next to the UMD build.
  chartJsSource ??= readFileSync(join(dirname(require.resolve("chart.js")), "chart.umd.min.js"), "utf8");
  return chartJsSource;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
/** JSON inside <script>: "<" escaped so no string can close the element. */
const scriptJson = (value: unknown) => JSON.stringify(value).replace(/</g, "\\u003c");

/** The metric the report plots first: the baselines' metric, else the first global metric seen. */
export function primaryMetric(input: ReportInput): string | undefined {
  if (input.baselines?.metric) return input.baselines.metric;
  for (const m of input.manifests) {
    const names = Object.keys(m.globalMetrics).concat(Object.keys(m.metrics));
    if (names.length) return names.find((n) => /auc|acc/i.test(n)) ?? names[0];
  }
  return undefined;
}

export interface ChartSeries {
  label: string;
  data: (number | null)[];
  dashed?: boolean;
}

/** The numbers behind the charts, computed once (also what tests check). */
export function reportSeries(input: ReportInput) {
  const manifests = [...input.manifests].sort((a, b) => a.round - b.round);
  const rounds = manifests.map((m) => m.round);
  const metric = primaryMetric(input);
  const value = (r: Record<string, number> | undefined) => (metric && r && typeof r[metric] === "number" ? r[metric] : null);
  const global: ChartSeries[] = [];
  if (metric) {
    global.push({ label: `global model entering the round (silos' evaluation, ${metric})`, data: manifests.map((m) => value(m.globalMetrics)) });
    global.push({ label: `each silo's own model after local training, on its own validation data (weighted mean, ${metric})`, data: manifests.map((m) => value(m.metrics)) });
    const evaluated = new Map((input.evaluations ?? []).filter((e) => e.status === "evaluated").map((e) => [e.round, e.metrics]));
    if (evaluated.size > 0) {
      global.push({ label: `model the round produced, federated evaluation on every silo (weighted mean, ${metric})`, data: rounds.map((r) => value(evaluated.get(r))) });
    }
    const central = value(input.baselines?.centralized);
    if (central !== null) global.push({ label: `centralized baseline (${metric})`, data: rounds.map(() => central), dashed: true });
    const locals = Object.values(input.baselines?.localOnly ?? {})
      .map(value)
      .filter((v): v is number => v !== null);
    if (locals.length) {
      const mean = locals.reduce((a, b) => a + b, 0) / locals.length;
      global.push({ label: `local-only baseline (mean over silos, ${metric})`, data: rounds.map(() => mean), dashed: true });
    }
  }
  const siloNames = [...new Set(manifests.flatMap((m) => m.silos.map((s) => s.silo)))].sort();
  const perSilo: ChartSeries[] = siloNames.map((silo) => ({
    label: silo,
    data: manifests.map((m) => value(m.silos.find((s) => s.silo === silo)?.metrics)),
  }));
  const seconds = (from?: string, to?: string) => (from && to ? (Date.parse(to) - Date.parse(from)) / 1000 : null);
  const timings: ChartSeries[] = [
    { label: "training (submit to last update), s", data: manifests.map((m) => seconds(m.timings.roundStartedAt, m.timings.aggregationStartedAt)) },
    { label: "aggregation, s", data: manifests.map((m) => m.timings.aggregationSeconds ?? null) },
  ];
  return { metric, rounds, global, perSilo, timings };
}

/** The delivered model's evaluation: per silo and weighted, beside the baselines on the same rows. */
export function finalModelRows(input: ReportInput): { metrics: string[]; rows: { label: string; values: (number | undefined)[]; note?: string }[] } | undefined {
  const round = input.selection?.round ?? input.evaluations?.at(-1)?.round;
  const evaluation = input.evaluations?.find((e) => e.round === round && e.status === "evaluated");
  if (!evaluation) return undefined;
  const selectionMetric = input.selection?.metric;
  // Held-out figures first; the metric that chose the model (biased upward by the choice) last.
  const names = Object.keys(evaluation.metrics).sort((a, b) => Number(a === selectionMetric) - Number(b === selectionMetric) || a.localeCompare(b));
  const pick = (metrics: Record<string, number> | undefined) => names.map((n) => metrics?.[n]);
  const rows: { label: string; values: (number | undefined)[]; note?: string }[] = evaluation.silos.map((s) => ({
    label: s.silo,
    values: pick(s.metrics),
    ...(s.included ? {} : { note: `excluded: ${s.reason ?? s.outcome}` }),
  }));
  rows.push({ label: "weighted mean (num_examples)", values: pick(evaluation.metrics) });
  const bySilo = input.baselines?.bySilo;
  for (const s of evaluation.silos) {
    if (bySilo?.centralized?.[s.silo]) rows.push({ label: `centralized baseline on ${s.silo}`, values: pick(bySilo.centralized[s.silo]) });
    if (bySilo?.localOnly?.[s.silo]) rows.push({ label: `${s.silo}'s local-only model on ${s.silo}`, values: pick(bySilo.localOnly[s.silo]) });
  }
  if (input.baselines?.centralized) rows.push({ label: "centralized baseline, weighted mean", values: pick(input.baselines.centralized) });
  return { metrics: names, rows };
}

export interface FinalModelComparison {
  metric: string;
  round: number;
  /** Per silo, then "weighted mean": the delivered model, the centralized baseline and the silo's own local-only model, on the same rows. */
  rows: { silo: string; numExamples?: number; federated?: number; centralized?: number; localOnly?: number }[];
}

/** The delivered model's `metric` per silo and weighted, beside the baselines on the same rows with the same weights. */
export function finalModelComparison(input: ReportInput): FinalModelComparison | undefined {
  const metric = primaryMetric(input);
  const round = input.selection?.round ?? input.evaluations?.at(-1)?.round;
  const evaluation = input.evaluations?.find((e) => e.round === round && e.status === "evaluated");
  if (!metric || !evaluation || round === undefined) return undefined;
  const bySilo = input.baselines?.bySilo;
  const rows: FinalModelComparison["rows"] = evaluation.silos.map((s) => ({
    silo: s.silo,
    numExamples: s.numExamples,
    federated: s.included ? s.metrics?.[metric] : undefined,
    centralized: bySilo?.centralized?.[s.silo]?.[metric],
    localOnly: bySilo?.localOnly?.[s.silo]?.[metric],
  }));
  const weighted = (pick: (r: FinalModelComparison["rows"][number]) => number | undefined) => {
    const parts = rows.filter((r) => r.numExamples !== undefined && pick(r) !== undefined);
    if (parts.length !== rows.length) return undefined;
    const total = parts.reduce((a, r) => a + r.numExamples!, 0);
    return parts.reduce((a, r) => a + r.numExamples! * pick(r)!, 0) / total;
  };
  rows.push({
    silo: "weighted mean",
    numExamples: evaluation.totalExamples,
    federated: evaluation.metrics[metric],
    centralized: weighted((r) => r.centralized),
    localOnly: weighted((r) => r.localOnly),
  });
  return { metric, round, rows };
}

function finalModelSection(input: ReportInput): string {
  const table = finalModelRows(input);
  if (!table) {
    const why = (input.evaluations ?? []).length === 0 ? "the spec has no evaluation section, so the delivered model was not evaluated" : "its evaluation did not reach the quorum";
    return `<h2>Final model</h2><p class="note">No evaluation of the delivered model: ${escapeHtml(why)}.</p>`;
  }
  const selection = input.selection;
  const metricHead = table.metrics.map((m) => `<th>${escapeHtml(m)}${m === selection?.metric ? " (selection metric: biased upward)" : ""}</th>`).join("");
  const rows = table.rows
    .map(
      (r) =>
        `<tr><td>${escapeHtml(r.label)}${r.note ? ` <span class="bad">${escapeHtml(r.note)}</span>` : ""}</td>${r.values.map((v) => `<td>${v === undefined ? "-" : v.toFixed(4)}</td>`).join("")}</tr>`,
    )
    .join("\n");
  const chosen = selection ? `<p>Delivered: round ${selection.round}'s model${selection.last ? " (the last round)" : ""}: ${escapeHtml(selection.reason)}.</p>` : "";
  const bias = selection?.metric
    ? `<p class="note">${escapeHtml(selection.metric)} chose the model, so its value is biased upward; the other columns are held-out figures the choice did not use.</p>`
    : "";
  return `<h2>Final model</h2>${chosen}${bias}<table><thead><tr><th>evaluated on</th>${metricHead}</tr></thead><tbody>
${rows}
</tbody></table>`;
}

export function renderReport(input: ReportInput): string {
  const series = reportSeries(input);
  const manifests = [...input.manifests].sort((a, b) => a.round - b.round);
  const last = manifests.filter((m) => m.status === "aggregated").at(-1);
  const delivered = input.selection ? (manifests.find((m) => m.round === input.selection!.round) ?? last) : last;
  const rows = manifests
    .map((m) => {
      const dominant = new Set(m.weighting?.dominant ?? []);
      const share = (s: SiloManifestEntry) => (s.weightShare !== undefined ? `, weight ${(100 * s.weightShare).toFixed(1)}%` : "");
      const flag = (s: SiloManifestEntry) => (dominant.has(s.silo) ? ` <span class="bad">outweighs all other silos together (no maxWeightShare set)</span>` : "");
      const silos = m.silos
        .map((s) => `${escapeHtml(s.silo)}: ${s.included ? `included (n=${s.numExamples ?? "?"}${share(s)})${flag(s)}` : `<span class="bad">excluded: ${escapeHtml(s.reason ?? s.outcome)}</span>`}`)
        .join("<br>");
      const weighting = m.weighting?.note ? `<br><span class="note">${escapeHtml(m.weighting.note)}</span>` : "";
      const metrics = Object.entries(m.metrics)
        .map(([k, v]) => `${escapeHtml(k)}=${v.toFixed(4)}`)
        .join(", ");
      const globalMetrics = Object.entries(m.globalMetrics)
        .map(([k, v]) => `${escapeHtml(k)}=${v.toFixed(4)}`)
        .join(", ");
      return `<tr><td>${m.round}</td><td>${m.status === "aggregated" ? "aggregated" : `<span class="bad">failed: ${escapeHtml(m.reason ?? "")}</span>`}</td><td>${silos}${weighting}</td><td>${globalMetrics}</td><td>${metrics}</td><td><code>${escapeHtml((m.globalOut?.sha256 ?? "").slice(0, 16))}</code></td></tr>`;
    })
    .join("\n");
  const baselineNote = input.baselines?.description ? `<p class="note">Baselines: ${escapeHtml(input.baselines.description)}</p>` : "";
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>flo report: ${escapeHtml(input.federationId)}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:1.5rem}.card{border:1px solid #ddd;border-radius:8px;padding:1rem}
table{border-collapse:collapse;width:100%;font-size:.85rem}td,th{border-bottom:1px solid #eee;padding:.4rem;text-align:left;vertical-align:top}
.bad{color:#b00020}.note{color:#555;font-size:.9rem}code{font-size:.8rem}
</style></head><body>
<h1>Federation <code>${escapeHtml(input.federationId)}</code> — ${escapeHtml(input.runtimeStatus)}</h1>
<p>${manifests.length} round(s); final model sha256 <code>${escapeHtml(delivered?.globalOut?.sha256 ?? "n/a")}</code>${delivered && delivered !== last ? ` (round ${delivered.round}'s, chosen by ${escapeHtml(input.selection?.metric ?? "")}; the last round's is <code>${escapeHtml(last?.globalOut?.sha256 ?? "n/a")}</code>)` : ""}; strategy <code>${escapeHtml(last?.strategy.name ?? manifests[0]?.strategy.name ?? "n/a")}</code>. Generated ${escapeHtml((input.generatedAt ?? new Date()).toISOString())}.</p>
${baselineNote}
<div class="card"><h2>Global model per round${series.metric ? ` (${escapeHtml(series.metric)})` : ""}</h2><canvas id="global"></canvas></div>
<div class="grid">
<div class="card"><h2>Each silo after local training${series.metric ? ` (${escapeHtml(series.metric)})` : ""}</h2><canvas id="silos"></canvas></div>
<div class="card"><h2>Round timings</h2><canvas id="timings"></canvas></div>
</div>
${finalModelSection(input)}
<h2>Rounds</h2>
<table><thead><tr><th>round</th><th>status</th><th>silos</th><th>global model (silo eval)</th><th>after training</th><th>output sha256</th></tr></thead><tbody>
${rows}
</tbody></table>
<script>${chartJs()}</script>
<script>
const S = ${scriptJson(series)};
const colors = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
const ds = (list) => list.map((s, i) => ({ label: s.label, data: s.data, borderColor: colors[i % colors.length], backgroundColor: colors[i % colors.length], borderDash: s.dashed ? [6, 4] : [], spanGaps: true, tension: 0.2 }));
const labels = S.rounds.map((r) => "round " + r);
new Chart(document.getElementById("global"), { type: "line", data: { labels, datasets: ds(S.global) }, options: { animation: false } });
new Chart(document.getElementById("silos"), { type: "line", data: { labels, datasets: ds(S.perSilo) }, options: { animation: false } });
new Chart(document.getElementById("timings"), { type: "bar", data: { labels, datasets: ds(S.timings) }, options: { animation: false, scales: { x: { stacked: true }, y: { stacked: true, title: { display: true, text: "seconds" } } } } });
</script>
</body></html>
`;
}
