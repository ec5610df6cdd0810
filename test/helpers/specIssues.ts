import { SpecError, validateSpec, type SpecIssue } from "../../lib/spec";

/** A valid Azure ML silo compute section, for spec tests to start from. */
export const AZUREML_COMPUTE = {
  type: "azureml",
  subscriptionId: "0b1f6471-1bf0-4dda-aec3-cb9272f09590",
  resourceGroup: "rg-east",
  workspace: "mlw-east",
  computeName: "cpu-cluster",
  exchangeDatastore: "flo_exchange",
};

/** The issues a spec is rejected with; fails the test when the spec is accepted or fails otherwise. */
export function issuesOf(spec: unknown): SpecIssue[] {
  try {
    validateSpec(spec);
  } catch (error) {
    expect(error).toBeInstanceOf(SpecError);
    return (error as SpecError).issues;
  }
  throw new Error("expected the spec to be rejected, but it was accepted");
}
