/**
 * Which transport carries flo's messages, decided from app settings the way the Functions host reads a
 * Service Bus connection: `<name>` holding a connection string (`Endpoint=sb://...`, including the
 * emulator's `UseDevelopmentEmulator=true`), or identity-based `<name>__fullyQualifiedNamespace`
 * (+ optional `<name>__clientId`). Nothing configured -> the embedded transport on Storage queues.
 */
import type { TokenCredential } from "@azure/core-auth";
import { AzuriteQueueTransport, type AzuriteQueueTransportOptions } from "./azuriteTransport";
import { ServiceBusSdkTransport } from "./sdkTransport";
import type { ServiceBusTransport } from "./transport";

/** How to reach a namespace: a connection string, or a namespace + token credential (identity-based). */
export type ServiceBusConnection = { connectionString: string } | { fullyQualifiedNamespace: string; credential: TokenCredential };

export type AppSettings = Record<string, string | undefined>;

export type CredentialFactory = (settings: AppSettings, connectionName: string) => TokenCredential;

/** A Service Bus connection setting that is present but unusable. Never carries the value (a secret). */
export class ServiceBusConnectionError extends Error {
  constructor(
    readonly settingName: string,
    message: string,
  ) {
    super(`Service Bus connection "${settingName}": ${message}`);
    this.name = "ServiceBusConnectionError";
  }
}

/** The configured real Service Bus connection for an app-setting name, or undefined (use the embedded transport). */
export function resolveServiceBusConnection(connectionName: string, settings: AppSettings, credentialFactory?: CredentialFactory): ServiceBusConnection | undefined {
  const direct = settings[connectionName]?.trim();
  if (direct) {
    if (!/(^|;)\s*Endpoint\s*=\s*sb:\/\//i.test(direct)) {
      throw new ServiceBusConnectionError(
        connectionName,
        `app setting "${connectionName}": expected a Service Bus connection string "Endpoint=sb://...;SharedAccessKeyName=...;SharedAccessKey=..." (got a value without Endpoint=sb://)`,
      );
    }
    return { connectionString: direct };
  }
  const fqns = settings[`${connectionName}__fullyQualifiedNamespace`]?.trim();
  if (fqns) {
    if (!credentialFactory) throw new ServiceBusConnectionError(connectionName, "identity-based connection configured but no credential factory available");
    return { fullyQualifiedNamespace: fqns, credential: credentialFactory(settings, connectionName) };
  }
  return undefined;
}

/** Default identity for `<name>__fullyQualifiedNamespace` (+ optional `__clientId`), like the host. */
export function defaultCredentialFactory(settings: AppSettings, connectionName: string): TokenCredential {
  // Loaded lazily: @azure/identity is only needed for identity-based connections.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const identity = require("@azure/identity") as typeof import("@azure/identity");
  const clientId = settings[`${connectionName}__clientId`];
  return clientId ? new identity.ManagedIdentityCredential({ clientId }) : new identity.DefaultAzureCredential();
}

/**
 * Delivery settings of the embedded transport when nothing else says: Service Bus's queue defaults
 * (max delivery count 10, lock duration 1 min) and the Functions host's maxAutoLockRenewalDuration (5 min).
 */
export const EMBEDDED_TRANSPORT_DEFAULTS = {
  maxDeliveryCount: 10,
  lockDurationMs: 60_000,
  maxAutoLockRenewalDurationMs: 5 * 60_000,
} as const;

/**
 * The transport for a resolved connection: real Service Bus when there is one, else the embedded
 * queues (their options are asked for only then: they need a storage connection string).
 */
export function openMessageTransport(connection: ServiceBusConnection | undefined, embedded: () => AzuriteQueueTransportOptions): ServiceBusTransport {
  return connection ? new ServiceBusSdkTransport(connection) : new AzuriteQueueTransport(embedded());
}
