/**
 * The app settings of flo's bus: which Service Bus connection (if any), the queue names flo listens
 * on, and the partner notifications topic. Callers pass the settings in (the process environment on
 * Azure and under `flo host`); this module never reads the environment itself.
 */
import { defaultCredentialFactory, resolveServiceBusConnection, type AppSettings, type CredentialFactory, type ServiceBusConnection } from "./connection";

/** App-setting names (see local.settings.sample.json). */
export const MessagingSettingNames = {
  /** Connection prefix: `ServiceBusConnection` (connection string) or `ServiceBusConnection__fullyQualifiedNamespace`. */
  serviceBusConnection: "ServiceBusConnection",
  jobEventsQueue: "FLO_JOB_EVENTS_QUEUE",
  partnerQueue: "FLO_PARTNER_QUEUE",
  notificationsTopic: "FLO_NOTIFICATIONS_TOPIC",
} as const;

export const MESSAGING_DEFAULTS = {
  jobEventsQueue: "job-events",
  partnerQueue: "partner-commands",
} as const;

/** Entity names on the bus (no secrets: safe to log). */
export interface MessageEntities {
  jobEventsQueue: string;
  partnerQueue: string;
  /** Partner notifications are published only when a topic is configured. */
  notificationsTopic?: string;
}

export function messageEntitiesFromSettings(settings: AppSettings): MessageEntities {
  return {
    jobEventsQueue: settings[MessagingSettingNames.jobEventsQueue] || MESSAGING_DEFAULTS.jobEventsQueue,
    partnerQueue: settings[MessagingSettingNames.partnerQueue] || MESSAGING_DEFAULTS.partnerQueue,
    notificationsTopic: settings[MessagingSettingNames.notificationsTopic] || undefined,
  };
}

/** flo's own Service Bus connection, or undefined when the embedded transport carries the messages. */
export function serviceBusConnectionFromSettings(settings: AppSettings, credentialFactory: CredentialFactory = defaultCredentialFactory): ServiceBusConnection | undefined {
  return resolveServiceBusConnection(MessagingSettingNames.serviceBusConnection, settings, credentialFactory);
}
