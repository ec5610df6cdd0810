/** Names of the files secure aggregation's silo jobs read and write (dependency-free: the job contract imports it). */

/** A secure training job's output: the masked update and the encrypted shares (what the orchestrator reads). */
export const MASKED_FILE = "masked.safetensors";
export const SHARES_FILE = "shares.json";
/** The silo's metrics other than counts, written only when the spec opts in. */
export const PUBLISHED_METRICS_FILE = "published-metrics.json";
/** The unmask job's output. */
export const REVEAL_FILE = "reveal.json";
export const SESSION_FILE = "session.json";
export const SPLIT_FILE = "split.json";
