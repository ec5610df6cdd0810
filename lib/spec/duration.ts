/**
 * ISO-8601 durations as used by Azure (PT30M, P1DT2H, PT1.5S, P2W). Years and months are rejected:
 * they have no fixed length, and a round deadline must be an exact number of seconds.
 */

/** The accepted syntax, also used as the JSON Schema pattern. */
export const ISO_DURATION_PATTERN = /^P(?!$)(\d+W)?(\d+D)?(T(?=\d)(\d+H)?(\d+M)?(\d+(\.\d+)?S)?)?$/;

export class DurationError extends Error {
  override readonly name = "DurationError";
}

const UNIT_SECONDS: Record<string, number> = { W: 604800, D: 86400, H: 3600, M: 60, S: 1 };

/** Parses an ISO-8601 duration to seconds; throws DurationError saying what was expected. */
export function parseIsoDuration(text: string): number {
  const datePart = text.startsWith("P") ? text.slice(1).split("T")[0] : "";
  if (/\d+[YM]/.test(datePart)) {
    throw new DurationError(`expected an ISO-8601 duration in weeks/days/hours/minutes/seconds (years and months have no fixed length), got ${JSON.stringify(text)}`);
  }
  const match = ISO_DURATION_PATTERN.exec(text);
  if (!match) throw new DurationError(`expected an ISO-8601 duration such as PT30M or P1DT2H, got ${JSON.stringify(text)}`);
  let seconds = 0;
  for (const part of text.slice(1).match(/T|\d+(?:\.\d+)?[WDHMS]/g) ?? []) {
    if (part === "T") continue;
    const unit = part[part.length - 1];
    const value = Number(part.slice(0, -1));
    // "M" is minutes here: months were rejected above and the pattern only allows M after T.
    seconds += value * UNIT_SECONDS[unit];
  }
  return seconds;
}
