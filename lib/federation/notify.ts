/** The notifyPartners activity: tells partners about progress on the notifications topic, when one is configured. */
import type { NotificationInput } from "../messaging/notifications";
import { Settings } from "./settings";
import type { FederationServices } from "./services";
import type { ModelRef, RoundSummary } from "./types";

export interface PartnerNotice {
  type: "round-completed" | "federation-completed" | "federation-failed";
  federationId: string;
  round: number;
  summary?: RoundSummary;
  /** federation-completed: the delivered model (the best evaluated one with evaluation.select) and its round. */
  finalModel?: ModelRef;
  selectedRound?: number;
  reason?: string;
}

/** The notification for a notice (pure). */
export function toNotificationInput(notice: PartnerNotice): NotificationInput {
  if (notice.type === "federation-failed") return { type: notice.type, federationId: notice.federationId, round: notice.round, reason: notice.reason ?? "unknown" };
  const metrics = notice.summary ? { metrics: notice.summary.metrics } : {};
  const model = notice.finalModel ?? notice.summary?.model;
  const modelFields = model ? { modelUri: model.uri, modelSha256: model.sha256 } : {};
  const selected = notice.type === "federation-completed" && notice.selectedRound !== undefined ? { selectedRound: notice.selectedRound } : {};
  return { type: notice.type, federationId: notice.federationId, round: notice.round, ...modelFields, ...metrics, ...selected };
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
