/**
 * The orchestrator's Azure identity, chosen by settings: DefaultAzureCredential (managed identity in
 * Azure, developer sign-in elsewhere), pinned to a user-assigned managed identity when its client id
 * is configured. No secrets are read here: credentials come from the platform.
 */
import { DefaultAzureCredential, ManagedIdentityCredential } from "@azure/identity";
import type { TokenCredential } from "@azure/core-auth";

/** App setting naming the user-assigned managed identity's client id (a GUID). */
export const MANAGED_IDENTITY_CLIENT_ID_SETTING = "FLO_MANAGED_IDENTITY_CLIENT_ID";
/** App setting choosing the credential: `default` (DefaultAzureCredential) or `managedidentity` (only managed identity). */
export const CREDENTIAL_KIND_SETTING = "FLO_AZURE_CREDENTIAL";

export type CredentialKind = "default" | "managedidentity";

export interface AzureCredentialSettings {
  kind?: CredentialKind;
  /** Client id of a user-assigned managed identity; without it the system-assigned identity is used. */
  managedIdentityClientId?: string;
}

export class CredentialSettingsError extends Error {
  override readonly name = "CredentialSettingsError";
  constructor(
    readonly setting: string,
    expected: string,
    got: string,
  ) {
    super(`Invalid setting ${setting}: expected ${expected}, got ${got}`);
  }
}

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Reads the credential settings from app settings / environment variables, validating them. */
export function credentialSettingsFromEnv(env: Record<string, string | undefined>): AzureCredentialSettings {
  const kindText = env[CREDENTIAL_KIND_SETTING]?.trim().toLowerCase();
  let kind: CredentialKind = "default";
  if (kindText !== undefined && kindText !== "") {
    if (kindText !== "default" && kindText !== "managedidentity") {
      throw new CredentialSettingsError(CREDENTIAL_KIND_SETTING, '"default" or "managedidentity"', JSON.stringify(env[CREDENTIAL_KIND_SETTING]));
    }
    kind = kindText;
  }
  const clientId = env[MANAGED_IDENTITY_CLIENT_ID_SETTING]?.trim();
  return clientId ? { kind, managedIdentityClientId: clientId } : { kind };
}

/** Creates the credential the settings describe. */
export function createAzureCredential(settings: AzureCredentialSettings = {}): TokenCredential {
  const clientId = settings.managedIdentityClientId;
  if (clientId !== undefined && !GUID.test(clientId)) {
    throw new CredentialSettingsError(MANAGED_IDENTITY_CLIENT_ID_SETTING, "a client id GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", JSON.stringify(clientId));
  }
  if (settings.kind === "managedidentity") {
    return clientId ? new ManagedIdentityCredential({ clientId }) : new ManagedIdentityCredential();
  }
  return clientId ? new DefaultAzureCredential({ managedIdentityClientId: clientId }) : new DefaultAzureCredential();
}
