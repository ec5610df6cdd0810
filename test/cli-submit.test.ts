/**
 * `flo submit` without a host: what it sends (through an injected fetch), its errors, and that
 * docs/deploy.md uses only flags and settings the command has. The happy path against a real
 * `flo host` is in federation-azureml.test.ts.
 */
import { Command } from "commander";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashCodeFolder } from "../lib/compute/azureml/code";
import { register, runSubmit, SubmitSettings } from "../lib/cli/submit";

const SPEC = `name: sub-test
rounds: 1
silos:
  - name: a
    compute: {type: azureml, subscriptionId: 0b1f6471-1bf0-4dda-aec3-cb9272f09590, resourceGroup: rg-a, workspace: mlw-a, computeName: cpu-cluster, exchangeDatastore: flo_exchange}
training:
  command: python train.py --out \${{outputs.model_update}}
  code: trainer
  environment: azureml:flo-env@latest
aggregation: {strategy: fedavg}
`;

function project(spec = SPEC): { dir: string; file: string } {
  const dir = mkdtempSync(join(tmpdir(), "flo-submit-"));
  mkdirSync(join(dir, "trainer"));
  writeFileSync(join(dir, "trainer", "train.py"), "print(1)\n");
  writeFileSync(join(dir, "spec.yaml"), spec);
  return { dir, file: join(dir, "spec.yaml") };
}

/** A fetch answering like the API: code not stored yet, then stored; the federation accepted. */
function apiFetch(answers: { code?: number; federations?: number } = {}) {
  const calls: { method: string; url: string; key?: string; body?: string }[] = [];
  const fetchImpl = (input: string | URL | Request, init?: RequestInit) => {
    const url = input instanceof Request ? input.url : input.toString();
    const method = init?.method ?? "GET";
    calls.push({ method, url, key: (init?.headers as Record<string, string>)["x-functions-key"], body: init?.body as string | undefined });
    const json = (status: number, body: unknown) => Promise.resolve(new Response(JSON.stringify(body), { status }));
    if (url.includes("/code/")) {
      const digest = url.split("/code/")[1];
      if (method === "GET") return json(404, { detail: "not stored" });
      return json(answers.code ?? 201, { digest, uri: `https://st.blob.core.windows.net/flo/code/${digest}/` });
    }
    return json(answers.federations ?? 202, { id: "sub-test" });
  };
  const typed: typeof fetch = fetchImpl;
  return { calls, fetch: typed };
}

async function submit(file: string, dir: string, api: ReturnType<typeof apiFetch>, options: { dryRun?: boolean; id?: string; env?: Record<string, string> } = {}) {
  const out: string[] = [];
  const err: string[] = [];
  const code = await runSubmit(
    { spec: file, dryRun: options.dryRun, id: options.id, baseDir: dir },
    { out: (l) => out.push(l), err: (l) => err.push(l) },
    { env: options.env ?? { FLO_API_BASE_URL: "https://func-x.azurewebsites.net/api/", FLO_FUNCTION_KEY: "k1" }, fetch: api.fetch },
  );
  return { code, out: out.join("\n"), err: err.join("\n") };
}

test("uploads the code folder, then posts the user's document with training.uploadedCode added and the key in the header", async () => {
  const { dir, file } = project();
  const api = apiFetch();
  const result = await submit(file, dir, api, { id: "run-2", dryRun: true });
  const digest = hashCodeFolder(join(dir, "trainer")).digest;
  const base = "https://func-x.azurewebsites.net/api";
  expect(result.code).toBe(0);
  expect(api.calls.map((c) => `${c.method} ${c.url} ${c.key}`)).toEqual([`GET ${base}/code/${digest} k1`, `PUT ${base}/code/${digest} k1`, `POST ${base}/federations?id=run-2&dryRun=true k1`]);
  expect(JSON.parse(api.calls[1].body!)).toEqual({ files: [{ path: "train.py", content: Buffer.from("print(1)\n").toString("base64") }] });
  const posted = JSON.parse(api.calls[2].body!) as { training: Record<string, unknown>; aggregation: unknown };
  // The user's document, not the parsed spec: no derived fields, the folder kept for local silos.
  expect(posted.training).toEqual({
    command: "python train.py --out ${{outputs.model_update}}",
    code: "trainer",
    environment: "azureml:flo-env@latest",
    uploadedCode: `https://st.blob.core.windows.net/flo/code/${digest}/`,
  });
  expect(result.out).toContain(`code trainer: 1 file(s), sha256 ${digest}, uploaded to https://st.blob.core.windows.net/flo/code/${digest}/`);
});

test("errors name what to fix, and the exit code is 1", async () => {
  const { dir, file } = project();
  const refused = await submit(file, dir, apiFetch({ code: 413 }));
  expect({ code: refused.code, err: refused.err }).toEqual({ code: 1, err: expect.stringMatching(/^flo submit: PUT code\/[0-9a-f]{64}: 413 /) });

  const noKey = await submit(file, dir, { calls: [], fetch: () => Promise.resolve(new Response("", { status: 401 })) });
  expect(noKey.err).toMatch(/401 Unauthorized; set FLO_FUNCTION_KEY to a function key of the app$/);

  const noApi = await submit(file, dir, apiFetch(), { env: {} });
  expect(noApi).toEqual({ code: 1, out: "", err: 'flo submit: --api: expected the API\'s base URL (e.g. https://<app>.azurewebsites.net/api, or FLO_API_BASE_URL), got ""' });

  const missing = project(SPEC.replace("code: trainer", "code: nowhere"));
  const noFolder = await submit(missing.file, missing.dir, apiFetch());
  expect(noFolder.err).toBe(`flo submit: Invalid Azure ML job setting training.code: expected an existing code folder, got ${JSON.stringify(join(missing.dir, "nowhere"))}`);

  const invalid = project(SPEC.replace("rounds: 1", "rounds: zero"));
  const api = apiFetch();
  const bad = await submit(invalid.file, invalid.dir, api);
  expect({ code: bad.code, calls: api.calls.length }).toEqual({ code: 1, calls: 0 });
  expect(bad.err).toContain("rounds: expected a number");

  const rejected = await submit(file, dir, apiFetch({ federations: 409 }));
  expect(rejected.code).toBe(1);
});

test("docs/deploy.md uses only flo submit's flags and settings", () => {
  const command = new Command("submit");
  register(command);
  const flags = new Set(command.options.map((o) => o.long));
  const md = readFileSync(join(__dirname, "..", "docs", "deploy.md"), "utf8");
  const used = [...md.matchAll(/flo submit [^\n`]*/g)].flatMap((m) => [...m[0].matchAll(/\s(--[a-z-]+)/g)].map((f) => f[1]));
  expect(used.length).toBeGreaterThan(0);
  for (const flag of used) expect({ flag, known: flags.has(flag) }).toEqual({ flag, known: true });
  for (const setting of Object.values(SubmitSettings)) expect(md).toContain(setting);
});
