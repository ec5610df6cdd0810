/**
 * Service Bus output bindings (`output.serviceBusQueue` / `output.serviceBusTopic`, as extra outputs
 * or as the return binding): after an invocation, the host sends what the function set, like the
 * Functions host does. An array value sends one message per element. A failed send fails the
 * invocation (the host reports output-binding errors as function failures).
 */
import type { Invoker, TypedData } from "../../invoke";
import { fromTypedData } from "../../invoke";
import { resolveAppSettingExpression } from "../../settings";
import type { OutgoingServiceBusMessage } from "../../../messaging/message";
import { DEFAULT_SERVICE_BUS_CONNECTION } from "./serviceBusTriggers";

export type ServiceBusSend = (entityName: string, messages: OutgoingServiceBusMessage[], connection: string) => Promise<void>;

function outputValue(data: TypedData): unknown {
  // Text stays text (the host sends it as a string body); everything else decodes like the worker.
  return typeof data.string === "string" ? data.string : fromTypedData(data);
}

/** Wraps an invoker so that Service Bus output bindings are delivered through `send`. */
export function withServiceBusOutputs(invoker: Invoker, send: ServiceBusSend, settings: Record<string, string | undefined>): Invoker {
  return {
    registry: invoker.registry,
    has: (name) => invoker.has(name),
    get: (name) => invoker.get(name),
    async invoke(functionName, triggerData, extraInputs, options) {
      const result = await invoker.invoke(functionName, triggerData, extraInputs, options);
      const fn = invoker.get(functionName);
      if (!fn) return result;
      for (const [bindingName, binding] of Object.entries(fn.metadata.bindings)) {
        if (binding.direction !== "out" || String(binding.type).toLowerCase() !== "servicebus") continue;
        const data = bindingName === "$return" ? result.returnValue : result.outputData.find((o) => o.name === bindingName)?.data;
        if (!data) continue;
        const value = outputValue(data);
        if (value === undefined || value === null) continue;
        const entityField = typeof binding.queueName === "string" ? "queueName" : "topicName";
        const entity = binding[entityField];
        if (typeof entity !== "string" || entity === "") {
          throw new Error(`Function "${functionName}" output binding "${bindingName}": expected queueName or topicName, got neither`);
        }
        const connection =
          typeof binding.connection === "string" ? resolveAppSettingExpression(binding.connection, settings, `${functionName}.${bindingName}.connection`) : DEFAULT_SERVICE_BUS_CONNECTION;
        const bodies: unknown[] = Array.isArray(value) ? value : [value];
        await send(
          resolveAppSettingExpression(entity, settings, `${functionName}.${bindingName}.${entityField}`),
          bodies.map((body) => ({ body })),
          connection,
        );
      }
      return result;
    },
  };
}
