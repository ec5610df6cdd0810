/**
 * The registerModel activity: the delivered model becomes one `custom_model` version in the
 * federation owner's Azure ML workspace (the spec's `registration`), pointing at the federation's
 * final folder (model.safetensors and its model card), tagged with the federation, the round and
 * the sha256, with the final evaluation's metrics as properties. One version per federation: a
 * retried activity or a resumed federation finds the version by its floFederation tag.
 */
import { FLO_TAGS } from "../compute/siloCompute";
import { finalFilePath, MODEL_FILE } from "../models/storeLayout";
import type { FederationServices } from "./services";
import type { ModelRegistration, RegisterModelInput } from "./types";

/** The tags and properties of the model version (pure). */
export function modelVersionRecord(input: RegisterModelInput): { tags: Record<string, string>; properties: Record<string, string>; description: string } {
  const tags = {
    [FLO_TAGS.federation]: input.federationId,
    floRound: String(input.selection.round),
    floModelSha256: input.model.sha256,
    floSpecSha256: input.spec.sha256,
  };
  const properties: Record<string, string> = {};
  for (const [name, value] of Object.entries(input.finalEvaluation?.metrics ?? {})) properties[`floEvaluation.${name}`] = String(value);
  if (input.selection.metric) properties.floSelectionMetric = input.selection.metric;
  const description = `flo federation ${input.federationId}: round ${input.selection.round}'s model (${input.selection.reason})`;
  return { tags, properties, description: description.slice(0, 1000) };
}

/** The folder of a file URI, with its trailing slash (the version points at the model and its card). */
const folderUri = (fileUri: string) => fileUri.slice(0, fileUri.lastIndexOf("/") + 1);

export async function registerModel(services: FederationServices, input: RegisterModelInput): Promise<ModelRegistration> {
  const spec = await services.loadSpec(input.spec);
  if (!spec.registration) throw new Error(`federation ${input.federationId}: the spec has no registration section`);
  const record = modelVersionRecord(input);
  const registered = await services.modelRegistry(spec.registration.workspace).registerOnce({
    name: spec.registration.name,
    modelUri: folderUri(services.store.uri(finalFilePath(input.federationId, MODEL_FILE))),
    ownerTag: FLO_TAGS.federation,
    ...record,
  });
  return registered;
}
