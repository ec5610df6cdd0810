/**
 * The app settings of flo's bus: which Service Bus connection (if any), the job-events queue name,
 * and the partner notifications topic (partner command queues are `partner-<name>` per allowed
 * partner, see lib/federation/inbox.ts). Callers pass the settings in (the process environment on
 * Azure and under `flo host`); this module never reads the environment itself.
 */
import { defaultCredentialFactory, resolveServiceBusConnection, type AppSettings, type CredentialFactory, type ServiceBusConnection } from "./connection";

/** App-setting names (see local.settings.sample.json). */
export const MessagingSettingNames = {
  /** Connection prefix: `ServiceBusConnection` (connection string) or `ServiceBusConnection__fullyQualifiedNamespace`. */
  serviceBusConnection: "ServiceBusConnection",
  jobEventsQueue: "FLO_JOB_EVENTS_QUEUE",
  notificationsTopic: "FLO_NOTIFICATIONS_TOPIC",
} as const;

export const MESSAGING_DEFAULTS = {
  jobEventsQueue: "job-events",
} as const;

/** Entity names on the bus (no secrets: safe to log). */
export interface MessageEntities {
  jobEventsQueue: string;
  /** Partner notifications are published only when a topic is configured. */
  notificationsTopic?: string;
}

export function messageEntitiesFromSettings(settings: AppSettings): MessageEntities {
  return {
    jobEventsQueue: settings[MessagingSettingNames.jobEventsQueue] || MESSAGING_DEFAULTS.jobEventsQueue,
    notificationsTopic: settings[MessagingSettingNames.notificationsTopic] || undefined,
  };
}

/** flo's own Service Bus connection, or undefined when the embedded transport carries the messages. */
export function serviceBusConnectionFromSettings(settings: AppSettings, credentialFactory: CredentialFactory = defaultCredentialFactory): ServiceBusConnection | undefined {
  return resolveServiceBusConnection(MessagingSettingNames.serviceBusConnection, settings, credentialFactory);
}
