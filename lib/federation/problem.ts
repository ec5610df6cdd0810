/** RFC 9457 problem details: the one error shape of flo's HTTP API. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  /** Per-field issues for validation problems: field path, expected, got. */
  errors?: { path: string; expected: string; got: string; message: string }[];
  [extension: string]: unknown;
}

export interface ApiResponse {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  /** Set for non-JSON bodies (the HTML report). */
  text?: string;
}

const TITLES: Record<number, string> = {
  400: "Bad Request",
  404: "Not Found",
  409: "Conflict",
  413: "Payload Too Large",
  415: "Unsupported Media Type",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

export function problem(status: number, detail: string, extra: Partial<Problem> = {}): ApiResponse {
  const body: Problem = { type: `https://flo.dev/problems/${status}`, title: TITLES[status] ?? "Error", status, detail, ...extra };
  return { status, headers: { "content-type": "application/problem+json" }, body };
}

/** An error the API turns into a problem response with its status. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Partial<Problem> = {},
  ) {
    super(message);
    this.name = "ApiError";
  }
}
