/** "expected ..." for a zod issue on a strategy option (StrategyConfigError's wording). */
import type { z } from "zod";

const TYPE_NAMES: Record<string, string> = { number: "a number", int: "an integer", string: "a string", boolean: "true or false", object: "an object" };

export function expectedOf(issue: z.core.$ZodIssue): string {
  switch (issue.code) {
    case "invalid_type":
      return TYPE_NAMES[issue.expected] ?? issue.expected;
    case "too_small":
    case "too_big": {
      const op = issue.code === "too_small" ? (issue.inclusive === false ? ">" : ">=") : issue.inclusive === false ? "<" : "<=";
      const bound = issue.code === "too_small" ? issue.minimum : issue.maximum;
      return `a number ${op} ${String(bound)}`;
    }
    case "invalid_value":
      return issue.values.length === 1 ? JSON.stringify(issue.values[0]) : `one of ${issue.values.map((v) => JSON.stringify(v)).join(", ")}`;
    case "invalid_union": {
      const options = (issue as { options?: unknown[] }).options;
      return options ? `one of ${options.map((v) => JSON.stringify(v)).join(", ")}` : issue.message;
    }
    default:
      return issue.message;
  }
}
