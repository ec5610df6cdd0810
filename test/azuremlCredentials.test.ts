import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { DefaultAzureCredential, ManagedIdentityCredential } from "@azure/identity";
import { CREDENTIAL_KIND_SETTING, CredentialSettingsError, MANAGED_IDENTITY_CLIENT_ID_SETTING, createAzureCredential, credentialSettingsFromEnv } from "../lib/azure/credentials";

const CLIENT_ID = "5f2b3c4d-1111-4222-8333-944455566677";

describe("credential settings", () => {
  test("read from app settings, validated", () => {
    expect(credentialSettingsFromEnv({})).toEqual({ kind: "default" });
    expect(credentialSettingsFromEnv({ [MANAGED_IDENTITY_CLIENT_ID_SETTING]: ` ${CLIENT_ID} `, [CREDENTIAL_KIND_SETTING]: "ManagedIdentity" })).toEqual({
      kind: "managedidentity",
      managedIdentityClientId: CLIENT_ID,
    });
    expect(() => credentialSettingsFromEnv({ [CREDENTIAL_KIND_SETTING]: "cli" })).toThrow('Invalid setting FLO_AZURE_CREDENTIAL: expected "default" or "managedidentity", got "cli"');
  });

  test("the credential kind follows the settings; a malformed client id is refused", () => {
    expect(createAzureCredential()).toBeInstanceOf(DefaultAzureCredential);
    expect(createAzureCredential({ managedIdentityClientId: CLIENT_ID })).toBeInstanceOf(DefaultAzureCredential);
    expect(createAzureCredential({ kind: "managedidentity" })).toBeInstanceOf(ManagedIdentityCredential);
    const error = (() => {
      try {
        createAzureCredential({ managedIdentityClientId: "my-identity" });
      } catch (e) {
        return e as CredentialSettingsError;
      }
    })();
    expect(error).toBeInstanceOf(CredentialSettingsError);
    expect(error?.message).toBe('Invalid setting FLO_MANAGED_IDENTITY_CLIENT_ID: expected a client id GUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx), got "my-identity"');
  });
});

describe("user-assigned managed identity on an App Service / Functions host", () => {
  let server: Server;
  const seen: { url: string; header: string | undefined }[] = [];
  const saved: Record<string, string | undefined> = {};

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ url: req.url ?? "", header: req.headers["x-identity-header"] as string | undefined });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ access_token: "mi-token", expires_on: String(Math.floor(Date.now() / 1000) + 3600), resource: "https://management.azure.com", token_type: "Bearer" }));
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    for (const key of ["IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT"]) {
      saved[key] = process.env[key];
      delete process.env[key];
    }
    // What the Functions host sets for a managed identity (the App Service identity endpoint).
    process.env.IDENTITY_ENDPOINT = `http://127.0.0.1:${(server.address() as AddressInfo).port}/msi/token`;
    process.env.IDENTITY_HEADER = "header-from-host";
  });

  afterAll(async () => {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  test("the configured client id is what the token request asks for", async () => {
    const credential = createAzureCredential({ kind: "managedidentity", managedIdentityClientId: CLIENT_ID });
    const token = await credential.getToken("https://management.azure.com/.default");
    expect(token?.token).toBe("mi-token");
    expect(seen).toHaveLength(1);
    const url = new URL(seen[0].url, "http://x");
    expect(url.searchParams.get("client_id")).toBe(CLIENT_ID);
    expect(url.searchParams.get("resource")).toBe("https://management.azure.com");
    expect(seen[0].header).toBe("header-from-host");
  });
});
