/**
 * The code upload routes (`GET`/`PUT /api/code/{digest}`) against a real blob store: content
 * addressing checked server-side, bad paths and oversized uploads refused with the field, and a
 * federation start refusing azureml code the app cannot reach.
 */
import { codeDigest, MAX_CODE_BYTES } from "../lib/compute/azureml/code";
import { getCode, MAX_CODE_REQUEST_BYTES, parseCodeUpload, putCode, requireReachableCode, uploadedCodeRows } from "../lib/federation/codeApi";
import { ApiError } from "../lib/federation/problem";
import type { FederationServices } from "../lib/federation/services";
import { ModelStore } from "../lib/models/store";
import { parseSpec } from "../lib/spec";
import { useAzurite } from "./helpers/azurite";

const azurite = useAzurite({ services: ["blob"] });
let store: ModelStore;
let services: FederationServices;

beforeAll(() => {
  store = ModelStore.fromConnectionString(azurite.connectionString, "flo-code-api");
  services = { store } as unknown as FederationServices;
});

const files = [
  { path: "train.py", content: Buffer.from("print('train')\n") },
  { path: "lib/util.py", content: Buffer.from("x = 1\n") },
];
const body = (entries: { path: unknown; content: unknown }[]) => JSON.stringify({ files: entries });
const wire = files.map((f) => ({ path: f.path, content: f.content.toString("base64") }));

async function refused(operation: Promise<unknown>): Promise<{ status: number; message: string }> {
  const error = await operation.then(
    () => undefined,
    (e: unknown) => e,
  );
  if (!(error instanceof ApiError)) throw new Error(`expected an ApiError, got ${String(error)}`);
  return { status: error.status, message: error.message };
}

test("PUT stores a folder under its content digest once; GET finds it", async () => {
  const digest = codeDigest(files);
  expect(await refused(getCode(services, digest))).toEqual({ status: 404, message: `no code folder with sha256 ${digest}` });
  const uri = `${store.containerUrl}/code/${digest}/`;
  expect(await putCode(services, digest, body(wire))).toEqual({ status: 201, body: { digest, uri, uploaded: true, files: 2 } });
  expect((await store.getBytes(`code/${digest}/lib/util.py`)).toString()).toBe("x = 1\n");
  expect(await store.getJson(`code/${digest}/.flo-code.json`)).toEqual({ digest, files: ["lib/util.py", "train.py"] });
  expect(await putCode(services, digest, body(wire))).toEqual({ status: 200, body: { digest, uri, uploaded: false } });
  expect(await getCode(services, digest)).toEqual({ status: 200, body: { digest, uri } });
});

test("a digest that is not the files' sha256 is refused, and nothing is stored", async () => {
  const claimed = "0".repeat(64);
  expect(await refused(putCode(services, claimed, body(wire)))).toEqual({
    status: 400,
    message: `route parameter digest: expected the sha256 of the uploaded files, ${codeDigest(files)}, got ${claimed}`,
  });
  expect(await store.exists(`code/${claimed}/train.py`)).toBe(false);
  expect(await refused(putCode(services, "ABC", body(wire)))).toEqual({ status: 400, message: 'route parameter digest: expected 64 lowercase hex digits (the folder\'s sha256), got "ABC"' });
});

test("paths that leave the folder, duplicates, flo's manifest name and non-base64 contents are refused with the field", () => {
  const content = Buffer.from("x").toString("base64");
  const cases: [unknown, string][] = [
    ["../escape.py", "files[0].path: expected a relative path without empty, '.' or '..' segments, got \"../escape.py\""],
    ["/etc/passwd", "files[0].path: expected a relative path without empty, '.' or '..' segments, got \"/etc/passwd\""],
    ["a\\b.py", 'files[0].path: expected no backslashes or control characters, got "a\\\\b.py"'],
    [".flo-code.json", 'files[0].path: expected a name other than .flo-code.json (flo writes it), got ".flo-code.json"'],
    [7, "files[0].path: expected a non-empty string, got 7"],
  ];
  for (const [path, message] of cases) expect(() => parseCodeUpload(body([{ path, content }]))).toThrow(message);
  expect(() => parseCodeUpload(body([wire[0], wire[0]]))).toThrow('files[1].path: expected a path not already uploaded, got "train.py" twice');
  expect(() => parseCodeUpload(body([{ path: "a.py", content: "not base64!" }]))).toThrow("files[0].content: expected the file's bytes as base64, got 11 characters that are not base64");
  expect(() => parseCodeUpload(body([]))).toThrow("files: expected a non-empty array of {path, content}, got []");
  expect(() => parseCodeUpload("{")).toThrow(/^body: expected JSON \{"files": \[\{"path", "content" \(base64\)\}\]\}, got unparsable JSON/);
});

test("uploads over the byte limits are refused with 413", () => {
  const big = Buffer.alloc(MAX_CODE_BYTES / 2 + 1).toString("base64");
  let error: unknown;
  try {
    parseCodeUpload(
      body([
        { path: "a.bin", content: big },
        { path: "b.bin", content: big },
      ]),
    );
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(ApiError);
  expect({ status: (error as ApiError).status, message: (error as ApiError).message }).toEqual({
    status: 413,
    message: `files: expected at most ${MAX_CODE_BYTES} bytes in all, got more by files[1] (register larger code with az ml code create)`,
  });
  const oversized = "x".repeat(MAX_CODE_REQUEST_BYTES + 1);
  expect(() => parseCodeUpload(oversized)).toThrow(`the upload is ${MAX_CODE_REQUEST_BYTES + 1} bytes; at most ${MAX_CODE_REQUEST_BYTES} are accepted`);
});

test("a start refuses azureml code the app cannot reach: a local folder not uploaded, or an upload elsewhere", async () => {
  const spec = (training: string) =>
    parseSpec(
      `name: f1
rounds: 1
silos:
  - name: a
    compute: {type: azureml, subscriptionId: 0b1f6471-1bf0-4dda-aec3-cb9272f09590, resourceGroup: rg-a, workspace: mlw-a, computeName: cpu-cluster, exchangeDatastore: flo_exchange}
  - name: b
    compute: {type: local}
training: {command: "python train.py --out \${{outputs.model_update}}", environment: "azureml:env:1", ${training}}
`,
      { format: "yaml" },
    );
  expect((await refused(requireReachableCode(services, spec("code: trainer")))).message).toMatch(
    /^training\.uploadedCode: expected the URL of the uploaded "trainer" folder \(azureml silos cannot run a local folder the app cannot read\), got nothing; submit with `flo submit <spec> --api <url>`/,
  );
  const digest = codeDigest(files);
  const elsewhere = `https://other.blob.core.windows.net/flo/code/${digest}/`;
  expect(await refused(requireReachableCode(services, spec(`code: trainer, uploadedCode: "${elsewhere}"`)))).toEqual({
    status: 400,
    message: `training.uploadedCode: expected a code folder uploaded to this orchestrator (${store.containerUrl}/code/${digest}/), got ${JSON.stringify(elsewhere)}`,
  });
  const missing = `${store.containerUrl}/code/${"1".repeat(64)}/`;
  expect((await refused(requireReachableCode(services, spec(`code: trainer, uploadedCode: "${missing}"`)))).message).toContain(`(PUT /api/code/${"1".repeat(64)} first)`);
  // The dry run reports the same as a row.
  expect(await uploadedCodeRows(services, spec(`code: trainer, uploadedCode: "${missing}"`))).toEqual([
    expect.objectContaining({ silo: "(spec)", check: "uploaded code", result: "fail", fix: "upload the folder with `flo submit <spec> --api <url>`" }),
  ]);
  expect(await uploadedCodeRows(services, spec("code: trainer"))).toEqual([]);
  await putCode(services, digest, body(wire));
  const stored = `${store.containerUrl}/code/${digest}/`;
  await expect(requireReachableCode(services, spec(`code: trainer, uploadedCode: "${stored}"`))).resolves.toBeUndefined();
  expect(await uploadedCodeRows(services, spec(`code: trainer, uploadedCode: "${stored}"`))).toEqual([
    { silo: "(spec)", check: "uploaded code", result: "pass", detail: `${stored}: complete in this orchestrator's store` },
  ]);
  await expect(requireReachableCode(services, spec('code: "azureml:trainer:3"'))).resolves.toBeUndefined();
  // A SAS or any query string cannot ride along: the field's pattern has no '?'.
  expect(() => spec(`code: trainer, uploadedCode: "${store.containerUrl}/code/${digest}/?sig=x"`)).toThrow(/training\.uploadedCode/);
});
