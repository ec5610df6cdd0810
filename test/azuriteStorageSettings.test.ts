import { AZURITE_ACCOUNT_KEY } from "../lib/storage/devAccount";
import { parseConnectionString, storageSettingsFromEnv, StorageSettingsError } from "../lib/storage/settings";

const KEY = "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5==";

describe("storageSettingsFromEnv", () => {
  test("nothing configured -> embedded Azurite", () => {
    expect(storageSettingsFromEnv({})).toEqual({ kind: "embedded" });
    expect(storageSettingsFromEnv({ AzureWebJobsStorage: "  " })).toEqual({ kind: "embedded" });
  });

  test("an account-key connection string derives endpoints from AccountName + EndpointSuffix", () => {
    const cs = `DefaultEndpointsProtocol=https;AccountName=flodata;AccountKey=${KEY};EndpointSuffix=core.chinacloudapi.cn`;
    expect(storageSettingsFromEnv({ AzureWebJobsStorage: cs })).toEqual({
      kind: "connectionString",
      settingName: "AzureWebJobsStorage",
      connectionString: cs,
      blobServiceUri: "https://flodata.blob.core.chinacloudapi.cn",
      queueServiceUri: "https://flodata.queue.core.chinacloudapi.cn",
      tableServiceUri: "https://flodata.table.core.chinacloudapi.cn",
    });
  });

  test("explicit endpoints win; UseDevelopmentStorage=true means Azurite on its default ports", () => {
    const settings = storageSettingsFromEnv({ AzureWebJobsStorage: "UseDevelopmentStorage=true" });
    expect(settings).toMatchObject({
      kind: "connectionString",
      blobServiceUri: "http://127.0.0.1:10000/devstoreaccount1",
      queueServiceUri: "http://127.0.0.1:10001/devstoreaccount1",
      tableServiceUri: "http://127.0.0.1:10002/devstoreaccount1",
    });
    expect(settings.kind === "connectionString" && settings.connectionString).toContain(`AccountKey=${AZURITE_ACCOUNT_KEY};`);
  });

  test("identity-based: accountName gives the public-cloud URIs, explicit service URIs override", () => {
    expect(storageSettingsFromEnv({ AzureWebJobsStorage__accountName: "flodata", AzureWebJobsStorage__clientId: "abc" })).toEqual({
      kind: "identity",
      settingName: "AzureWebJobsStorage",
      blobServiceUri: "https://flodata.blob.core.windows.net",
      queueServiceUri: "https://flodata.queue.core.windows.net",
      tableServiceUri: "https://flodata.table.core.windows.net",
      clientId: "abc",
    });
    expect(storageSettingsFromEnv({ AzureWebJobsStorage__serviceUri: "https://y.blob.core.windows.net" })).toMatchObject({
      kind: "identity",
      blobServiceUri: "https://y.blob.core.windows.net",
    });
    expect(storageSettingsFromEnv({ FloModels__blobServiceUri: "https://x.blob.core.windows.net/" }, "FloModels")).toEqual({
      kind: "identity",
      settingName: "FloModels",
      blobServiceUri: "https://x.blob.core.windows.net",
      queueServiceUri: undefined,
      tableServiceUri: undefined,
      clientId: undefined,
    });
  });

  test("malformed settings fail naming the setting, and never echo a key", () => {
    const noKey = () => storageSettingsFromEnv({ AzureWebJobsStorage: "AccountName=flodata;EndpointSuffix=core.windows.net" });
    expect(noKey).toThrow(StorageSettingsError);
    expect(noKey).toThrow("AzureWebJobsStorage: expected a storage connection string with AccountName + AccountKey or SharedAccessSignature, got keys [accountname, endpointsuffix]");
    const garbage = () => storageSettingsFromEnv({ AzureWebJobsStorage: `secretvalue${KEY}` });
    expect(garbage).toThrow(/AzureWebJobsStorage: expected "Key=Value" segments/);
    try {
      garbage();
    } catch (e) {
      expect((e as Error).message).not.toContain(KEY);
    }
    expect(() => storageSettingsFromEnv({ AzureWebJobsStorage__accountName: "Flo_Data" })).toThrow(
      'AzureWebJobsStorage__accountName: expected a storage account name (3-24 lower-case letters/digits), got "Flo_Data"',
    );
    expect(() => storageSettingsFromEnv({ AzureWebJobsStorage__blobServiceUri: "ftp://x" })).toThrow("AzureWebJobsStorage__blobServiceUri: expected an http(s) URL, got protocol ftp:");
  });

  test("parseConnectionString keeps '=' inside values and lower-cases keys", () => {
    expect(parseConnectionString(`AccountName=a;AccountKey=${KEY};`).get("accountkey")).toBe(KEY);
  });
});
