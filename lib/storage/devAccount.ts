/**
 * Azurite's well-known development account. The key is public and documented by Microsoft
 * (https://learn.microsoft.com/azure/storage/common/storage-use-azurite#well-known-storage-account-and-key);
 * it is not a secret, but it lives in exactly one place so it is never confused with a real key.
 */
export const AZURITE_ACCOUNT_NAME = "devstoreaccount1";
export const AZURITE_ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

export interface ServiceEndpoints {
  blobEndpoint?: string;
  queueEndpoint?: string;
  tableEndpoint?: string;
}

/**
 * The full connection-string form for the dev account, e.g.
 * `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=...;BlobEndpoint=...;`.
 * Endpoints that are absent (service not started) are left out.
 */
export function azuriteConnectionString(endpoints: ServiceEndpoints): string {
  const parts = ["DefaultEndpointsProtocol=http", `AccountName=${AZURITE_ACCOUNT_NAME}`, `AccountKey=${AZURITE_ACCOUNT_KEY}`];
  if (endpoints.blobEndpoint) parts.push(`BlobEndpoint=${endpoints.blobEndpoint}`);
  if (endpoints.queueEndpoint) parts.push(`QueueEndpoint=${endpoints.queueEndpoint}`);
  if (endpoints.tableEndpoint) parts.push(`TableEndpoint=${endpoints.tableEndpoint}`);
  return parts.join(";") + ";";
}

/** Path-style account URL Azurite serves: `http://127.0.0.1:<port>/devstoreaccount1`. */
export function azuriteAccountUrl(serverAddress: string): string {
  return `${serverAddress.replace(/\/+$/, "")}/${AZURITE_ACCOUNT_NAME}`;
}
