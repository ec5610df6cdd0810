/** Deterministic Service Bus MessageIds so the topic's duplicate detection drops re-sends (e.g. retried activities). */
import { createHash } from "node:crypto";
import type { NotificationType } from "./schema";

/** Service Bus rejects longer MessageIds. */
export const MAX_MESSAGE_ID_LENGTH = 128;

/**
 * `<federationId>:<type>:<round>` (`<federationId>:<type>` without a round). When that exceeds 128
 * characters the federation id is replaced by `sha256-<hex of the id>`, keeping type and round readable.
 */
export function notificationMessageId(federationId: string, type: NotificationType, round?: number): string {
  const suffix = round === undefined ? `:${type}` : `:${type}:${round}`;
  const plain = `${federationId}${suffix}`;
  if (plain.length <= MAX_MESSAGE_ID_LENGTH) return plain;
  return `sha256-${createHash("sha256").update(federationId, "utf8").digest("hex")}${suffix}`;
}
