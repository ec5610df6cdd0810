/** Public surface of the embedded Durable Functions runtime. */
export { DurableEngine } from "./engine";
export type { DurableEngineOptions, OrchestrationStatus, StatusQuery, StartOptions } from "./engine";
export { InMemoryDurableStore, TERMINAL_STATUSES } from "./store";
export type { DurableStore, DurableStoreSnapshot, InstanceRecord, InboxMessage, ActivityWorkItem, EpisodeRecord, RuntimeStatus } from "./store";
export { AzuriteDurableStore, DurableStoreError } from "./azuriteStore";
export { clientBindingData, createManagementHandler, websiteHostnameFor, RPC_PREFIX, WEBHOOK_PREFIX } from "./managementApi";
export type { ClientBindingData, ManagementRequestHandler, ManagementHandlerOptions } from "./managementApi";
export { replayDotNetSide, nextRetryDelayMs } from "./replay";
export { EventType, events } from "./history";
export type { HistoryEvent } from "./history";
export * from "./errors";
export { toApiHistoryEvents } from "./historyView";
