/** The notifyPartners activity: tells partners about progress on the notifications topic, when one is configured. */
import type { NotificationInput } from "../messaging/notifications";
import { Settings } from "./settings";
import type { FederationServices } from "./services";
import type { RoundSummary } from "./types";

export interface PartnerNotice {
  type: "round-completed" | "federation-completed" | "federation-failed";
  federationId: string;
  round: number;
  summary?: RoundSummary;
  reason?: string;
}

/** The notification for a notice (pure). */
export function toNotificationInput(notice: PartnerNotice): NotificationInput {
  const model = notice.summary ? { modelUri: notice.summary.model.uri, modelSha256: notice.summary.model.sha256, metrics: notice.summary.metrics } : {};
  if (notice.type === "federation-failed") return { type: notice.type, federationId: notice.federationId, round: notice.round, reason: notice.reason ?? "unknown" };
  return { type: notice.type, federationId: notice.federationId, round: notice.round, ...model };
}

export async function notifyPartners(services: FederationServices, notice: PartnerNotice, log: (line: string) => void): Promise<{ sent: boolean; messageId?: string }> {
  const publisher = services.notifications;
  if (!publisher) {
    log(`no ${Settings.notificationsTopic} configured: ${notice.type} for ${notice.federationId} round ${notice.round} not published`);
    return { sent: false };
  }
  const published = await publisher.publish(toNotificationInput(notice));
  return { sent: true, messageId: published.messageId };
}
