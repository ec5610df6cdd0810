/**
 * The preflight of a federation spec (`flo check`, `POST /api/federations?dryRun=true`): the spec is
 * already validated by parsing; each azureml silo is then checked in its workspace with the
 * orchestrator's identity (workspace, compute, assets, exchange datastore and read access).
 */
import { AzureMlSiloCompute } from "../compute/azureml/compute";
import { azureMlCodeOf, type CodeFolder } from "../compute/azureml/code";
import { preflightAzureMlSilo, type PreflightRow } from "../compute/azureml/preflight";
import type { SiloCompute } from "../compute/siloCompute";
import { siloDataInputs, type FederationSpec, type SiloSpec } from "../spec";

export type { PreflightRow } from "../compute/azureml/preflight";

export interface SpecPreflightOptions {
  /** Only the spec's own validation: no call leaves the machine. */
  offline?: boolean;
  /** The compute a silo's jobs would use (the federation services' computeFor). */
  computeFor(silo: SiloSpec): SiloCompute;
  /** The local `training.code` folder, hashed by a client that will upload it. */
  codeFolder?: CodeFolder;
  signal?: AbortSignal;
}

export interface SpecPreflight {
  ok: boolean;
  rows: PreflightRow[];
}

export async function preflightSpec(spec: FederationSpec, options: SpecPreflightOptions): Promise<SpecPreflight> {
  const rows: PreflightRow[] = [];
  rows.push({ silo: "(spec)", check: "spec", result: "pass", detail: `${spec.name}: ${spec.silos.length} silo(s), ${spec.rounds} round(s)` });
  for (const [index, silo] of spec.silos.entries()) {
    if (silo.compute.type !== "azureml") {
      rows.push({ silo: silo.name, check: "compute", result: "skipped", detail: `${silo.compute.type} compute: nothing to check remotely` });
      continue;
    }
    if (options.offline) {
      rows.push({ silo: silo.name, check: "workspace", result: "skipped", detail: "--offline: Azure not contacted" });
      continue;
    }
    const compute = options.computeFor(silo);
    if (!(compute instanceof AzureMlSiloCompute)) {
      rows.push({ silo: silo.name, check: "compute", result: "skipped", detail: "the configured compute is not the Azure ML client" });
      continue;
    }
    rows.push(
      ...(await preflightAzureMlSilo({
        silo: silo.name,
        index,
        compute,
        exchangeContainer: silo.compute.exchangeContainer,
        environment: spec.training.environment,
        code: azureMlCodeOf(spec.training),
        codeFolder: options.codeFolder,
        dataInputs: siloDataInputs(spec, silo.name),
        ...(spec.aggregation.secureAggregation ? { secureAggregation: { secretKey: silo.compute.secretKey } } : {}),
        signal: options.signal,
      })),
    );
  }
  return { ok: rows.every((row) => row.result !== "fail"), rows };
}
