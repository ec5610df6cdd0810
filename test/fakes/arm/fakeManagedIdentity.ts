/**
 * A loopback stand-in for the App Service / Functions managed identity endpoint (IDENTITY_ENDPOINT +
 * IDENTITY_HEADER), so the production credential code (DefaultAzureCredential / ManagedIdentityCredential
 * from lib/azure/credentials.ts) obtains tokens in tests. Tokens are unsigned JWTs whose audience is
 * the requested resource: the fake ARM accepts any bearer token, and Azurite's OAuth "basic" mode
 * checks issuer, audience and lifetime (not signatures).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";

export interface TokenRequest {
  resource: string;
  clientId?: string;
}

export interface FakeManagedIdentity {
  /** The environment a Functions host sets for its managed identity. */
  env: { IDENTITY_ENDPOINT: string; IDENTITY_HEADER: string };
  requests: TokenRequest[];
  close(): Promise<void>;
}

const IDENTITY_HEADER = "fake-identity-header";

function unsignedJwt(payload: object): string {
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "none", typ: "JWT" })}.${encode(payload)}.unsigned`;
}

export async function startFakeManagedIdentity(): Promise<FakeManagedIdentity> {
  const requests: TokenRequest[] = [];
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://127.0.0.1");
    if (req.headers["x-identity-header"] !== IDENTITY_HEADER) {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: "missing X-IDENTITY-HEADER" }));
      return;
    }
    const resource = url.searchParams.get("resource") ?? "";
    const clientId = url.searchParams.get("client_id") ?? undefined;
    requests.push(clientId ? { resource, clientId } : { resource });
    const now = Math.floor(Date.now() / 1000);
    const token = unsignedJwt({
      aud: resource.replace(/\/+$/, ""),
      iss: "https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/",
      iat: now - 60,
      nbf: now - 60,
      exp: now + 3600,
      oid: "00000000-0000-0000-0000-00000000f10f",
      ...(clientId ? { appid: clientId } : {}),
    });
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ access_token: token, expires_on: String(now + 3600), resource, token_type: "Bearer" }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    env: { IDENTITY_ENDPOINT: `http://127.0.0.1:${port}/msi/token`, IDENTITY_HEADER },
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
