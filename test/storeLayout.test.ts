import {
  blobUri,
  folderPrefix,
  jobLogPath,
  parseBlobUri,
  roundFolder,
  roundGlobalPath,
  roundManifestPath,
  roundStatePath,
  siloUpdateFolder,
  siloUpdateMetricsPath,
  siloUpdateModelPath,
  StorePathError,
} from "../lib/models/store";

describe("store layout", () => {
  test("paths follow federations/<id>/rounds/<r>/...", () => {
    expect(roundGlobalPath("fraud-demo-1a2b", 3)).toBe("federations/fraud-demo-1a2b/rounds/3/global/model.safetensors");
    expect(siloUpdateFolder("f", 1, "east")).toBe("federations/f/rounds/1/updates/east/");
    expect(siloUpdateModelPath("f", 1, "east")).toBe("federations/f/rounds/1/updates/east/model.safetensors");
    expect(siloUpdateMetricsPath("f", 1, "east")).toBe("federations/f/rounds/1/updates/east/metrics.json");
    expect(roundManifestPath("f", 12)).toBe("federations/f/rounds/12/manifest.json");
    expect(roundStatePath("f", 2, "strategy/momentum.safetensors")).toBe("federations/f/rounds/2/state/strategy/momentum.safetensors");
    expect(jobLogPath("f", 2, "west")).toBe("federations/f/rounds/2/logs/west/std_log.txt");
    expect(roundFolder("f", 1)).toBe("federations/f/rounds/1/");
  });

  test("ids that would escape or break the layout are rejected naming the field", () => {
    expect(() => roundGlobalPath("a/b", 1)).toThrow(StorePathError);
    expect(() => roundGlobalPath("a/b", 1)).toThrow(/^federationId: expected 1-128 characters .* got "a\/b"$/);
    expect(() => siloUpdateFolder("f", 1, "..")).toThrow(/^silo: .* got "\.\."$/);
    expect(() => siloUpdateFolder("f", 1, "")).toThrow(/^silo: /);
    expect(() => roundFolder("f", 1.5)).toThrow("round: expected an integer >= 0, got 1.5");
    expect(() => roundFolder("f", -1)).toThrow("round: expected an integer >= 0, got -1");
    expect(() => roundStatePath("f", 1, "a//b")).toThrow(/^state name segment 2: /);
  });

  test("folderPrefix ends in exactly one slash so round 1 never matches round 10", () => {
    expect(folderPrefix("federations/f/rounds/1")).toBe("federations/f/rounds/1/");
    expect(folderPrefix("federations/f/rounds/1//")).toBe("federations/f/rounds/1/");
    expect(folderPrefix("")).toBe("");
  });

  test("blob URIs round-trip for Azurite path-style and Azure virtual-host URLs", () => {
    const azurite = "http://127.0.0.1:41234/devstoreaccount1/flo";
    const uri = blobUri(azurite, "federations/f/rounds/1/updates/east/model.safetensors");
    expect(uri).toBe("http://127.0.0.1:41234/devstoreaccount1/flo/federations/f/rounds/1/updates/east/model.safetensors");
    expect(parseBlobUri(uri)).toEqual({
      accountUrl: "http://127.0.0.1:41234/devstoreaccount1",
      containerName: "flo",
      containerUrl: azurite,
      path: "federations/f/rounds/1/updates/east/model.safetensors",
    });
    const azure = parseBlobUri("https://acct.blob.core.windows.net/models/a%20b/c.json?sv=2024&sig=x");
    expect(azure).toEqual({
      accountUrl: "https://acct.blob.core.windows.net",
      containerName: "models",
      containerUrl: "https://acct.blob.core.windows.net/models",
      path: "a b/c.json",
    });
    expect(blobUri(azure.containerUrl, azure.path)).toBe("https://acct.blob.core.windows.net/models/a%20b/c.json");
    expect(() => parseBlobUri("https://acct.blob.core.windows.net/models")).toThrow(
      'blob URI: expected https://acct.blob.core.windows.net/<container>/<path>, got "https://acct.blob.core.windows.net/models"',
    );
    expect(() => parseBlobUri("s3://bucket/x")).toThrow("blob URI: expected http(s), got s3:");
  });
});
