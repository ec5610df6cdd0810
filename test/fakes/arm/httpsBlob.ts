/**
 * An in-process Azurite blob service over HTTPS with OAuth enabled, so tests can read blobs with a
 * TokenCredential exactly as the orchestrator's managed identity does in Azure (bearer tokens are
 * only sent over TLS). Plain-HTTP shared-key Azurite is in lib/storage/azurite.ts.
 */
import type { AccessToken, TokenCredential } from "@azure/core-auth";
import type { TestCertificate } from "./cert";

export const AZURITE_ACCOUNT = "devstoreaccount1";
export const AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface HttpsBlobServer {
  /** e.g. https://127.0.0.1:43123 */
  address: string;
  /** Path-style account URL: `<address>/devstoreaccount1`. */
  accountUrl: string;
  close(): Promise<void>;
}

export async function startHttpsAzuriteBlob(certificate: TestCertificate): Promise<HttpsBlobServer> {
  /* eslint-disable @typescript-eslint/no-require-imports -- Azurite's internals have no types or package exports */
  const BlobServer = require("azurite/dist/src/blob/BlobServer").default;
  const BlobConfiguration = require("azurite/dist/src/blob/BlobConfiguration").default;
  /* eslint-enable @typescript-eslint/no-require-imports */
  // Positional arguments of Azurite 3.35's BlobConfiguration; in-memory, loose, OAuth "basic".
  const config = new BlobConfiguration(
    "127.0.0.1",
    0,
    5,
    "__flo_test_blob__.json",
    "__flo_test_blob_extent__.json",
    undefined,
    false,
    undefined,
    false,
    undefined,
    true,
    true,
    certificate.certPath,
    certificate.keyPath,
    "",
    "basic",
    false,
    true,
    undefined,
  );
  const server = new BlobServer(config);
  await server.start();
  const address: string = server.getHttpServerAddress();
  return { address, accountUrl: `${address}/${AZURITE_ACCOUNT}`, close: () => server.close() };
}

function base64Url(value: object): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

/**
 * A TokenCredential minting unsigned JWTs with a storage audience. Azurite's OAuth "basic" mode checks
 * issuer, audience and lifetime but not the signature; `getToken` calls are counted.
 */
export class FakeStorageTokenCredential implements TokenCredential {
  calls = 0;
  scopes: string[] = [];
  async getToken(scopes: string | string[]): Promise<AccessToken> {
    this.calls += 1;
    this.scopes.push(...(Array.isArray(scopes) ? scopes : [scopes]));
    const now = Math.floor(Date.now() / 1000);
    const payload = {
      aud: "https://storage.azure.com",
      iss: "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
      iat: now - 60,
      nbf: now - 60,
      exp: now + 3600,
      oid: "00000000-0000-0000-0000-00000000f10f",
    };
    const token = `${base64Url({ alg: "none", typ: "JWT" })}.${base64Url(payload)}.sig`;
    return { token, expiresOnTimestamp: (now + 3600) * 1000 };
  }
}
