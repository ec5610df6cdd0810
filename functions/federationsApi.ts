/**
 * HTTP API under /api (auth level `function`): thin adapters onto lib/federation/api.ts.
 * The OpenAPI description is docs/openapi.json, also served at GET /api/openapi.json.
 */
import { app, type HttpRequest, type HttpResponseInit, type InvocationContext } from "@azure/functions";
import * as df from "durable-functions";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { cancelFederation, findInstance, getFederation, handleApi, listFederations, MAX_SPEC_BYTES, resumeFederation, startFederation } from "../lib/federation/api";
import { problem, type ApiResponse } from "../lib/federation/problem";
import { getCode, MAX_CODE_REQUEST_BYTES, putCode } from "../lib/federation/codeApi";
import { federationServices } from "../lib/federation/services";
import { loadReportInput } from "../lib/report/load";
import { renderReport } from "../lib/report/html";

function toHttp(response: ApiResponse): HttpResponseInit {
  if (response.text !== undefined) return { status: response.status, headers: response.headers, body: response.text };
  return { status: response.status, headers: { "content-type": "application/json", ...response.headers }, body: response.body === undefined ? undefined : JSON.stringify(response.body, null, 2) };
}

const origin = (request: HttpRequest) => new URL(request.url).origin;

type Handler = (request: HttpRequest, client: df.DurableClient, context: InvocationContext) => Promise<ApiResponse>;
const wrap =
  (handler: Handler) =>
  async (request: HttpRequest, context: InvocationContext): Promise<HttpResponseInit> =>
    toHttp(await handleApi(() => handler(request, df.getClient(context), context), { log: (line) => context.warn(line) }));

const common = { authLevel: "function" as const, extraInputs: [df.input.durableClient()] };
/** `flo host` refuses a larger spec before reading it (a binding property only the local host reads). */
const specBody = { maxRequestBodyBytes: MAX_SPEC_BYTES };
const codeBody = { maxRequestBodyBytes: MAX_CODE_REQUEST_BYTES };

app.http("startFederation", {
  ...common,
  ...specBody,
  methods: ["POST"],
  route: "federations",
  handler: wrap(async (request, client) =>
    startFederation(client, await federationServices(), {
      body: await request.text(),
      contentType: request.headers.get("content-type") ?? undefined,
      id: request.query.get("id") ?? undefined,
      origin: origin(request),
      dryRun: request.query.get("dryRun") === "true",
    }),
  ),
});

app.http("listFederations", {
  ...common,
  methods: ["GET"],
  route: "federations",
  handler: wrap(async (request, client) => listFederations(client, origin(request))),
});

app.http("getFederation", {
  ...common,
  methods: ["GET"],
  route: "federations/{id}",
  handler: wrap(async (request, client) => getFederation(client, await federationServices(), request.params.id, origin(request))),
});

app.http("cancelFederation", {
  ...common,
  methods: ["POST"],
  route: "federations/{id}/cancel",
  handler: wrap(async (request, client) => cancelFederation(client, await federationServices(), request.params.id)),
});

app.http("resumeFederation", {
  ...common,
  methods: ["POST"],
  route: "federations/{id}/resume",
  handler: wrap(async (request, client) => resumeFederation(client, await federationServices(), request.params.id, origin(request))),
});

app.http("federationReport", {
  ...common,
  methods: ["GET"],
  route: "federations/{id}/report",
  handler: wrap(async (request, client) => {
    const id = request.params.id;
    const status = await findInstance(client, id);
    if (!status) return problem(404, `no federation with id ${JSON.stringify(id)}`);
    const input = await loadReportInput(await federationServices(), id, status.runtimeStatus);
    return { status: 200, headers: { "content-type": "text/html; charset=utf-8" }, text: renderReport(input) };
  }),
});

app.http("getCode", {
  ...common,
  methods: ["GET"],
  route: "code/{digest}",
  handler: wrap(async (request) => getCode(await federationServices(), request.params.digest)),
});

app.http("putCode", {
  ...common,
  ...codeBody,
  methods: ["PUT"],
  route: "code/{digest}",
  handler: wrap(async (request) => putCode(await federationServices(), request.params.digest, await request.text())),
});

let openApiText: string | undefined;
app.http("openApi", {
  authLevel: "function",
  methods: ["GET"],
  route: "openapi.json",
  handler: async () => {
    openApiText ??= readFileSync(join(__dirname, "..", "..", "docs", "openapi.json"), "utf8");
    return { status: 200, headers: { "content-type": "application/json" }, body: openApiText };
  },
});
