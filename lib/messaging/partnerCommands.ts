/**
 * Commands partners send flo on the partner-commands queue (docs/partners.md): the message body
 * schema and the application property that names the sender.
 */
import { z } from "zod";

const NAME = /^[a-z0-9-]{1,40}$/;
const RUN_ID = /^[a-z0-9][a-z0-9-]{0,22}$/;
const literal = z.union([z.string(), z.number(), z.boolean()]);

/** What partners may send on the partner-commands queue (docs/partners.md). */
export const partnerCommandSchema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("start-federation"),
    spec: z.string().regex(NAME).describe("Name of a spec registered with flo (FLO_SPEC_REGISTRY)."),
    runId: z.string().regex(RUN_ID).optional().describe("Suffix of the federation id; default: a UTC timestamp."),
    parameters: z.record(z.string(), literal).optional().describe("Overrides of training.parameters."),
  }),
  z.strictObject({
    type: z.literal("cancel-federation"),
    federationId: z.string().regex(/^[a-z0-9][a-z0-9-]{0,63}$/),
    reason: z.string().max(500).optional(),
  }),
  z.strictObject({
    type: z.literal("data-updated"),
    spec: z.string().regex(NAME),
    silo: z
      .string()
      .regex(/^[a-z0-9-]{1,32}$/)
      .optional()
      .describe("The silo whose data changed."),
  }),
]);
export type PartnerCommand = z.infer<typeof partnerCommandSchema>;

/** The application property naming the sending partner (Service Bus RBAC authenticates the sender; this names it). */
export const PARTNER_PROPERTY = "floPartner";
