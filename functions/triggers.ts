/**
 * Non-HTTP entry points: the job-events queue, one command queue per allowed partner
 * (`partner-<name>`: the queue a command arrives on names its sender), and the scheduled retraining
 * timer (registered only when its settings exist). Thin adapters onto lib/federation.
 */
import { app, type InvocationContext, type Timer } from "@azure/functions";
import * as df from "durable-functions";
import { federationServices } from "../lib/federation/services";
import { appSettings } from "../lib/federation/settings";
import { handleJobEvent, handlePartnerCommand, partnerQueueName, partnerSettingsFromEnv, type InboxMessage } from "../lib/federation/inbox";
import { retrainSettingsFromEnv, runScheduledRetraining } from "../lib/federation/schedule";
import { messageEntitiesFromSettings, MessagingSettingNames } from "../lib/messaging/settings";

// Trigger registrations are fixed when the app loads, like the Functions host reads them at startup.
const { jobEventsQueue } = messageEntitiesFromSettings(appSettings());
const partnerSettings = partnerSettingsFromEnv(appSettings());

function inboxMessage(body: unknown, context: InvocationContext): InboxMessage {
  const meta = context.triggerMetadata ?? {};
  return {
    body,
    messageId: typeof meta.messageId === "string" ? meta.messageId : undefined,
    deliveryCount: typeof meta.deliveryCount === "number" ? meta.deliveryCount : undefined,
    applicationProperties: (meta.applicationProperties as Record<string, unknown> | undefined) ?? undefined,
  };
}

app.serviceBusQueue("jobEvents", {
  connection: MessagingSettingNames.serviceBusConnection,
  queueName: jobEventsQueue,
  extraInputs: [df.input.durableClient()],
  handler: async (body: unknown, context: InvocationContext) => {
    await handleJobEvent(df.getClient(context), { services: await federationServices(), queue: jobEventsQueue, message: inboxMessage(body, context), log: (l) => context.log(l) });
  },
});

// One trigger per partner, so that the partner is known from where its command arrived: Service Bus
// does not tell a receiver who sent a message, and only that partner may send to its queue.
for (const partner of partnerSettings.allowList) {
  const queue = partnerQueueName(partner);
  app.serviceBusQueue(`partnerCommands-${partner}`, {
    connection: MessagingSettingNames.serviceBusConnection,
    queueName: queue,
    extraInputs: [df.input.durableClient()],
    handler: async (body: unknown, context: InvocationContext) => {
      await handlePartnerCommand(
        df.getClient(context),
        { services: await federationServices(), partner, queue, message: inboxMessage(body, context), log: (l) => context.log(l) },
        { settings: partnerSettings },
      );
    },
  });
}

const retrain = retrainSettingsFromEnv(appSettings());
if (retrain) {
  app.timer("scheduledRetraining", {
    schedule: retrain.schedule,
    extraInputs: [df.input.durableClient()],
    handler: async (timer: Timer, context: InvocationContext) => {
      await runScheduledRetraining(df.getClient(context), { services: await federationServices(), settings: retrain, timer, log: (l) => context.log(l) });
    },
  });
}
