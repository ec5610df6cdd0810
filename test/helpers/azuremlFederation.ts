/**
 * A `flo host` whose silos are Azure ML workspaces of the HTTPS fake ARM: the fake managed identity
 * issues the tokens, the exchange datastores are an HTTPS Azurite with OAuth, the fake's jobs run
 * through `run(job)` and their events go onto the host's job-events queue (Event Grid's delivery).
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { StorageSharedKeyCredential } from "@azure/storage-blob";
import { ModelStore } from "../../lib/models/store";
import { generateTestCertificate, type TestCertificate } from "../fakes/arm/cert";
import { FakeArm, type FakeJob, type FakeTrainingResult } from "../fakes/arm/fakeArm";
import { startFakeManagedIdentity, type FakeManagedIdentity } from "../fakes/arm/fakeManagedIdentity";
import { AZURITE_ACCOUNT, AZURITE_KEY, startHttpsAzuriteBlob, type HttpsBlobServer } from "../fakes/arm/httpsBlob";
import { startFloHost, type FloHost } from "./flo";

export const AZUREML_SUBSCRIPTION = "0b1f6471-1bf0-4dda-aec3-cb9272f09590";
const CLIENT_ID = "5f2b3c4d-1111-4222-8333-944455566677";

export interface AzureMlFederationHost {
  certificate: TestCertificate;
  exchange: HttpsBlobServer;
  identity: FakeManagedIdentity;
  fake: FakeArm;
  flo: FloHost;
  /** The orchestrator's model container. */
  store: ModelStore;
  clientId: string;
  close(): Promise<void>;
}

/** Starts the fakes and the host; each silo `<s>` gets workspace `mlw-<s>` with datastore flo_exchange (container exchange-<s>). */
export async function startAzureMlFederationHost(options: {
  silos: readonly string[];
  run: (job: FakeJob) => FakeTrainingResult | Promise<FakeTrainingResult>;
  hostDirPrefix: string;
}): Promise<AzureMlFederationHost> {
  const certificate = generateTestCertificate();
  const exchange = await startHttpsAzuriteBlob(certificate);
  const identity = await startFakeManagedIdentity();
  let flo: FloHost | undefined;
  const fake = await FakeArm.start({
    certificate,
    blob: {
      serviceUrlFor: () => exchange.accountUrl,
      credential: new StorageSharedKeyCredential(AZURITE_ACCOUNT, AZURITE_KEY),
      pipelineOptions: { tlsOptions: { ca: certificate.cert } },
    },
    // Event Grid's delivery onto the Service Bus queue the host's jobEvents trigger reads.
    publishEvent: (event) => flo!.send("job-events", { body: event, messageId: event.id, contentType: "application/json" }),
    autoRun: { train: options.run, stepDelayMs: 20 },
  });
  for (const silo of options.silos) {
    fake.addDatastore(`mlw-${silo}`, "flo_exchange", { datastoreType: "AzureBlob", accountName: `${silo}exchange`, containerName: `exchange-${silo}` });
  }
  flo = await startFloHost({
    dir: mkdtempSync(join(tmpdir(), options.hostDirPrefix)),
    env: identity.env,
    settings: {
      FLO_ARM_ENDPOINT: fake.url,
      FLO_ARM_CA_FILE: certificate.certPath,
      FLO_AZUREML_BLOB_ENDPOINT: exchange.accountUrl,
      FLO_AZURE_CREDENTIAL: "managedidentity",
      FLO_MANAGED_IDENTITY_CLIENT_ID: CLIENT_ID,
    },
  });
  const host = flo;
  return {
    certificate,
    exchange,
    identity,
    fake,
    flo: host,
    store: ModelStore.fromConnectionString(host.storageConnectionString, "flo"),
    clientId: CLIENT_ID,
    async close() {
      await host.stop();
      await fake.close();
      await exchange.close();
      await identity.close();
      certificate.dispose();
    },
  };
}
