/**
 * The silo side of secure aggregation as flo runs it around a silo's jobs, with the files the
 * orchestrator hands the job (the same as the Python package's `python -m flo_secagg`):
 *
 *   session.json: {"federationId", "round", "attempt", "threshold",
 *                  "quantization": {"bits", "clipNorm", "rounding"},
 *                  "silos": [{"id", "publicKey", "maxExamples"}...], "self": "<silo id>"}
 *   split.json:   {"survivors": [indexes], "dropped": [indexes]}
 *
 * After training, `maskTrainingOutput` replaces the trainer's output folder by the masked update and
 * the encrypted shares: the trained model and `num_examples` never leave the silo (the plain files are
 * deleted whether masking succeeds or not). The unmask job runs `revealFromFiles`.
 */
import { promises as fs } from "node:fs";
import * as path from "node:path";
import { fileSink, fileSource } from "../models/fileBytes";
import { METRICS_FILE, MODEL_FILE } from "../models/storeLayout";
import { SecAggError } from "./errors";
import { parsePublicKey, readSecretKeyFile } from "./keys";
import { prepareSiloRound, writeMaskedUpdate } from "./mask";
import { planQuantization, type QuantizationPlan, type Rounding } from "./quantize";
import { revealForUnmask, type Reveal, type Split } from "./reveal";
import { buildRoster, sessionId, type Roster } from "./session";
import { parseSharesFile, type SharesFile } from "./shares";
import { MASKED_FILE, PUBLISHED_METRICS_FILE, REVEAL_FILE, SESSION_FILE, SHARES_FILE, SPLIT_FILE } from "./files";

export { MASKED_FILE, PUBLISHED_METRICS_FILE, REVEAL_FILE, SESSION_FILE, SHARES_FILE, SPLIT_FILE };

export interface SessionDescription {
  federationId: string;
  round: number;
  attempt: number;
  threshold: number;
  quantization: { bits: number; clipNorm: number; rounding: Rounding };
  silos: { id: string; publicKey: string; maxExamples: number }[];
  /** The silo this copy is for (absent in the orchestrator's own copy). */
  self?: string;
}

export interface LoadedSession {
  description: SessionDescription;
  roster: Roster;
  session: Buffer;
  plan: QuantizationPlan;
  threshold: number;
  rounding: Rounding;
}

/** Derives roster, session id and quantization plan from a session description (both sides do this). */
export function loadSession(description: SessionDescription, file = SESSION_FILE): LoadedSession {
  for (const field of ["federationId", "round", "attempt", "threshold", "quantization", "silos"] as const) {
    if (description[field] === undefined) throw new SecAggError("BAD_PARAMETERS", `${file}: ${field}`, "missing");
  }
  const roster = buildRoster(description.silos.map((s, i) => ({ id: s.id, publicKey: parsePublicKey(s.publicKey, `${file}: silos[${i}].publicKey`) })));
  const byId = new Map(description.silos.map((s) => [s.id, s]));
  const plan = planQuantization({ bits: description.quantization.bits, clipNorm: description.quantization.clipNorm, maxExamples: roster.silos.map((s) => byId.get(s.id)!.maxExamples) });
  const session = sessionId({ federationId: description.federationId, round: description.round, attempt: description.attempt, threshold: description.threshold, ringBits: plan.ringBits, roster });
  return { description, roster, session, plan, threshold: description.threshold, rounding: description.quantization.rounding ?? "stochastic" };
}

async function readJson(file: string): Promise<unknown> {
  let text: string;
  try {
    text = await fs.readFile(file, "utf8");
  } catch (err) {
    throw new SecAggError("BAD_INPUT", file, `expected a readable file, got ${(err as NodeJS.ErrnoException).code ?? "an unreadable one"}`);
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // The parser's message may quote the file (a count, a metric): it never goes into the job's error.
    throw new SecAggError("BAD_INPUT", file, "expected JSON, got text that does not parse");
  }
}

async function loadSelf(sessionFile: string, keyFile: string): Promise<{ loaded: LoadedSession; selfIndex: number; secretKey: Buffer; maxExamples: number }> {
  const description = (await readJson(sessionFile)) as SessionDescription;
  const loaded = loadSession(description, sessionFile);
  if (typeof description.self !== "string") throw new SecAggError("BAD_PARAMETERS", `${sessionFile}: self`, "expected this silo's id");
  const selfIndex = loaded.roster.indexOf(description.self);
  const pair = await readSecretKeyFile(keyFile);
  if (!pair.publicKey.equals(loaded.roster.silos[selfIndex - 1].publicKey)) {
    throw new SecAggError("BAD_KEY", keyFile, `this key file's public key is not the roster's key of silo "${description.self}"`);
  }
  const maxExamples = description.silos.find((s) => s.id === description.self)!.maxExamples;
  return { loaded, selfIndex, secretKey: pair.secretKey, maxExamples };
}

async function removeQuietly(file: string): Promise<void> {
  await fs.rm(file, { force: true });
}

/**
 * Masks a trainer's output folder in place: reads model.safetensors and metrics.json, writes
 * masked.safetensors and shares.json (and published-metrics.json when `publishMetrics`), and deletes
 * the plain model and metrics.json in every case, so a failed masking uploads nothing unmasked.
 */
export async function maskTrainingOutput(options: { sessionFile: string; keyFile: string; outputDir: string; globalModelFile: string; publishMetrics: boolean }): Promise<void> {
  const trainedFile = path.join(options.outputDir, MODEL_FILE);
  const metricsFile = path.join(options.outputDir, METRICS_FILE);
  const maskedFile = path.join(options.outputDir, MASKED_FILE);
  try {
    const metrics = (await readJson(metricsFile)) as { num_examples?: unknown; metrics?: unknown; global_metrics?: unknown };
    const numExamples = metrics?.num_examples;
    if (typeof numExamples !== "number" || !Number.isSafeInteger(numExamples) || numExamples <= 0) {
      throw new SecAggError("BAD_INPUT", `${metricsFile}: num_examples`, `expected an integer > 0, got ${JSON.stringify(numExamples) ?? "nothing"}`);
    }
    const { loaded, selfIndex, secretKey, maxExamples } = await loadSelf(options.sessionFile, options.keyFile);
    const setup = prepareSiloRound({ secretKey, roster: loaded.roster, session: loaded.session, selfIndex, threshold: loaded.threshold });
    const trained = fileSource(trainedFile);
    const global = fileSource(options.globalModelFile);
    try {
      await writeMaskedUpdate({ trained, global, sink: fileSink(maskedFile), setup, session: loaded.session, plan: loaded.plan, numExamples, maxExamples, rounding: loaded.rounding });
    } finally {
      await trained.close?.();
      await global.close?.();
    }
    await fs.writeFile(path.join(options.outputDir, SHARES_FILE), JSON.stringify(setup.sharesFile));
    if (options.publishMetrics) {
      await fs.writeFile(path.join(options.outputDir, PUBLISHED_METRICS_FILE), JSON.stringify({ metrics: metrics.metrics ?? {}, global_metrics: metrics.global_metrics ?? {} }));
    }
  } catch (err) {
    await removeQuietly(maskedFile);
    throw err;
  } finally {
    await removeQuietly(trainedFile);
    await removeQuietly(metricsFile);
  }
}

/** The unmask job: validates the survivors' shares files and reveals for the split, recording it first. */
export async function revealFromFiles(options: { sessionFile: string; keyFile: string; splitFile: string; sharesFiles: readonly string[]; recordDir: string; outFile: string }): Promise<Reveal> {
  const { loaded, selfIndex, secretKey } = await loadSelf(options.sessionFile, options.keyFile);
  const split = (await readJson(options.splitFile)) as Split;
  const files = new Map<number, SharesFile>();
  for (const file of options.sharesFiles) {
    const parsed = (await readJson(file)) as { sender?: unknown };
    const sender = Number(parsed?.sender);
    files.set(sender, parseSharesFile(parsed, { session: loaded.session, sender, rosterSize: loaded.roster.silos.length, file }));
  }
  const reveal = await revealForUnmask({ secretKey, roster: loaded.roster, session: loaded.session, threshold: loaded.threshold, selfIndex, split, sharesFiles: files, recordDir: options.recordDir });
  await fs.writeFile(options.outFile, JSON.stringify(reveal));
  return reveal;
}
