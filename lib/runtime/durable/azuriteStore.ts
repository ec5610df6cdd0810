/**
 * DurableStore on Azure Table storage (Azurite locally): one table per record kind, JSON payloads
 * in a `data` property, spilled to a blob when larger than a table property can hold.
 *
 * Tables (hub "FloTaskHub"): FloTaskHubInstances, FloTaskHubHistory (one row per episode,
 * partition = instance), FloTaskHubInbox (partition = instance), FloTaskHubWorkItems.
 * Large payloads: container "<hub>-large" (lower-cased). Every write is an idempotent upsert.
 */
import { TableClient, TableServiceClient, odata } from "@azure/data-tables";
import { BlobServiceClient, ContainerClient } from "@azure/storage-blob";
import { DurableRuntimeError } from "./errors";
import type { ActivityWorkItem, DurableStore, DurableStoreSnapshot, EpisodeRecord, InboxMessage, InstanceRecord, LoadOptions } from "./store";

/** Azure Tables caps a string property at 64 KiB (32K UTF-16 chars); stay well below. */
const MAX_INLINE_CHARS = 30_000;
/** Keep an entity-group transaction request well under its 4 MiB limit. */
const MAX_BATCH_CHARS = 1_500_000;
const INSTANCE_PARTITION = "instance";
const WORK_PARTITION = "activity";

export class DurableStoreError extends DurableRuntimeError {}

export interface AzuriteDurableStoreOptions {
  connectionString: string;
  taskHubName?: string;
}

interface PayloadEntity {
  partitionKey: string;
  rowKey: string;
  data?: string;
  blob?: string;
  instanceId?: string;
}

/** Table keys may not contain / \ # ? or control characters. */
function encodeKey(value: string): string {
  return encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

function sanitizeHub(hub: string): string {
  const cleaned = hub.replace(/[^A-Za-z0-9]/g, "");
  if (!/^[A-Za-z][A-Za-z0-9]{2,44}$/.test(cleaned)) {
    throw new DurableStoreError(`taskHubName must start with a letter and have 3-45 alphanumeric characters, got '${hub}'`);
  }
  return cleaned;
}

function isStatus(err: unknown, status: number): boolean {
  return typeof err === "object" && err !== null && (err as { statusCode?: number }).statusCode === status;
}

export class AzuriteDurableStore implements DurableStore {
  private readonly instances: TableClient;
  private readonly history: TableClient;
  private readonly inbox: TableClient;
  private readonly workItems: TableClient;
  private readonly tableService: TableServiceClient;
  private readonly container: ContainerClient;
  private readonly tableNames: string[];
  /** Blob names of spilled payloads, so deletes by key know whether a blob exists. */
  private readonly spilled = new Set<string>();

  private constructor(options: AzuriteDurableStoreOptions) {
    const hub = sanitizeHub(options.taskHubName ?? "FloTaskHub");
    const clientOptions = { allowInsecureConnection: true };
    this.tableNames = [`${hub}Instances`, `${hub}History`, `${hub}Inbox`, `${hub}WorkItems`];
    [this.instances, this.history, this.inbox, this.workItems] = this.tableNames.map((name) => TableClient.fromConnectionString(options.connectionString, name, clientOptions));
    this.tableService = TableServiceClient.fromConnectionString(options.connectionString, clientOptions);
    this.container = BlobServiceClient.fromConnectionString(options.connectionString).getContainerClient(`${hub.toLowerCase()}-large`);
  }

  /** Connect and create the tables and container if missing. */
  static async open(options: AzuriteDurableStoreOptions): Promise<AzuriteDurableStore> {
    const store = new AzuriteDurableStore(options);
    for (const name of store.tableNames) {
      try {
        await store.tableService.createTable(name);
      } catch (err) {
        if (!isStatus(err, 409)) throw new DurableStoreError(`Could not create table ${name}: ${(err as Error).message}`);
      }
    }
    await store.container.createIfNotExists();
    return store;
  }

  async loadAll(options: LoadOptions = {}): Promise<DurableStoreSnapshot> {
    const instances = await this.readAll<InstanceRecord>(this.instances);
    const skip = options.skipHistoryOf;
    let episodes: EpisodeRecord[];
    let historySkipped: string[] | undefined;
    if (!skip) episodes = await this.readAll<EpisodeRecord>(this.history);
    else {
      // One partition query per kept instance: the table holds the history of every instance ever run.
      historySkipped = instances.filter(skip).map((i) => i.instanceId);
      const skipped = new Set(historySkipped);
      episodes = [];
      for (const instance of instances) if (!skipped.has(instance.instanceId)) episodes.push(...(await this.loadHistory(instance.instanceId)));
    }
    return {
      instances,
      episodes,
      inbox: await this.readAll<InboxMessage>(this.inbox),
      workItems: await this.readAll<ActivityWorkItem>(this.workItems),
      historySkipped,
    };
  }

  async loadHistory(instanceId: string): Promise<EpisodeRecord[]> {
    const out: EpisodeRecord[] = [];
    const rows = this.history.listEntities<PayloadEntity>({ queryOptions: { filter: odata`PartitionKey eq ${encodeKey(instanceId)}` } });
    for await (const row of rows) out.push(await this.decode<EpisodeRecord>(this.history, row));
    return out;
  }

  putInstance(instance: InstanceRecord): Promise<void> {
    return this.write(this.instances, INSTANCE_PARTITION, encodeKey(instance.instanceId), instance);
  }

  appendEpisode(episode: EpisodeRecord): Promise<void> {
    return this.write(this.history, encodeKey(episode.instanceId), historyRowKey(episode.executionId, episode.sequence), episode);
  }

  async deleteHistory(instanceId: string, executionId?: string): Promise<void> {
    const pk = encodeKey(instanceId);
    const rows = this.history.listEntities<PayloadEntity>({ queryOptions: { filter: odata`PartitionKey eq ${pk}` } });
    for await (const row of rows) {
      if (executionId === undefined || row.rowKey.startsWith(`${executionId}-`)) await this.remove(this.history, row);
    }
  }

  async putMessages(instanceId: string, messages: InboxMessage[]): Promise<void> {
    const pk = encodeKey(instanceId);
    await this.upsertBatch(
      this.inbox,
      pk,
      messages.map((m) => ({ rowKey: encodeKey(m.id), value: m })),
    );
  }

  async deleteMessages(instanceId: string, ids: string[]): Promise<void> {
    const pk = encodeKey(instanceId);
    // One entity-group transaction per 100 rows of the partition; if one row is already gone
    // (the whole batch fails with 404), fall back to row-by-row deletes, which ignore 404.
    for (let i = 0; i < ids.length; i += 100) {
      const keys = ids.slice(i, i + 100).map(encodeKey);
      const spilled = keys.some((rk) => this.spilled.has(this.blobName(this.inbox, pk, rk)));
      if (keys.length > 1 && !spilled) {
        try {
          await this.inbox.submitTransaction(keys.map((rowKey) => ["delete", { partitionKey: pk, rowKey }]));
          continue;
        } catch (err) {
          if (!isStatus(err, 404)) throw err;
        }
      }
      for (const rowKey of keys) await this.removeKey(this.inbox, pk, rowKey);
    }
  }

  putWorkItems(items: ActivityWorkItem[]): Promise<void> {
    return this.upsertBatch(
      this.workItems,
      WORK_PARTITION,
      items.map((item) => ({ rowKey: encodeKey(item.id), value: item, extra: { instanceId: item.instanceId } })),
    );
  }

  async deleteWorkItems(ids: string[]): Promise<void> {
    for (let i = 0; i < ids.length; i += 100) {
      const keys = ids.slice(i, i + 100).map(encodeKey);
      const spilled = keys.some((rk) => this.spilled.has(this.blobName(this.workItems, WORK_PARTITION, rk)));
      if (keys.length > 1 && !spilled) {
        try {
          await this.workItems.submitTransaction(keys.map((rowKey) => ["delete", { partitionKey: WORK_PARTITION, rowKey }]));
          continue;
        } catch (err) {
          if (!isStatus(err, 404)) throw err;
        }
      }
      for (const rowKey of keys) await this.removeKey(this.workItems, WORK_PARTITION, rowKey);
    }
  }

  async purgeInstance(instanceId: string): Promise<void> {
    const pk = encodeKey(instanceId);
    await this.deleteHistory(instanceId);
    for await (const row of this.inbox.listEntities<PayloadEntity>({ queryOptions: { filter: odata`PartitionKey eq ${pk}` } })) await this.remove(this.inbox, row);
    const work = this.workItems.listEntities<PayloadEntity>({ queryOptions: { filter: odata`PartitionKey eq ${WORK_PARTITION} and instanceId eq ${instanceId}` } });
    for await (const row of work) await this.remove(this.workItems, row);
    await this.removeKey(this.instances, INSTANCE_PARTITION, pk);
  }

  async close(): Promise<void> {
    /* the SDK clients hold no open handles beyond keep-alive sockets */
  }

  // ---- helpers ----

  private blobName(table: TableClient, partitionKey: string, rowKey: string): string {
    return `${table.tableName}/${partitionKey}/${rowKey}.json`;
  }

  private async write(table: TableClient, partitionKey: string, rowKey: string, value: unknown, extra: Record<string, string> = {}): Promise<void> {
    const text = JSON.stringify(value);
    const entity: PayloadEntity = { partitionKey, rowKey, ...extra };
    if (text.length > MAX_INLINE_CHARS) {
      const name = this.blobName(table, partitionKey, rowKey);
      await this.container.getBlockBlobClient(name).upload(text, Buffer.byteLength(text), { blobHTTPHeaders: { blobContentType: "application/json" } });
      entity.blob = name;
      this.spilled.add(name);
    } else {
      entity.data = text;
    }
    await table.upsertEntity(entity, "Replace");
  }

  /**
   * Upsert rows of one partition: entity-group transactions (at most 100 rows and well under the
   * 4 MiB request limit); payloads that must spill to a blob are written one by one.
   */
  private async upsertBatch(table: TableClient, partitionKey: string, written: Array<{ rowKey: string; value: unknown; extra?: Record<string, string> }>): Promise<void> {
    // A transaction refuses a row key that appears twice ("An entity can appear only once in a
    // batch"): the same message written twice at once (an engine recovering while its activities
    // already report) is one upsert, the last value.
    const rows = [...new Map(written.map((row) => [row.rowKey, row])).values()];
    let batch: Array<{ partitionKey: string; rowKey: string; data: string }> = [];
    let batchChars = 0;
    const flush = async (): Promise<void> => {
      if (batch.length === 1) await table.upsertEntity(batch[0], "Replace");
      else if (batch.length > 1) await table.submitTransaction(batch.map((entity) => ["upsert", entity, "Replace"]));
      batch = [];
      batchChars = 0;
    };
    for (const row of rows) {
      const text = JSON.stringify(row.value);
      if (text.length > MAX_INLINE_CHARS) {
        await this.write(table, partitionKey, row.rowKey, row.value, row.extra);
        continue;
      }
      if (batch.length === 100 || batchChars + text.length > MAX_BATCH_CHARS) await flush();
      batch.push({ partitionKey, rowKey: row.rowKey, data: text, ...row.extra });
      batchChars += text.length;
    }
    await flush();
  }

  private async readAll<T>(table: TableClient): Promise<T[]> {
    const out: T[] = [];
    for await (const row of table.listEntities<PayloadEntity>()) out.push(await this.decode<T>(table, row));
    return out;
  }

  private async decode<T>(table: TableClient, row: PayloadEntity): Promise<T> {
    let text = row.data;
    if (row.blob) {
      this.spilled.add(row.blob);
      const buffer = await this.container.getBlockBlobClient(row.blob).downloadToBuffer();
      text = buffer.toString("utf8");
    }
    if (text === undefined) throw new DurableStoreError(`Row ${table.tableName}/${row.partitionKey}/${row.rowKey} has neither data nor blob`);
    try {
      return JSON.parse(text) as T;
    } catch (err) {
      throw new DurableStoreError(`Row ${table.tableName}/${row.partitionKey}/${row.rowKey} holds invalid JSON: ${(err as Error).message}`);
    }
  }

  private async remove(table: TableClient, row: PayloadEntity): Promise<void> {
    if (row.blob) this.spilled.add(row.blob);
    await this.removeKey(table, row.partitionKey, row.rowKey);
  }

  private async removeKey(table: TableClient, partitionKey: string, rowKey: string): Promise<void> {
    try {
      await table.deleteEntity(partitionKey, rowKey);
    } catch (err) {
      if (!isStatus(err, 404)) throw err;
    }
    const blob = this.blobName(table, partitionKey, rowKey);
    if (this.spilled.delete(blob)) await this.container.getBlockBlobClient(blob).deleteIfExists();
  }
}

/** Sorts by execution, then episode sequence (zero-padded). */
function historyRowKey(executionId: string, sequence: number): string {
  return `${executionId}-${String(sequence).padStart(10, "0")}`;
}
