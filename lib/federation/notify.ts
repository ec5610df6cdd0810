/** The notifyPartners activity: tells partners about progress on the notifications topic, when one is configured. */
import { NotificationPublisher, type NotificationInput } from "../notifications";
import { defaultCredentialFactory, resolveServiceBusConnection } from "../runtime/triggers/serviceBus/serviceBusTriggers";
import { Settings, type FederationServices } from "./services";
import type { RoundSummary } from "./types";

export interface PartnerNotice {
  type: "round-completed" | "federation-completed" | "federation-failed";
  federationId: string;
  round: number;
  summary?: RoundSummary;
  reason?: string;
}

let publisher: { topic: string; instance: NotificationPublisher } | undefined;

function publisherFor(env: Record<string, string | undefined>): NotificationPublisher | undefined {
  const topic = env[Settings.notificationsTopic];
  if (!topic) return undefined;
  if (publisher?.topic === topic) return publisher.instance;
  const connection = resolveServiceBusConnection(Settings.serviceBusConnection, env, defaultCredentialFactory);
  if (!connection) throw new Error(`${Settings.notificationsTopic} is set but no Service Bus connection (${Settings.serviceBusConnection}) is configured`);
  publisher = { topic, instance: new NotificationPublisher({ topicName: topic, connection }) };
  return publisher.instance;
}

/** The notification for a notice (pure). */
export function toNotificationInput(notice: PartnerNotice): NotificationInput {
  const model = notice.summary ? { modelUri: notice.summary.model.uri, modelSha256: notice.summary.model.sha256, metrics: notice.summary.metrics } : {};
  if (notice.type === "federation-failed") return { type: notice.type, federationId: notice.federationId, round: notice.round, reason: notice.reason ?? "unknown" };
  return { type: notice.type, federationId: notice.federationId, round: notice.round, ...model };
}

export async function notifyPartners(
  _services: FederationServices,
  notice: PartnerNotice,
  log: (line: string) => void,
  env: Record<string, string | undefined> = process.env,
): Promise<{ sent: boolean; messageId?: string }> {
  const p = publisherFor(env);
  if (!p) {
    log(`no ${Settings.notificationsTopic} configured: ${notice.type} for ${notice.federationId} round ${notice.round} not published`);
    return { sent: false };
  }
  const published = await p.publish(toNotificationInput(notice));
  return { sent: true, messageId: published.messageId };
}
