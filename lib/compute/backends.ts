/**
 * The compute backends flo knows, by the spec's `compute.type`. A new backend is one folder
 * exporting a ComputeBackend plus one entry here: the spec's `compute` union, the services'
 * `computeFor` and the job-events parser are all built from this list.
 */
import { z } from "zod";
import type { ClosableSiloCompute, ComputeBackend, ComputeContext } from "./siloCompute";
import { decodeEventBody, describeValue, EventParseError, type ParsedJobEvent } from "./jobEvents";
import { ComputeDisabledError, localBackend } from "./local/backend";
import { azureMlBackend } from "./azureml/backend";

/**
 * Event parsers are tried in this order. Azure ML's reads any Event Grid or CloudEvents body (other
 * Event Grid events are "not ours"), so it comes last.
 */
const BACKENDS = [localBackend, azureMlBackend] as const;

type SpecSchemaOf<Backend> = Backend extends ComputeBackend<infer Schema> ? Schema : never;
type SpecSchemasOf<Backends extends readonly unknown[]> = { -readonly [K in keyof Backends]: SpecSchemaOf<Backends[K]> };
type SpecSchemas = SpecSchemasOf<typeof BACKENDS>;

/** The spec's `compute` block: one of the backends' schemas, by `type`. */
export const computeSpecSchema = z.discriminatedUnion("type", BACKENDS.map((backend) => backend.specSchema) as unknown as SpecSchemas);

export type ComputeSpec = z.output<typeof computeSpecSchema>;
export type ComputeType = ComputeSpec["type"];

/** The backend of a compute `type`. */
function backendOf(type: string): ComputeBackend {
  const backend = BACKENDS.find((candidate) => candidate.specSchema.shape.type.value === type);
  if (!backend) throw new Error(`no compute backend of type ${JSON.stringify(type)} (known: ${computeTypes().join(", ")})`);
  return backend;
}

export { ComputeDisabledError };

/**
 * Compute types that run the spec's command on the machine running flo: a host builds them only
 * when its settings opt in (their backend's create throws ComputeDisabledError otherwise), so
 * starting a federation checks them before anything is stored.
 */
export function computeNeedsOptIn(type: string): boolean {
  return type === localBackend.specSchema.shape.type.value;
}

export function computeTypes(): string[] {
  return BACKENDS.map((backend) => backend.specSchema.shape.type.value);
}

/** Builds SiloComputes for compute blocks, sharing one per backend instance key. */
export class ComputeInstances {
  private readonly instances = new Map<string, ClosableSiloCompute>();

  constructor(private readonly context: ComputeContext) {}

  for(config: ComputeSpec): ClosableSiloCompute {
    const backend = backendOf(config.type);
    const key = `${config.type}:${backend.instanceKey(config)}`;
    let compute = this.instances.get(key);
    if (!compute) {
      compute = backend.create(config, this.context);
      this.instances.set(key, compute);
    }
    return compute;
  }

  close(): void {
    for (const compute of this.instances.values()) compute.close?.();
    this.instances.clear();
  }
}

/**
 * Parses one job-events queue message body with the backends' parsers: a flo job event, or "not
 * ours". Throws EventParseError for a body no backend reads (dead-letter it with its message).
 */
export function parseJobEvent(body: unknown): ParsedJobEvent {
  const event = decodeEventBody(body);
  for (const backend of BACKENDS) {
    const parsed = backend.parseEvent?.(event);
    if (parsed) return parsed;
  }
  throw new EventParseError("(body)", `a job event of a compute backend (${computeTypes().join(", ")})`, describeValue(event));
}
