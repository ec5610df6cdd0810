/**
 * Invoking captured handlers the way the Functions Node worker does: through the app's own
 * `ProgrammingModel.getInvocationModel(coreCtx)`, so RPC <-> JS conversions are the worker's.
 */
import { randomUUID } from "crypto";
import type { CoreFunctionMetadata, FunctionRegistry, RegisteredFunction } from "./functionsCore";
import { echoUserLogs } from "./settings";

/** The worker's RPC TypedData (only the members flo produces or consumes). */
export interface TypedData {
  string?: string;
  json?: string;
  bytes?: Uint8Array | number[];
  stream?: Uint8Array;
  http?: Record<string, unknown>;
  int?: number;
  double?: number;
  [key: string]: unknown;
}

export interface InvocationResult {
  returnValue?: TypedData;
  outputData: Array<{ name: string; data: TypedData }>;
}

export type InvocationLogLevel = "trace" | "debug" | "information" | "warning" | "error" | "critical" | "none";
export type InvocationLogger = (level: InvocationLogLevel, category: "user" | "system", message: string, functionName: string) => void;

export interface InvokeOptions {
  triggerMetadata?: Record<string, TypedData>;
  invocationId?: string;
  retryContext?: { retryCount: number; maxRetryCount: number };
}

export interface Invoker {
  invoke(functionName: string, triggerData: TypedData, extraInputs?: Record<string, TypedData>, options?: InvokeOptions | Record<string, TypedData>): Promise<InvocationResult>;
  has(functionName: string): boolean;
  get(functionName: string): RegisteredFunction | undefined;
  readonly registry: FunctionRegistry;
}

export class FunctionNotFoundError extends Error {
  constructor(
    readonly functionName: string,
    available: string[],
  ) {
    super(`Function "${functionName}" is not registered (registered: ${available.join(", ") || "none"})`);
    this.name = "FunctionNotFoundError";
  }
}

export class InvocationSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "InvocationSetupError";
  }
}

const CLIENT_BINDING_TYPES = new Set(["durableclient", "orchestrationclient"]);

/** Names of a function's `durableClient` / `orchestrationClient` inputs (random per process). */
export function durableClientBindings(metadata: CoreFunctionMetadata): string[] {
  return Object.entries(metadata.bindings)
    .filter(([, binding]) => CLIENT_BINDING_TYPES.has(String(binding.type).toLowerCase()) && binding.direction !== "out")
    .map(([name]) => name);
}

/** The single trigger binding of a function (type ending in "Trigger", like the worker's `isTrigger`). */
export function triggerBinding(metadata: CoreFunctionMetadata): { name: string; type: string; binding: CoreFunctionMetadata["bindings"][string] } {
  const entry = Object.entries(metadata.bindings).find(([, b]) => /trigger$/i.test(String(b.type)));
  if (!entry) throw new InvocationSetupError(`Function "${metadata.name}" has no trigger binding`);
  return { name: entry[0], type: String(entry[1].type), binding: entry[1] };
}

function isInvokeOptions(value: unknown): value is InvokeOptions {
  if (!value || typeof value !== "object") return false;
  const keys = Object.keys(value);
  return keys.length > 0 && keys.every((k) => k === "triggerMetadata" || k === "invocationId" || k === "retryContext");
}

const defaultLogger: InvocationLogger = (level, category, message, functionName) => {
  if (level === "error" || level === "critical" || level === "warning") console.error(`[${functionName}] ${message}`);
  else if (category === "user" && echoUserLogs()) console.log(`[${functionName}] ${message}`);
};

export interface CreateInvokerOptions {
  logger?: InvocationLogger;
}

export function createInvoker(registry: FunctionRegistry, options: CreateInvokerOptions = {}): Invoker {
  const logger = options.logger ?? defaultLogger;
  const model = registry.programmingModel;

  async function runHooks(hookName: string, hookContext: Record<string, unknown>): Promise<void> {
    for (const hook of registry.hooks) {
      if (hook.hookName === hookName) await hook.callback(hookContext);
    }
  }

  return {
    registry,
    has: (name) => registry.functions.has(name),
    get: (name) => registry.functions.get(name),
    async invoke(functionName, triggerData, extraInputs = {}, optionsOrMetadata) {
      const fn = registry.functions.get(functionName);
      if (!fn) throw new FunctionNotFoundError(functionName, [...registry.functions.keys()]);
      if (!model) throw new InvocationSetupError(`No programming model captured for ${registry.entryPath}`);
      const invokeOptions: InvokeOptions = isInvokeOptions(optionsOrMetadata) ? optionsOrMetadata : { triggerMetadata: optionsOrMetadata };
      const trigger = triggerBinding(fn.metadata);
      const inputData = [{ name: trigger.name, data: triggerData }];
      for (const [name, data] of Object.entries(extraInputs)) {
        if (!fn.metadata.bindings[name]) {
          throw new InvocationSetupError(`Function "${functionName}" has no binding named "${name}" (bindings: ${Object.keys(fn.metadata.bindings).join(", ")})`);
        }
        inputData.push({ name, data });
      }
      const invocationId = invokeOptions.invocationId ?? randomUUID();
      const coreCtx = {
        invocationId,
        request: {
          invocationId,
          functionId: functionName,
          inputData,
          triggerMetadata: invokeOptions.triggerMetadata ?? {},
          retryContext: invokeOptions.retryContext,
        },
        metadata: fn.metadata,
        state: undefined as string | undefined,
        log: (level: InvocationLogLevel, category: "user" | "system", message: string) => logger(level, category, message, functionName),
      };
      const invocationModel = model.getInvocationModel(coreCtx);
      const { context, inputs } = await invocationModel.getArguments();
      coreCtx.state = "preInvocationHooks";
      const preCtx: Record<string, unknown> = { invocationContext: context, inputs, functionCallback: fn.callback, hookData: {}, appHookData: {} };
      await runHooks("preInvocation", preCtx);
      coreCtx.state = "invocation";
      let result: unknown;
      let error: unknown;
      try {
        result = await invocationModel.invokeFunction(context, preCtx.inputs as unknown[], preCtx.functionCallback as typeof fn.callback);
      } catch (err) {
        error = err;
      }
      coreCtx.state = "postInvocationHooks";
      const postCtx: Record<string, unknown> = { invocationContext: context, inputs, result, error, hookData: preCtx.hookData, appHookData: {} };
      await runHooks("postInvocation", postCtx);
      // eslint-disable-next-line @typescript-eslint/only-throw-error -- a hook may replace the error with any value; it is rethrown as is
      if (postCtx.error) throw postCtx.error;
      const response = await invocationModel.getResponse(context, postCtx.result);
      return {
        returnValue: response.returnValue as TypedData | undefined,
        outputData: (response.outputData ?? []) as Array<{ name: string; data: TypedData }>,
      };
    },
  };
}

/** Decode a TypedData the way the worker's `fromRpcTypedData` does for the simple members. */
export function fromTypedData(data: TypedData | undefined | null): unknown {
  if (!data) return undefined;
  if (data.string !== undefined && data.string !== null) {
    try {
      return JSON.parse(data.string);
    } catch {
      return data.string;
    }
  }
  if (data.json !== undefined && data.json !== null) return JSON.parse(data.json);
  if (data.bytes !== undefined && data.bytes !== null) return Buffer.from(data.bytes as Uint8Array);
  if (data.int !== undefined && data.int !== null) return data.int;
  if (data.double !== undefined && data.double !== null) return data.double;
  if (data.http !== undefined) return data.http;
  return undefined;
}
