/** The issues a spec is rejected with; fails the test when the spec is accepted or fails otherwise. */
import { SpecError, validateSpec, type SpecIssue } from "../../lib/spec";

export function issuesOf(spec: unknown): SpecIssue[] {
  try {
    validateSpec(spec);
  } catch (error) {
    expect(error).toBeInstanceOf(SpecError);
    return (error as SpecError).issues;
  }
  throw new Error("expected the spec to be rejected, but it was accepted");
}
