/**
 * DTFx history events as the Durable extension serializes them for the JS SDK (Newtonsoft
 * default: PascalCase keys, numeric EventType, ISO timestamps). Pure builders, no I/O.
 */

export enum EventType {
  ExecutionStarted = 0,
  ExecutionCompleted = 1,
  ExecutionFailed = 2,
  ExecutionTerminated = 3,
  TaskScheduled = 4,
  TaskCompleted = 5,
  TaskFailed = 6,
  SubOrchestrationInstanceCreated = 7,
  SubOrchestrationInstanceCompleted = 8,
  SubOrchestrationInstanceFailed = 9,
  TimerCreated = 10,
  TimerFired = 11,
  OrchestratorStarted = 12,
  OrchestratorCompleted = 13,
  EventSent = 14,
  EventRaised = 15,
  ContinueAsNew = 16,
}

export interface HistoryEvent {
  EventType: EventType;
  EventId: number;
  IsPlayed: boolean;
  Timestamp: string;
  [field: string]: unknown;
}

export interface FailureDetails {
  ErrorType: string;
  ErrorMessage: string;
  StackTrace?: string | null;
  IsNonRetriable?: boolean;
  InnerFailure?: FailureDetails | null;
}

function base(type: EventType, at: Date, eventId = -1): HistoryEvent {
  return { EventType: type, EventId: eventId, IsPlayed: false, Timestamp: at.toISOString() };
}

export const events = {
  orchestratorStarted: (at: Date): HistoryEvent => base(EventType.OrchestratorStarted, at),
  orchestratorCompleted: (at: Date): HistoryEvent => base(EventType.OrchestratorCompleted, at),
  executionStarted: (at: Date, o: { instanceId: string; executionId: string; name: string; input: string | null; parent?: ParentRef | null; generation?: number }): HistoryEvent => ({
    ...base(EventType.ExecutionStarted, at),
    OrchestrationInstance: { InstanceId: o.instanceId, ExecutionId: o.executionId },
    ParentInstance: o.parent ? { OrchestrationInstance: { InstanceId: o.parent.instanceId, ExecutionId: o.parent.executionId }, TaskScheduleId: o.parent.taskScheduledId, Name: o.parent.name } : null,
    Name: o.name,
    Version: "",
    Input: o.input,
    Tags: null,
    Correlation: null,
    ScheduledStartTime: null,
    Generation: o.generation ?? 0,
  }),
  executionCompleted: (at: Date, status: "Completed" | "Failed" | "ContinuedAsNew" | "Terminated", result: string | null, failure?: FailureDetails): HistoryEvent => ({
    ...base(EventType.ExecutionCompleted, at),
    OrchestrationStatus: status,
    Result: result,
    FailureDetails: failure ?? null,
  }),
  executionTerminated: (at: Date, reason: string | null): HistoryEvent => ({ ...base(EventType.ExecutionTerminated, at), Input: reason }),
  taskScheduled: (at: Date, id: number, name: string, input: string | null): HistoryEvent => ({
    ...base(EventType.TaskScheduled, at, id),
    Name: name,
    Version: "",
    Input: input,
  }),
  taskCompleted: (at: Date, taskScheduledId: number, result: string): HistoryEvent => ({
    ...base(EventType.TaskCompleted, at),
    TaskScheduledId: taskScheduledId,
    Result: result,
  }),
  taskFailed: (at: Date, taskScheduledId: number, reason: string, details: string, failure?: FailureDetails): HistoryEvent => ({
    ...base(EventType.TaskFailed, at),
    TaskScheduledId: taskScheduledId,
    Reason: reason,
    Details: details,
    ...(failure ? { FailureDetails: failure } : {}),
  }),
  subOrchestrationCreated: (at: Date, id: number, name: string, instanceId: string, input: string | null): HistoryEvent => ({
    ...base(EventType.SubOrchestrationInstanceCreated, at, id),
    Name: name,
    Version: "",
    InstanceId: instanceId,
    Input: input,
  }),
  subOrchestrationCompleted: (at: Date, taskScheduledId: number, result: string): HistoryEvent => ({
    ...base(EventType.SubOrchestrationInstanceCompleted, at),
    TaskScheduledId: taskScheduledId,
    Result: result,
  }),
  subOrchestrationFailed: (at: Date, taskScheduledId: number, reason: string, details: string, failure?: FailureDetails): HistoryEvent => ({
    ...base(EventType.SubOrchestrationInstanceFailed, at),
    TaskScheduledId: taskScheduledId,
    Reason: reason,
    Details: details,
    ...(failure ? { FailureDetails: failure } : {}),
  }),
  timerCreated: (at: Date, id: number, fireAt: Date): HistoryEvent => ({ ...base(EventType.TimerCreated, at, id), FireAt: fireAt.toISOString() }),
  timerFired: (at: Date, timerId: number, fireAt: string): HistoryEvent => ({ ...base(EventType.TimerFired, at), TimerId: timerId, FireAt: fireAt }),
  eventRaised: (at: Date, name: string, input: string | null): HistoryEvent => ({ ...base(EventType.EventRaised, at), Name: name, Input: input }),
  continueAsNew: (at: Date, input: string | null): HistoryEvent => ({ ...base(EventType.ContinueAsNew, at), Result: input }),
};

export interface ParentRef {
  instanceId: string;
  executionId: string;
  taskScheduledId: number;
  name: string;
}

/** JSON text for a JS value the way the extension stores it (undefined -> null). */
export function toJsonText(value: unknown): string {
  const text = JSON.stringify(value);
  return text === undefined ? "null" : text;
}
