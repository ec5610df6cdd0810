/** The `azureml` compute backend: an Azure ML command job in the silo's own workspace. */
import { z } from "zod";
import type { ComputeBackend } from "../siloCompute";
import { parseAzureMlJobEvent } from "./events";
import { azureMlSiloComputeFromSettings } from "./settings";

/** Azure resource group: letters, digits, _ - . ( ), up to 90, not ending with a period. */
export const RESOURCE_GROUP_NAME = /^[-\w.()]{0,89}[-\w()]$/;
/** Azure ML workspace (ARM pattern). */
export const WORKSPACE_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$/;
/** Azure ML compute: starts with a letter, letters/digits/hyphens, 2-24 characters, no trailing hyphen. */
export const COMPUTE_NAME = /^[a-zA-Z][a-zA-Z0-9-]{0,22}[a-zA-Z0-9]$/;
export const DATASTORE_NAME = /^[A-Za-z0-9_]{1,255}$/;
/** The silo's secret key for secure aggregation, in a datastore of its own that flo cannot read. */
export const SECRET_KEY_LOCATION = /^azureml:\/\/datastores\/[A-Za-z0-9_]{1,255}\/paths\/\S+$/;
/** Blob container: 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit. */
export const CONTAINER_NAME = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

const specSchema = z
  .strictObject({
    type: z.literal("azureml"),
    subscriptionId: z.guid().meta({ description: "Azure subscription id (GUID) of the silo's workspace." }),
    resourceGroup: z.string().regex(RESOURCE_GROUP_NAME).meta({ description: "Resource group of the silo's workspace." }),
    workspace: z.string().regex(WORKSPACE_NAME).meta({ description: "Azure ML workspace name." }),
    computeName: z.string().regex(COMPUTE_NAME).meta({ description: "Compute cluster the job runs on." }),
    exchangeDatastore: z
      .string()
      .regex(DATASTORE_NAME)
      .refine((name) => name.toLowerCase() !== "workspaceblobstore", {
        message: "a dedicated exchange datastore, not workspaceblobstore (the orchestrator's read access covers the whole container)",
      })
      .meta({
        description: "Silo datastore (a dedicated blob container) receiving the job's model_update output; the orchestrator reads it, read-only. Required.",
      }),
    exchangeContainer: z
      .string()
      .regex(CONTAINER_NAME)
      .optional()
      .meta({ description: "Blob container the orchestrator was granted read on; when given, flo check verifies the datastore points at it." }),
    secretKey: z.string().regex(SECRET_KEY_LOCATION).optional().meta({
      description:
        "Secure aggregation: the silo's secret key file (`flo silo keygen`) as azureml://datastores/<private datastore>/paths/<file>, a uri_file input only the silo's jobs read (never the exchange datastore).",
    }),
  })
  .meta({ description: "An Azure ML command job in the silo's own workspace." });

export const azureMlBackend: ComputeBackend<typeof specSchema> = {
  specSchema,
  instanceKey: (config) => `${config.subscriptionId}/${config.resourceGroup}/${config.workspace}/${config.computeName}`,
  create: (config, context) => azureMlSiloComputeFromSettings(config, { credential: context.credential(), env: context.env }),
  parseEvent: parseAzureMlJobEvent,
};
