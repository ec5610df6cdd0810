/**
 * Capturing a Functions v4 Node app's registrations without the Functions worker.
 *
 * The real worker injects a module named `@azure/functions-core`; `@azure/functions` calls its
 * `setProgrammingModel` once and `registerFunction(metadata, callback)` per `app.*` registration.
 * We hook `Module._load` so that name resolves to a dispatcher that forwards to the registry of the
 * app currently being loaded.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports -- the CommonJS Module object itself: its _load is what we hook
import Module = require("module");
import * as path from "path";

export interface RpcBindingInfo {
  type: string;
  /** "in", "out" or "inout". */
  direction?: string;
  dataType?: string;
  [key: string]: unknown;
}

export interface CoreFunctionMetadata {
  name: string;
  bindings: Record<string, RpcBindingInfo>;
  retryOptions?: unknown;
  [key: string]: unknown;
}

export type CoreFunctionCallback = (context: unknown, ...inputs: unknown[]) => unknown;

export interface RegisteredFunction {
  metadata: CoreFunctionMetadata;
  callback: CoreFunctionCallback;
}

/** The subset of `@azure/functions`' ProgrammingModel the invoker uses. */
export interface ProgrammingModelLike {
  name: string;
  version: string;
  getInvocationModel(coreCtx: unknown): {
    getArguments(): Promise<{ context: unknown; inputs: unknown[] }>;
    invokeFunction(context: unknown, inputs: unknown[], handler: CoreFunctionCallback): Promise<unknown>;
    getResponse(context: unknown, result: unknown): Promise<{ returnValue?: unknown; outputData?: unknown[] }>;
  };
}

export interface RegisteredHook {
  hookName: string;
  callback: (context: unknown) => unknown;
}

export interface FunctionRegistry {
  entryPath: string;
  functions: Map<string, RegisteredFunction>;
  programmingModel: ProgrammingModelLike | undefined;
  hooks: RegisteredHook[];
  /** What the entry module exported (apps may export handlers or test controls). */
  appExports: unknown;
}

export class FunctionsAppLoadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "FunctionsAppLoadError";
  }
}

const CORE_MODULE_NAME = "@azure/functions-core";

/** Registry receiving registrations right now (set only while an app's entry is being required). */
let activeRegistry: FunctionRegistry | undefined;

function requireActiveRegistry(what: string): FunctionRegistry {
  if (!activeRegistry) {
    throw new FunctionsAppLoadError(`${what} was called outside loadFunctionsApp(): registrations must happen while the app's entry module loads`);
  }
  return activeRegistry;
}

/** The object `require("@azure/functions-core")` returns once the hook is installed. */
const coreApi = {
  version: "4.0.0-flo",
  hostVersion: "4.1000.0",
  get programmingModel(): unknown {
    return activeRegistry?.programmingModel;
  },
  setProgrammingModel(model: ProgrammingModelLike): void {
    requireActiveRegistry("setProgrammingModel").programmingModel = model;
  },
  getProgrammingModel(): unknown {
    return activeRegistry?.programmingModel;
  },
  registerFunction(metadata: CoreFunctionMetadata, callback: CoreFunctionCallback): { dispose(): void } {
    const registry = requireActiveRegistry("registerFunction");
    if (registry.functions.has(metadata.name)) {
      throw new FunctionsAppLoadError(`A function named "${metadata.name}" is already registered in ${registry.entryPath}`);
    }
    registry.functions.set(metadata.name, { metadata, callback });
    return { dispose: () => registry.functions.delete(metadata.name) };
  },
  registerHook(hookName: string, callback: (context: unknown) => unknown): { dispose(): void } {
    const registry = requireActiveRegistry("registerHook");
    const hook = { hookName, callback };
    registry.hooks.push(hook);
    return { dispose: () => registry.hooks.splice(registry.hooks.indexOf(hook) >>> 0, 1) };
  },
  log(level: string, category: string, message: string): void {
    if (level === "error" || level === "critical" || level === "warning") console.error(`[${category}] ${message}`);
  },
};

type ModuleLoad = (request: string, parent: unknown, isMain: boolean) => unknown;
interface ModuleInternals {
  _load: ModuleLoad;
  _cache: Record<string, unknown>;
}
/**
 * Under jest, `require("module")` is a subclass of Node's Module whose `createRequire` returns
 * jest's require (it copies `_load` too); walk up to Node's base class so the hook and loads are native.
 */
function nativeModuleClass(): typeof Module {
  // Function.prototype may belong to another realm under jest, so test for own `_load` instead.
  let candidate: object = Module;
  for (let parent = Object.getPrototypeOf(candidate) as object | null; parent && Object.prototype.hasOwnProperty.call(parent, "_load"); parent = Object.getPrototypeOf(parent) as object | null) {
    candidate = parent;
  }
  return candidate as typeof Module;
}
const NativeModule = nativeModuleClass();
const moduleInternals = NativeModule as unknown as ModuleInternals;
let originalLoad: ModuleLoad | undefined;

/** Idempotent. Must run before the app (and `@azure/functions`) is first required. */
export function installFunctionsCoreHook(): void {
  if (originalLoad) return;
  originalLoad = moduleInternals._load;
  const previous = originalLoad;
  moduleInternals._load = function floFunctionsCoreLoad(request: string, parent: unknown, isMain: boolean): unknown {
    if (request === CORE_MODULE_NAME) return coreApi;
    return previous.call(this, request, parent, isMain);
  };
}

export function uninstallFunctionsCoreHook(): void {
  if (!originalLoad) return;
  moduleInternals._load = originalLoad;
  originalLoad = undefined;
}

/**
 * Module-level state in `@azure/functions` (the cached core API and "programming model already
 * set" flag) and in the app itself means a second app in the same process would register nothing.
 * We therefore evict the app's own files and both Functions packages from Node's require cache
 * before every load, so each app gets fresh module instances bound to its own registry.
 */
function evictFromRequireCache(appDir: string): void {
  const sep = path.sep;
  const packageMarkers = [`${sep}node_modules${sep}@azure${sep}functions${sep}`, `${sep}node_modules${sep}durable-functions${sep}`];
  for (const key of Object.keys(moduleInternals._cache)) {
    const inApp = key.startsWith(appDir + sep) && !key.slice(appDir.length).includes(`${sep}node_modules${sep}`);
    if (inApp || packageMarkers.some((marker) => key.includes(marker))) delete moduleInternals._cache[key];
  }
}

export interface LoadFunctionsAppOptions {
  /** Directory whose modules are evicted from the require cache (default: the entry's directory). */
  appRoot?: string;
}

/**
 * Load a Functions app entry module (compiled JavaScript) with the native Node loader, capturing
 * its registrations in a fresh registry. Works under jest too: jest's own `require` bypasses
 * `Module._load`, so we load through `Module.createRequire`.
 */
export function loadFunctionsApp(entry: string | string[], options: LoadFunctionsAppOptions = {}): FunctionRegistry {
  installFunctionsCoreHook();
  const entries = (Array.isArray(entry) ? entry : [entry]).map((e) => path.resolve(e));
  if (entries.length === 0) throw new FunctionsAppLoadError("No Functions app entry to load");
  const absoluteEntry = entries[0];
  const registry: FunctionRegistry = { entryPath: absoluteEntry, functions: new Map(), programmingModel: undefined, hooks: [], appExports: undefined };
  if (activeRegistry) throw new FunctionsAppLoadError(`Cannot load ${absoluteEntry} while ${activeRegistry.entryPath} is loading`);
  const nativeRequire = NativeModule.createRequire(absoluteEntry);
  const resolvedEntries: string[] = [];
  for (const file of entries) {
    try {
      resolvedEntries.push(nativeRequire.resolve(file));
    } catch (err) {
      throw new FunctionsAppLoadError(`Functions app entry not found: ${file} (expected a compiled .js file)`, { cause: err });
    }
  }
  evictFromRequireCache(path.resolve(options.appRoot ?? path.dirname(resolvedEntries[0])));
  activeRegistry = registry;
  try {
    // Several entries (a `main` glob): each file registers its own functions, in order, like the worker.
    for (const resolved of resolvedEntries) {
      try {
        const exports: unknown = nativeRequire(resolved);
        if (resolved === resolvedEntries[0]) registry.appExports = exports;
      } catch (err) {
        throw new FunctionsAppLoadError(`Loading Functions app ${resolved} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err });
      }
    }
  } finally {
    activeRegistry = undefined;
  }
  if (registry.functions.size > 0 && !registry.programmingModel) {
    throw new FunctionsAppLoadError(`${resolvedEntries.join(", ")} registered functions but no programming model (is @azure/functions v4 used?)`);
  }
  return registry;
}
