/**
 * Request bodies checked against the models generated into @azure/arm-machinelearning 2.1.1 from the
 * Azure ML REST API 2022-10-01 (mfe.json): a reference the fake shares with the service's published
 * specification, not with flo's code. The package ships a CommonJS build (dist/index.js) but does not
 * export its `Mappers`; they are read from the operation spec an SDK call would send (its serializer
 * holds every generated mapper and the polymorphic discriminator table), captured before anything
 * leaves the process.
 *
 * What is checked: every property is one the model declares (a misspelt or invented field is caught),
 * required properties are present, types match (string, number, boolean, dictionary, array,
 * nested model), string constraints (pattern, length) hold, and read-only properties are not sent.
 * Polymorphic types (job type, input and output types, identity, limits) are resolved by their
 * discriminator. The generated table files the asset input/output types under `AssetJobInput.<type>`
 * rather than `JobInput.<type>` (which is why the SDK's own serializer drops `uri` and `mode`,
 * Azure/azure-sdk-for-js#29328): such a subtype is found by its discriminator value among the entries
 * that declare the same discriminator property. Enum values are not in these models (they are
 * extensible strings); the fake checks them against the SDK's `Known*` enums separately.
 */
import { AzureMachineLearningWorkspaces } from "@azure/arm-machinelearning";
import type { CompositeMapper, Mapper, OperationSpec } from "@azure/core-client";

type ModelMappers = Record<string, Mapper> & { discriminators?: Record<string, CompositeMapper> };

interface OperationModels {
  body: Mapper;
  mappers: ModelMappers;
}

/** The body mapper and model table of one SDK operation, captured from the spec it would send. */
function captureOperation(call: (client: AzureMachineLearningWorkspaces) => Promise<unknown>): Promise<OperationModels> {
  const client = new AzureMachineLearningWorkspaces({ getToken: () => Promise.resolve({ token: "unused", expiresOnTimestamp: 0 }) }, "00000000-0000-0000-0000-000000000000");
  let captured: OperationSpec | undefined;
  client.sendOperationRequest = (_args: unknown, spec: OperationSpec) => {
    captured = spec;
    return Promise.reject(new Error("captured"));
  };
  return call(client).then(
    () => Promise.reject(new Error("the SDK call was expected to stop at sendOperationRequest")),
    () => {
      const mapper = captured?.requestBody?.mapper;
      const mappers = (captured?.serializer as { modelMappers?: ModelMappers } | undefined)?.modelMappers;
      if (!mapper || !mappers) throw new Error("the SDK operation spec carries no request body mapper");
      return { body: mapper, mappers };
    },
  );
}

let jobModels: Promise<OperationModels> | undefined;
let codeVersionModels: Promise<OperationModels> | undefined;

const composite = (mapper: Mapper, mappers: ModelMappers): CompositeMapper => {
  const type = (mapper as CompositeMapper).type;
  if (type.modelProperties) return mapper as CompositeMapper;
  const named = type.className ? mappers[type.className] : undefined;
  return (named as CompositeMapper | undefined) ?? (mapper as CompositeMapper);
};

/** The subtype a polymorphic value's discriminator selects, or undefined when the value names none. */
function subtype(mapper: CompositeMapper, value: Record<string, unknown>, mappers: ModelMappers): CompositeMapper | undefined {
  const discriminator = mapper.type.polymorphicDiscriminator;
  if (!discriminator) return mapper;
  const kind = value[discriminator.serializedName];
  if (typeof kind !== "string") return undefined;
  const table = mappers.discriminators ?? {};
  const parent = mapper.type.uberParent ?? mapper.type.className;
  const direct = table[`${parent}.${kind}`];
  if (direct) return direct;
  // Misfiled subtypes (see the header): same discriminator value, same discriminator property.
  return Object.entries(table).find(([key, candidate]) => key.endsWith(`.${kind}`) && candidate.type.modelProperties?.[discriminator.clientName] !== undefined)?.[1];
}

function checkValue(mapper: Mapper, value: unknown, path: string, mappers: ModelMappers, problems: string[]): void {
  if (value === null) {
    if (!mapper.nullable) problems.push(`${path}: null is not allowed`);
    return;
  }
  const name = mapper.type.name;
  const expect = (ok: boolean, what: string) => {
    if (!ok) problems.push(`${path}: expected ${what}, got ${JSON.stringify(value)}`);
    return ok;
  };
  switch (name) {
    case "String":
    case "DateTime":
    case "TimeSpan":
    case "Uuid":
      if (expect(typeof value === "string", "a string")) {
        const { Pattern, MinLength, MaxLength } = mapper.constraints ?? {};
        const text = value as string;
        if (Pattern && !new RegExp(Pattern).test(text)) problems.push(`${path}: expected to match ${String(Pattern)}, got ${JSON.stringify(text)}`);
        if (MinLength !== undefined && text.length < MinLength) problems.push(`${path}: expected at least ${MinLength} characters`);
        if (MaxLength !== undefined && text.length > MaxLength) problems.push(`${path}: expected at most ${MaxLength} characters`);
      }
      return;
    case "Number":
      expect(typeof value === "number", "a number");
      return;
    case "Boolean":
      expect(typeof value === "boolean", "a boolean");
      return;
    case "Enum":
      expect((mapper.type as { allowedValues: unknown[] }).allowedValues.includes(value), "an allowed value");
      return;
    case "Sequence":
      if (expect(Array.isArray(value), "an array")) (value as unknown[]).forEach((item, i) => checkValue((mapper.type as { element: Mapper }).element, item, `${path}[${i}]`, mappers, problems));
      return;
    case "Dictionary":
      if (expect(typeof value === "object" && !Array.isArray(value), "an object")) {
        for (const [key, item] of Object.entries(value as Record<string, unknown>)) checkValue((mapper.type as { value: Mapper }).value, item, `${path}.${key}`, mappers, problems);
      }
      return;
    case "Composite":
      if (expect(typeof value === "object" && !Array.isArray(value), "an object")) checkComposite(mapper, value as Record<string, unknown>, path, mappers, problems);
      return;
    default:
      // "Object" and the like: any JSON.
      return;
  }
}

function checkComposite(mapper: Mapper, value: Record<string, unknown>, path: string, mappers: ModelMappers, problems: string[]): void {
  const base = composite(mapper, mappers);
  const model = subtype(base, value, mappers);
  if (!model) {
    const discriminator = base.type.polymorphicDiscriminator!;
    problems.push(`${path}.${discriminator.serializedName}: expected a ${base.type.className} type the REST model knows, got ${JSON.stringify(value[discriminator.serializedName])}`);
    return;
  }
  const properties = composite(model, mappers).type.modelProperties ?? {};
  const bySerializedName = new Map(Object.values(properties).map((property) => [property.serializedName ?? "", property]));
  for (const [key, item] of Object.entries(value)) {
    const property = bySerializedName.get(key);
    if (!property) {
      problems.push(`${path}.${key}: not a property of ${model.type.className}`);
      continue;
    }
    if (property.readOnly) problems.push(`${path}.${key}: read-only in ${model.type.className} (set by the service)`);
    else checkValue(property, item, `${path}.${key}`, mappers, problems);
  }
  for (const property of Object.values(properties)) {
    if (property.required && !property.readOnly && value[property.serializedName ?? ""] === undefined) problems.push(`${path}.${property.serializedName}: required by ${model.type.className}`);
  }
}

function problemsOf(models: OperationModels, body: unknown): string[] {
  const problems: string[] = [];
  checkValue(models.body, body, "body", models.mappers, problems);
  return problems;
}

/** Problems of a job PUT body (`Jobs_CreateOrUpdate`) against the SDK's generated JobBase model; empty when valid. */
export async function jobBodyModelProblems(body: unknown): Promise<string[]> {
  jobModels ??= captureOperation((client) => client.jobs.createOrUpdate("rg", "ws", "job", { properties: { jobType: "Command" } }));
  return problemsOf(await jobModels, body);
}

/** Problems of a code version PUT body (`CodeVersions_CreateOrUpdate`) against the SDK's generated CodeVersion model. */
export async function codeVersionBodyModelProblems(body: unknown): Promise<string[]> {
  codeVersionModels ??= captureOperation((client) => client.codeVersions.createOrUpdate("rg", "ws", "code", "1", { properties: {} }));
  return problemsOf(await codeVersionModels, body);
}
