/**
 * The federation's ports, chosen by settings (never by "am I local?"): the model store (a storage
 * connection: Azurite's or Azure's), the silo compute per silo (its spec's `compute.type`), the
 * message transport (a Service Bus connection if configured, else the embedded queue transport on
 * the same storage account), and partner notifications (only when a topic is configured).
 */
import { ModelStore } from "../models/store";
import { parseAllowedRoots, type LocalPathRoots } from "../storage/localPaths";
import { storageSettingsFromEnv } from "../storage/settings";
import { parseSpec, type FederationSpec, type ParseSpecOptions, type SiloSpec } from "../spec";
import type { ModelRef } from "./types";
import type { JobFolderTransfer, SiloCompute } from "../compute/siloCompute";
import { ComputeInstances } from "../compute/backends";
import { createAzureCredential, credentialSettingsFromEnv } from "../azure/credentials";
import type { ServiceBusTransport } from "../messaging/transport";
import { EMBEDDED_TRANSPORT_DEFAULTS, openMessageTransport, type ServiceBusConnection } from "../messaging/connection";
import { messageEntitiesFromSettings, serviceBusConnectionFromSettings, type MessageEntities } from "../messaging/settings";
import { jobEventMessage } from "../messaging/wireMessages";
import { withTestJobEventHook } from "./testJobEventHook";
import { NotificationConfigError, NotificationPublisher, type NotificationSender } from "../messaging/notifications";
import { appSettings, modelContainerFromSettings, Settings, type AppSettings } from "./settings";
import type { TokenCredential } from "@azure/core-auth";
import { modelRegistryFromSettings, type AzureMlModelRegistry } from "../compute/azureml/modelRegistry";
import type { WorkspaceCoordinates } from "../compute/azureml/errors";

export interface FederationServices {
  readonly store: ModelStore;
  readonly messages: ServiceBusTransport;
  readonly jobEventsQueue: string;
  /** Partner notifications; undefined when no notifications topic is configured. */
  readonly notifications: NotificationSender | undefined;
  /** The folder relative local paths in specs (initial model, silo inputs) resolve against. */
  readonly localBaseDir: string;
  /** Where local paths in specs may point: the base folder and the folders the settings allow. */
  readonly localPathRoots: LocalPathRoots;
  parseSpec(text: string, options?: ParseSpecOptions): FederationSpec;
  /** The spec a federation stored at start, verified against its digest. */
  loadSpec(ref: ModelRef): Promise<FederationSpec>;
  computeFor(silo: SiloSpec): SiloCompute;
  /** The model registry of an Azure ML workspace (the federation owner's), with the orchestrator's identity. */
  modelRegistry(workspace: WorkspaceCoordinates): AzureMlModelRegistry;
  close(): Promise<void>;
}

class SettingsServices implements FederationServices {
  readonly store: ModelStore;
  readonly messages: ServiceBusTransport;
  readonly jobEventsQueue: string;
  readonly localBaseDir: string;
  readonly localPathRoots: LocalPathRoots;
  private readonly entities: MessageEntities;
  private readonly busConnection: ServiceBusConnection | undefined;
  private publisher?: NotificationPublisher;
  private readonly specs = new Map<string, Promise<FederationSpec>>();
  private readonly compute: ComputeInstances;
  private credential?: TokenCredential;
  private containerReady?: Promise<void>;

  constructor(private readonly env: AppSettings) {
    const storage = storageSettingsFromEnv(env);
    if (storage.kind === "embedded") {
      throw new Error("no storage connection is configured: set AzureWebJobsStorage (flo host sets it to its embedded Azurite)");
    }
    this.store = ModelStore.fromSettings(storage, modelContainerFromSettings(env));
    this.localBaseDir = env[Settings.localBaseDir] || process.cwd();
    this.localPathRoots = { baseDir: this.localBaseDir, allowedRoots: parseAllowedRoots(env[Settings.localAllowedPaths], Settings.localAllowedPaths) };
    this.entities = messageEntitiesFromSettings(env);
    this.jobEventsQueue = this.entities.jobEventsQueue;
    this.busConnection = serviceBusConnectionFromSettings(env);
    this.messages = openMessageTransport(this.busConnection, () => {
      if (storage.kind !== "connectionString") throw new Error(`no ${Settings.serviceBusConnection} configured and the embedded queue transport needs a storage connection string`);
      return { connectionString: storage.connectionString, ...EMBEDDED_TRANSPORT_DEFAULTS };
    });
    this.compute = new ComputeInstances({
      env,
      credential: () => (this.credential ??= createAzureCredential(credentialSettingsFromEnv(env))),
      transfer: this.transfer(),
      publishJobEvent: withTestJobEventHook((event) => this.messages.send(this.jobEventsQueue, jobEventMessage(event)), env),
    });
  }

  /** Built on first use, so a misconfigured topic fails the notification, not every activity. */
  get notifications(): NotificationSender | undefined {
    const topicName = this.entities.notificationsTopic;
    if (!topicName) return undefined;
    if (!this.busConnection) {
      throw new NotificationConfigError(Settings.serviceBusConnection, `a Service Bus connection for topic "${topicName}" (${Settings.notificationsTopic} is set)`, "none configured");
    }
    this.publisher ??= new NotificationPublisher({ topicName, connection: this.busConnection });
    return this.publisher;
  }

  /** The store's container exists before anything is written (created once per process). */
  ready(): Promise<void> {
    this.containerReady ??= this.store.ensureContainer().catch((err) => {
      this.containerReady = undefined;
      throw err;
    });
    return this.containerReady;
  }

  parseSpec(text: string, options?: ParseSpecOptions): FederationSpec {
    return parseSpec(text, options);
  }

  loadSpec(ref: ModelRef): Promise<FederationSpec> {
    // The promise is cached, so activities asking at once share one read and parse (validating a
    // spec with 1000 silos costs ~65 ms of CPU; K concurrent first calls would each pay it).
    let spec = this.specs.get(ref.sha256);
    if (!spec) {
      spec = this.readSpec(ref);
      this.specs.set(ref.sha256, spec);
      spec.catch(() => this.specs.delete(ref.sha256));
    }
    return spec;
  }

  private async readSpec(ref: ModelRef): Promise<FederationSpec> {
    const bytes = await this.store.getBytes(this.store.pathFromUri(ref.uri));
    const { createHash } = await import("node:crypto");
    const digest = createHash("sha256").update(bytes).digest("hex");
    if (digest !== ref.sha256) throw new Error(`spec ${ref.uri} changed since the federation started: sha256 ${digest}, expected ${ref.sha256}`);
    return parseSpec(bytes.toString("utf8"), { format: "json", source: ref.uri });
  }

  computeFor(silo: SiloSpec): SiloCompute {
    return this.compute.for(silo.compute);
  }

  modelRegistry(workspace: WorkspaceCoordinates): AzureMlModelRegistry {
    return modelRegistryFromSettings(workspace, { credential: (this.credential ??= createAzureCredential(credentialSettingsFromEnv(this.env))), env: this.env });
  }

  private transfer(): JobFolderTransfer {
    const store = this.store;
    return {
      source: (uri) => store.source(store.pathFromUri(uri)),
      downloadFolder: async (uri, localDir, options) => {
        await store.downloadFolder(store.pathFromUri(uri), localDir, options);
      },
      uploadFolder: (localDir, uri, options) => store.uploadFolder(localDir, store.pathFromUri(uri), options),
      uploadFile: (localPath, uri, options) => store.uploadFile(localPath, store.pathFromUri(uri), options),
    };
  }

  async close(): Promise<void> {
    this.compute.close();
    await Promise.all([this.messages.close(), this.publisher?.close()]);
  }
}

let current: { key: string; services: SettingsServices } | undefined;

/** The settings the services are built from; a change (e.g. a new local host in the same process) rebuilds them. */
function settingsKey(env: AppSettings): string {
  const names = Object.keys(env).filter((k) => k.startsWith("AzureWebJobsStorage") || k.startsWith(Settings.serviceBusConnection) || k.startsWith("FLO_"));
  return JSON.stringify(names.sort().map((k) => [k, env[k]]));
}

/** The process's services, built from the environment on first use (and again when it changes). */
export async function federationServices(env: AppSettings = appSettings()): Promise<FederationServices> {
  const key = settingsKey(env);
  if (current?.key !== key) {
    const previous = current?.services;
    current = { key, services: new SettingsServices({ ...env }) };
    await previous?.close().catch(() => undefined);
  }
  const services = current.services;
  await services.ready();
  return services;
}

/** Forgets the process's services (tests, and a host that reloads its settings). */
export async function resetFederationServices(): Promise<void> {
  const old = current?.services;
  current = undefined;
  await old?.close();
}
