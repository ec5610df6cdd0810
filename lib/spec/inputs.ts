/** The inputs one silo's job receives in one round: the strings the job contract passes, and typed data inputs. */
import { GLOBAL_MODEL_INPUT } from "./command";
import type { FederationSpec } from "./types";
import type { DataInputMode, DataInputType } from "../compute/siloCompute";

export interface SiloJobInputsOptions {
  federationId: string;
  round: number;
  /** The round's global model folder (URI or path); absent in round 1 without an initial model. */
  globalModel?: string;
  /** The job's own literal parameters, when it is not a training job (default: training.parameters). */
  parameters?: Record<string, string | number | boolean>;
}

/** A silo's typed data inputs (`{type, path, mode}`), by name; its literal inputs are in siloJobInputs. */
export function siloDataInputs(spec: FederationSpec, siloName: string): Record<string, { type: DataInputType; path: string; mode: DataInputMode }> {
  const silo = spec.silos.find((s) => s.name === siloName);
  if (!silo) throw new RangeError(`siloDataInputs: expected a silo of federation "${spec.name}", got ${JSON.stringify(siloName)}`);
  const inputs: Record<string, { type: DataInputType; path: string; mode: DataInputMode }> = {};
  for (const [name, value] of Object.entries(silo.inputs)) {
    if (typeof value === "object") inputs[name] = { type: value.type, path: value.path, mode: value.mode };
  }
  return inputs;
}

/**
 * training.parameters (or the job's own `parameters`), then the silo's own inputs, then the built-ins `round`, `silo`,
 * `federation_id` and (when given) `global_model`. Validation guarantees the three sources never
 * define the same name. Numbers and booleans become their JavaScript text (0.01 -> "0.01").
 */
export function siloJobInputs(spec: FederationSpec, siloName: string, options: SiloJobInputsOptions): Record<string, string> {
  const silo = spec.silos.find((s) => s.name === siloName);
  if (!silo) throw new RangeError(`siloJobInputs: expected a silo of federation "${spec.name}", got ${JSON.stringify(siloName)}`);
  const inputs: Record<string, string> = {};
  for (const [name, value] of Object.entries({ ...(options.parameters ?? spec.training.parameters), ...silo.inputs })) {
    if (typeof value !== "object") inputs[name] = String(value);
  }
  inputs.round = String(options.round);
  inputs.silo = silo.name;
  inputs.federation_id = options.federationId;
  if (options.globalModel !== undefined) inputs[GLOBAL_MODEL_INPUT] = options.globalModel;
  return inputs;
}
