/**
 * Persistence port of the durable engine. The engine keeps the live state in memory and writes
 * through to a store; at start-up it loads everything back (`loadAll`) and recovers.
 *
 * Crash safety comes from the order the engine writes in (append-then-mark): an episode's history
 * is appended together with the ids of the inbox messages it consumed, and only then are the
 * messages deleted. A message whose id is already recorded as consumed is dropped on restart, so
 * nothing is lost or applied twice. Every id is deterministic, so re-writes are idempotent upserts.
 */
import type { FailureDetails, HistoryEvent, ParentRef } from "./history";

export type RuntimeStatus = "Pending" | "Running" | "Completed" | "ContinuedAsNew" | "Failed" | "Terminated";

export const TERMINAL_STATUSES: ReadonlySet<RuntimeStatus> = new Set(["Completed", "Failed", "Terminated"]);

export interface InstanceRecord {
  instanceId: string;
  name: string;
  executionId: string;
  runtimeStatus: RuntimeStatus;
  /** JSON text (or null) of the current execution's input. */
  input: string | null;
  output: string | null;
  customStatus: string | null;
  createdTime: string;
  lastUpdatedTime: string;
  parent: ParentRef | null;
  failure: FailureDetails | null;
  /** continueAsNew generation (0 for the first execution). */
  generation: number;
}

/** A message for an instance: a history event to deliver, possibly not before `fireAt` (timers). */
export interface InboxMessage {
  id: string;
  instanceId: string;
  /** Set for messages that belong to one execution (completions, timers, starts); absent for raised events and terminate. */
  executionId?: string;
  event: HistoryEvent;
  /** When the message was enqueued (ISO); with `fireAt` it orders the due messages of an episode. */
  enqueuedAt: string;
  fireAt?: string;
}

export interface ActivityWorkItem {
  id: string;
  instanceId: string;
  executionId: string;
  taskScheduledId: number;
  name: string;
  input: string | null;
}

export interface EpisodeRecord {
  instanceId: string;
  executionId: string;
  sequence: number;
  events: HistoryEvent[];
  consumedMessageIds: string[];
  /** The instance as it is after this episode (reconciles a crash before putInstance). */
  instanceAfter: InstanceRecord;
}

export interface DurableStoreSnapshot {
  instances: InstanceRecord[];
  episodes: EpisodeRecord[];
  inbox: InboxMessage[];
  workItems: ActivityWorkItem[];
  /** Instances whose episodes the store left out (as `loadAll`'s `skipHistoryOf` allowed); `loadHistory` reads them. */
  historySkipped?: string[];
}

export interface LoadOptions {
  /**
   * Instances whose history the store may leave out of the snapshot (a restarted host needs the
   * histories of running instances only; finished ones would make every restart read everything
   * ever run). A store that skips one lists it in `historySkipped`.
   */
  skipHistoryOf?: (instance: InstanceRecord) => boolean;
}

export interface DurableStore {
  loadAll(options?: LoadOptions): Promise<DurableStoreSnapshot>;
  /** Every episode of one instance, in no particular order. */
  loadHistory(instanceId: string): Promise<EpisodeRecord[]>;
  putInstance(instance: InstanceRecord): Promise<void>;
  appendEpisode(episode: EpisodeRecord): Promise<void>;
  /** Drop the history of one execution (after continueAsNew) or of all executions. */
  deleteHistory(instanceId: string, executionId?: string): Promise<void>;
  /** Messages of one instance (one partition: the Azurite store writes them as one transaction). */
  putMessages(instanceId: string, messages: InboxMessage[]): Promise<void>;
  deleteMessages(instanceId: string, ids: string[]): Promise<void>;
  /** Batched: the engine writes an episode's activities together and deletes finished ones in bulk. */
  putWorkItems(items: ActivityWorkItem[]): Promise<void>;
  deleteWorkItems(ids: string[]): Promise<void>;
  /** Remove an instance with its history, inbox and work items. */
  purgeInstance(instanceId: string): Promise<void>;
  close(): Promise<void>;
}

/** Deep copies so callers can't mutate stored state by accident (mirrors a real serializing store). */
const clone = <T>(value: T): T => structuredClone(value);

export class InMemoryDurableStore implements DurableStore {
  private instances = new Map<string, InstanceRecord>();
  private episodes = new Map<string, EpisodeRecord>();
  private inbox = new Map<string, InboxMessage>();
  private workItems = new Map<string, ActivityWorkItem>();

  async loadAll(): Promise<DurableStoreSnapshot> {
    return clone({
      instances: [...this.instances.values()],
      episodes: [...this.episodes.values()],
      inbox: [...this.inbox.values()],
      workItems: [...this.workItems.values()],
    });
  }
  async loadHistory(instanceId: string): Promise<EpisodeRecord[]> {
    return clone([...this.episodes.values()].filter((e) => e.instanceId === instanceId));
  }
  async putInstance(instance: InstanceRecord): Promise<void> {
    this.instances.set(instance.instanceId, clone(instance));
  }
  async appendEpisode(episode: EpisodeRecord): Promise<void> {
    this.episodes.set(`${episode.instanceId}\u0000${episode.executionId}\u0000${episode.sequence}`, clone(episode));
  }
  async deleteHistory(instanceId: string, executionId?: string): Promise<void> {
    for (const [key, e] of this.episodes) {
      if (e.instanceId === instanceId && (executionId === undefined || e.executionId === executionId)) this.episodes.delete(key);
    }
  }
  async putMessages(instanceId: string, messages: InboxMessage[]): Promise<void> {
    for (const message of messages) this.inbox.set(`${instanceId}\u0000${message.id}`, clone(message));
  }
  async deleteMessages(instanceId: string, ids: string[]): Promise<void> {
    for (const id of ids) this.inbox.delete(`${instanceId}\u0000${id}`);
  }
  async putWorkItems(items: ActivityWorkItem[]): Promise<void> {
    for (const item of items) this.workItems.set(item.id, clone(item));
  }
  async deleteWorkItems(ids: string[]): Promise<void> {
    for (const id of ids) this.workItems.delete(id);
  }
  async purgeInstance(instanceId: string): Promise<void> {
    this.instances.delete(instanceId);
    await this.deleteHistory(instanceId);
    for (const [key, m] of this.inbox) if (m.instanceId === instanceId) this.inbox.delete(key);
    for (const [key, w] of this.workItems) if (w.instanceId === instanceId) this.workItems.delete(key);
  }
  async close(): Promise<void> {}
}
