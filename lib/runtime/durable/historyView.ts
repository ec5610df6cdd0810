/**
 * The `historyEvents` view of the status API, reshaped the way the extension does it
 * (DurableClient.GetDurableOrchestrationStatusAsync): event types as names, OrchestratorStarted /
 * OrchestratorCompleted dropped, each TaskScheduled / SubOrchestrationInstanceCreated folded into
 * its completion (FunctionName, ScheduledTime, Input), results only with showHistoryOutput.
 */
import { EventType, HistoryEvent } from "./history";

export interface HistoryViewOptions {
  showHistoryOutput?: boolean;
  showInput?: boolean;
}

function parseJsonOrRaw(value: unknown): unknown {
  if (typeof value !== "string") return value ?? null;
  const trimmed = value.trim();
  if (trimmed === "") return "";
  try {
    return JSON.parse(trimmed);
  } catch {
    return value; // e.g. a terminate reason that isn't JSON
  }
}

export function toApiHistoryEvents(history: HistoryEvent[], options: HistoryViewOptions = {}): Array<Record<string, unknown>> {
  const showOutput = options.showHistoryOutput === true;
  const showInput = options.showInput !== false;
  const scheduled = new Map<string, { index: number; name: unknown; date: string; input: unknown }>();
  const removed = new Set<number>();
  const items = history.map((event, index) => {
    const item: Record<string, unknown> = { ...event, EventType: EventType[event.EventType] ?? event.EventType };
    const fold = (prefix: string): void => {
      const source = scheduled.get(`${prefix}_${String(event.TaskScheduledId)}`);
      if (source) {
        item.ScheduledTime = source.date;
        item.FunctionName = source.name;
        if (showInput) item.Input = source.input;
        removed.add(source.index);
      }
      delete item.TaskScheduledId;
    };
    switch (event.EventType) {
      case EventType.TaskScheduled:
      case EventType.SubOrchestrationInstanceCreated:
        scheduled.set(`${EventType[event.EventType]}_${event.EventId}`, { index, name: event.Name, date: event.Timestamp, input: event.Input });
        delete item.Version;
        break;
      case EventType.TaskCompleted:
      case EventType.TaskFailed:
        fold("TaskScheduled");
        if (event.EventType === EventType.TaskCompleted) {
          if (showOutput) item.Result = parseJsonOrRaw(item.Result);
          else delete item.Result;
        }
        break;
      case EventType.SubOrchestrationInstanceCompleted:
      case EventType.SubOrchestrationInstanceFailed:
        fold("SubOrchestrationInstanceCreated");
        if (event.EventType === EventType.SubOrchestrationInstanceCompleted) {
          if (showOutput) item.Result = parseJsonOrRaw(item.Result);
          else delete item.Result;
        }
        break;
      case EventType.ExecutionStarted:
        item.FunctionName = item.Name;
        for (const key of ["Name", "OrchestrationInstance", "ParentInstance", "Version", "Tags"]) delete item[key];
        break;
      case EventType.ExecutionCompleted:
        if (showOutput) item.Result = parseJsonOrRaw(item.Result);
        else delete item.Result;
        break;
      case EventType.TimerFired:
        delete item.TimerId;
        break;
      case EventType.OrchestratorStarted:
      case EventType.OrchestratorCompleted:
        removed.add(index);
        break;
      default:
        break;
    }
    if (!showInput) delete item.Input;
    delete item.EventId;
    delete item.IsPlayed;
    return item;
  });
  return items.filter((_, index) => !removed.has(index));
}
