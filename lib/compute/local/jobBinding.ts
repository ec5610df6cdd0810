/**
 * Binds job folders to the host that created them. The jobs root is private (0700, owned by the
 * host's user), and every job.json carries a token derived from a host secret and the job name
 * (HMAC-SHA256): a submit retried after a crash recomputes the same token and finds its own folder,
 * while a folder planted by someone else, or left by a host with another secret, never matches and
 * is never trusted (its files are not read, its pids are not signalled, its outputs are not used).
 */
import { createHmac, randomBytes, timingSafeEqual } from "node:crypto";
import { chmodSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

/** File in the jobs root holding the generated host secret (when no secret is configured). */
export const JOBS_SECRET_FILE = ".jobs-secret";
const PRIVATE_DIR_MODE = 0o700;
const SECRET_FILE_MODE = 0o600;
const GENERATED_SECRET_BYTES = 32;

/** The jobs root cannot be made private to this host. */
export class JobsRootError extends Error {
  override readonly name = "JobsRootError";
}

/**
 * Creates the jobs root if needed and makes it private: a real directory (not a symlink) owned by
 * this process's user, mode 0700. An existing root with wider permissions is narrowed.
 */
export function ensurePrivateJobsRoot(root: string): void {
  mkdirSync(root, { recursive: true, mode: PRIVATE_DIR_MODE });
  const stat = lstatSync(root);
  if (!stat.isDirectory()) throw new JobsRootError(`jobs folder ${root}: expected a directory, got ${stat.isSymbolicLink() ? "a symbolic link" : "a file"}`);
  const uid = process.getuid?.();
  if (uid !== undefined && stat.uid !== uid) throw new JobsRootError(`jobs folder ${root}: expected a folder owned by this host's user (uid ${uid}), got one owned by uid ${stat.uid}`);
  if ((stat.mode & 0o777) !== PRIVATE_DIR_MODE) chmodSync(root, PRIVATE_DIR_MODE);
}

/**
 * The host secret: the configured one, else the one generated for this jobs root on first use and
 * kept there (mode 0600), so a restarted host still recognizes the folders it created.
 */
export function jobsSecret(root: string, configured: string | undefined): Buffer {
  if (configured) return Buffer.from(configured, "utf8");
  const path = join(root, JOBS_SECRET_FILE);
  try {
    // "wx": of two hosts starting at once on one root, one creates the secret and both read it.
    writeFileSync(path, randomBytes(GENERATED_SECRET_BYTES).toString("hex"), { flag: "wx", mode: SECRET_FILE_MODE });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  const stat = lstatSync(path);
  if (!stat.isFile()) throw new JobsRootError(`jobs secret ${path}: expected a regular file, got ${stat.isSymbolicLink() ? "a symbolic link" : "something else"}`);
  if ((stat.mode & 0o777) !== SECRET_FILE_MODE) chmodSync(path, SECRET_FILE_MODE);
  const secret = readFileSync(path, "utf8").trim();
  if (!secret) throw new JobsRootError(`jobs secret ${path}: expected a secret, got an empty file`);
  return Buffer.from(secret, "utf8");
}

/** The token binding a job folder to its job name on the host holding `secret` (hex HMAC-SHA256). */
export function jobBindingToken(secret: Buffer | string, jobName: string): string {
  return createHmac("sha256", secret).update(jobName, "utf8").digest("hex");
}

/** Why a job.json's binding token does not prove this host created it; undefined when it does. */
export function bindingMismatch(secret: Buffer, jobName: string, binding: unknown): string | undefined {
  if (typeof binding !== "string" || binding === "") return "its job.json carries no binding token";
  const expected = Buffer.from(jobBindingToken(secret, jobName), "utf8");
  const actual = Buffer.from(binding, "utf8");
  if (actual.length !== expected.length || !timingSafeEqual(actual, expected)) return "its binding token does not match this host's secret";
  return undefined;
}
