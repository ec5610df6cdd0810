/**
 * The partner notification schema: what flo tells partners on the notifications topic. The zod schema is
 * the single source; schema/notification.schema.json is generated from it (a test keeps them in sync).
 */
import { z } from "zod";

export const NOTIFICATION_SPEC_VERSION = "1.0";
/** Longer failure reasons are truncated by the publisher (ending in "..."). */
export const MAX_REASON_LENGTH = 1024;
export const NOTIFICATION_TYPES = ["round-completed", "federation-completed", "federation-failed"] as const;
export type NotificationType = (typeof NOTIFICATION_TYPES)[number];

const federationId = z
  .string()
  .min(1)
  .max(256)
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, "letters, digits, '.', '_' or '-', starting with a letter or digit")
  .describe("The federation (orchestration instance) id.");
const round = z.number().int().min(1).describe("1-based round number.");
const time = z.iso.datetime({ offset: true }).describe("When the event happened (RFC 3339).");
// A query string could carry a SAS token (a secret); partners get a plain URI and their own access.
const modelUri = z
  .string()
  .url()
  .refine((u) => !u.includes("?") && !u.includes("#"), "a URI without query string or fragment (no SAS tokens in notifications)")
  .describe("Where the global model is (blob or azureml:// URI), without credentials.");
const modelSha256 = z
  .string()
  .regex(/^[0-9a-f]{64}$/, "64 lowercase hex digits")
  .describe("sha256 of the model file.");
const metrics = z.record(z.string().min(1), z.number()).describe("Metric name -> value (num_examples-weighted means).");

const base = {
  specVersion: z.literal(NOTIFICATION_SPEC_VERSION).describe("Schema version of this message."),
  federationId,
  time,
};

export const roundCompletedSchema = z
  .object({ ...base, type: z.literal("round-completed"), round, modelUri: modelUri.optional(), modelSha256: modelSha256.optional(), metrics: metrics.optional() })
  .strict();
export const federationCompletedSchema = z
  .object({
    ...base,
    type: z.literal("federation-completed"),
    round: round.optional().describe("The last round."),
    modelUri: modelUri.optional().describe("Where the delivered model is: the last round's, or the best evaluated one when the spec's evaluation.select chose it."),
    modelSha256: modelSha256.optional(),
    selectedRound: round.optional().describe("The round whose model is delivered (the last round unless evaluation.select chose an earlier one)."),
    metrics: metrics.optional(),
  })
  .strict();
export const federationFailedSchema = z
  .object({
    ...base,
    type: z.literal("federation-failed"),
    round: round.optional().describe("The round that failed, if any."),
    reason: z.string().min(1).max(MAX_REASON_LENGTH).describe("Why, for humans."),
    metrics: metrics.optional(),
  })
  .strict();

export const notificationSchema = z
  .discriminatedUnion("type", [roundCompletedSchema, federationCompletedSchema, federationFailedSchema])
  .describe("A flo partner notification (Service Bus message body, application/json).");

export type Notification = z.infer<typeof notificationSchema>;
export type RoundCompletedNotification = z.infer<typeof roundCompletedSchema>;
export type FederationCompletedNotification = z.infer<typeof federationCompletedSchema>;
export type FederationFailedNotification = z.infer<typeof federationFailedSchema>;

export const NOTIFICATION_SCHEMA_ID = "https://flo.dev/schema/notification.schema.json";

/** Draft-07 JSON Schema of the notification body. */
export function notificationJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(notificationSchema, { target: "draft-7", unrepresentable: "throw" }) as Record<string, unknown>;
  const { $schema, ...rest } = schema;
  return { $schema, $id: NOTIFICATION_SCHEMA_ID, title: "flo partner notification", ...rest };
}

/** The exact file content of schema/notification.schema.json. */
export function notificationJsonSchemaText(): string {
  return `${JSON.stringify(notificationJsonSchema(), null, 2)}\n`;
}
