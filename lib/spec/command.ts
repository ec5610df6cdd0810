/**
 * Names derived from a federation. The command template language is the silo job contract's
 * (lib/compute/commandTemplate.ts); it is re-exported here because the spec validates commands with it.
 */
export {
  ALWAYS_PROVIDED_INPUTS,
  BUILTIN_INPUTS,
  CommandTemplateError,
  GLOBAL_MODEL_INPUT,
  MODEL_UPDATE_OUTPUT,
  commandInputNames,
  commandOutputNames,
  parseCommandTemplate,
  renderCommand,
  type CommandTemplate,
  type RenderValues,
  type TemplateSegment,
} from "../compute/commandTemplate";

/** A run suffix: lower-case letters, digits and hyphens, at most 23 characters (id <= 64 characters). */
export const RUN_SUFFIX = /^[a-z0-9][a-z0-9-]{0,22}$/;

/**
 * The federation id (= Durable instance id, and part of every job name and blob path): the spec's
 * `name`, or `<name>-<runSuffix>` when a caller runs the same spec more than once side by side
 * (scheduled retraining uses e.g. a UTC timestamp `20261128t0200z`). Without a suffix, one spec
 * name has at most one running federation, which is what makes "409: already running" meaningful.
 */
export function federationInstanceId(spec: { name: string }, options: { runSuffix?: string } = {}): string {
  if (options.runSuffix === undefined) return spec.name;
  if (!RUN_SUFFIX.test(options.runSuffix)) {
    throw new RangeError(`federationInstanceId: runSuffix must match ${RUN_SUFFIX.source}, got ${JSON.stringify(options.runSuffix)}`);
  }
  return `${spec.name}-${options.runSuffix}`;
}
