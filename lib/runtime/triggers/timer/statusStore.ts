/**
 * Where timer schedule status (Last / Next / LastUpdated) survives restarts. The blob store uses the
 * Functions host's own layout: container `azure-webjobs-hosts`, blob
 * `timers/<hostId>/Host.Functions.<function>/status`, JSON `{Last, Next, LastUpdated}`.
 */
import { BlobServiceClient, type ContainerClient } from "@azure/storage-blob";
import type { ScheduleStatus } from "./schedule";

export interface TimerStatusStore {
  get(functionName: string): Promise<ScheduleStatus | undefined>;
  set(functionName: string, status: ScheduleStatus): Promise<void>;
}

export class MemoryTimerStatusStore implements TimerStatusStore {
  private readonly statuses = new Map<string, ScheduleStatus>();
  async get(functionName: string): Promise<ScheduleStatus | undefined> {
    const s = this.statuses.get(functionName);
    return s ? { ...s } : undefined;
  }
  async set(functionName: string, status: ScheduleStatus): Promise<void> {
    this.statuses.set(functionName, { ...status });
  }
}

export const TIMER_STATUS_CONTAINER = "azure-webjobs-hosts";

export class BlobTimerStatusStore implements TimerStatusStore {
  private readonly container: ContainerClient;
  private ensured: Promise<unknown> | undefined;

  constructor(
    connectionString: string,
    private readonly hostId: string,
  ) {
    this.container = BlobServiceClient.fromConnectionString(connectionString).getContainerClient(TIMER_STATUS_CONTAINER);
  }

  blobName(functionName: string): string {
    return `timers/${this.hostId}/Host.Functions.${functionName}/status`;
  }

  async get(functionName: string): Promise<ScheduleStatus | undefined> {
    const blob = this.container.getBlockBlobClient(this.blobName(functionName));
    try {
      const buffer = await blob.downloadToBuffer();
      return JSON.parse(buffer.toString("utf8")) as ScheduleStatus;
    } catch (err) {
      const status = (err as { statusCode?: number }).statusCode;
      if (status === 404) return undefined;
      throw err;
    }
  }

  async set(functionName: string, status: ScheduleStatus): Promise<void> {
    this.ensured ??= this.container.createIfNotExists();
    await this.ensured;
    const text = JSON.stringify(status);
    await this.container.getBlockBlobClient(this.blobName(functionName)).upload(text, Buffer.byteLength(text), {
      blobHTTPHeaders: { blobContentType: "application/json" },
    });
  }
}
