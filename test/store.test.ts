import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  BlobChangedError,
  BlobExistsError,
  BlobIntegrityError,
  BlobJsonError,
  BlobNotFoundError,
  ModelStore,
  ShortReadError,
  SinkStateError,
  StorePathError,
  roundGlobalPath,
  siloUpdateFolder,
} from "../lib/models/store";
import { useAzurite } from "./helpers/azurite";

const azurite = useAzurite({ services: ["blob"] });
const KiB = 1024;
const MiB = 1024 * KiB;
const sha256 = (data: Uint8Array) => createHash("sha256").update(data).digest("hex");

let containerSeq = 0;
/** A fresh container per test so listings never see another test's blobs. */
async function newStore(options: ConstructorParameters<typeof ModelStore>[1] = {}): Promise<ModelStore> {
  const store = ModelStore.fromConnectionString(azurite.connectionString, `store-test-${++containerSeq}`, options);
  await store.ensureContainer();
  return store;
}

async function writeBlob(store: ModelStore, blobPath: string, data: Buffer, pieces: number[]) {
  const sink = store.sink(blobPath);
  let at = 0;
  for (let i = 0; at < data.length; i++) {
    const n = pieces[i % pieces.length];
    await sink.write(data.subarray(at, at + n));
    at += n;
  }
  return sink.commit();
}

function tempDir(): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), "flo-store-"));
}

describe("ranged reads", () => {
  test("source.read returns the right bytes at odd offsets and lengths across block boundaries", async () => {
    const store = await newStore({ blockSize: 64 * KiB });
    const data = randomBytes(300 * KiB + 17);
    await writeBlob(store, "r/model.bin", data, [10_001, 77_777, 1]);
    const source = store.source("r/model.bin");
    expect(source.name).toBe(store.uri("r/model.bin"));
    expect(await source.size()).toBe(data.length);
    const cases: Array<[number, number]> = [
      [0, 1],
      [1, 3],
      [64 * KiB - 3, 7],
      [64 * KiB, 64 * KiB],
      [100_003, 130_001],
      [data.length - 5, 5],
      [12_345, 0],
      [0, data.length],
    ];
    for (const [offset, length] of cases) {
      const got = await source.read(offset, length);
      expect(got.length).toBe(length);
      expect(got.equals(data.subarray(offset, offset + length))).toBe(true);
    }
  });

  test("source.readInto fills the caller's buffer (a view into a larger one) without touching the rest", async () => {
    const store = await newStore({ blockSize: 64 * KiB });
    const data = randomBytes(200 * KiB + 3);
    await writeBlob(store, "r/into.bin", data, [50_000]);
    const source = store.source("r/into.bin");
    const backing = Buffer.alloc(100_010, 0xee);
    const view = backing.subarray(5, 100_005);
    await source.readInto!(view, 70_001);
    expect(view.equals(data.subarray(70_001, 170_001))).toBe(true);
    expect(backing.subarray(0, 5).every((b) => b === 0xee) && backing.subarray(100_005).every((b) => b === 0xee)).toBe(true);
    await expect(store.readRange("r/into.bin", 0, 10, { target: Buffer.alloc(4) })).rejects.toThrow(`read ${store.uri("r/into.bin")}: target holds 4 bytes, 10 requested`);
  });

  test("reading past the end is a ShortReadError with the numbers", async () => {
    const store = await newStore();
    await store.putBytes("short.bin", Buffer.alloc(100, 7));
    const source = store.source("short.bin");
    await expect(source.read(90, 20)).rejects.toThrow(new ShortReadError(store.uri("short.bin"), 90, 20, 10));
    await expect(source.read(100, 1)).rejects.toThrow(`short read from ${store.uri("short.bin")}: asked for 1 bytes at offset 100, only 0 exist there`);
    await expect(source.read(-1, 1)).rejects.toThrow("offset expected an integer >= 0, got -1");
  });

  test("a missing blob is BlobNotFoundError naming the path", async () => {
    const store = await newStore();
    const err = await store
      .source("nope/model.safetensors")
      .read(0, 8)
      .catch((e) => e);
    expect(err).toBeInstanceOf(BlobNotFoundError);
    expect(err.path).toBe("nope/model.safetensors");
    expect(err.message).toBe(`blob not found: ${store.uri("nope/model.safetensors")}`);
    await expect(store.getJson("nope.json")).rejects.toBeInstanceOf(BlobNotFoundError);
    await expect(store.stat("nope.json")).rejects.toBeInstanceOf(BlobNotFoundError);
    expect(await store.exists("nope.json")).toBe(false);
  });

  test("a source pinned to one version fails with BlobChangedError after the blob is replaced", async () => {
    const store = await newStore();
    await store.putBytes("v.bin", Buffer.alloc(64 * 1024, 1));
    const source = store.source("v.bin");
    expect((await source.read(0, 4)).equals(Buffer.alloc(4, 1))).toBe(true);
    await store.putBytes("v.bin", Buffer.alloc(64 * 1024, 2));
    // The blob's first bytes came with the first read: still the pinned version's, never mixed.
    expect((await source.read(4, 4)).equals(Buffer.alloc(4, 1))).toBe(true);
    await expect(source.read(32 * 1024, 4)).rejects.toBeInstanceOf(BlobChangedError);
  });

  test("a source reads its size and first bytes in one request, and the rest as ranges", async () => {
    const store = await newStore();
    const bytes = Buffer.from(Array.from({ length: 20_000 }, (_, i) => i % 251));
    await store.putBytes("head.bin", bytes);
    const requests: string[] = [];
    const original = store.readHead.bind(store);
    store.readHead = (...args) => (requests.push("head"), original(...args));
    const readRange = store.readRange.bind(store);
    store.readRange = (...args) => (requests.push(`range ${args[1]}+${args[2]}`), readRange(...args));
    const source = store.source("head.bin");
    expect(await source.size()).toBe(20_000);
    expect((await source.read(0, 8)).equals(bytes.subarray(0, 8))).toBe(true);
    expect((await source.read(8, 100)).equals(bytes.subarray(8, 108))).toBe(true);
    const target = Buffer.alloc(30);
    await source.readInto!(target, 8180);
    expect(target.equals(bytes.subarray(8180, 8210))).toBe(true);
    expect((await source.read(19_990, 10)).equals(bytes.subarray(19_990))).toBe(true);
    expect(requests).toEqual(["head", "range 8180+30", "range 19990+10"]);
    // A blob smaller than the first bytes fetched, and an empty one.
    await store.putBytes("small.json", Buffer.from('{"a":1}'));
    const small = store.source("small.json");
    expect(await small.size()).toBe(7);
    expect((await small.read(0, 7)).toString()).toBe('{"a":1}');
    await expect(small.read(5, 5)).rejects.toThrow(/short read/);
    await store.putBytes("empty.bin", Buffer.alloc(0));
    expect(await store.source("empty.bin").size()).toBe(0);
  });
});

describe("streaming", () => {
  test("a 21 MB blob written in odd pieces streams back with the sha256 recorded at write time", async () => {
    const store = await newStore({ blockSize: 4 * MiB, readConcurrency: 3 });
    const data = randomBytes(21 * MiB + 123);
    const written = await writeBlob(store, "big/model.safetensors", data, [1_300_001, 3 * MiB, 999]);
    expect(written).toEqual({ uri: store.uri("big/model.safetensors"), size: data.length, sha256: sha256(data) });
    expect((await store.stat("big/model.safetensors")).sha256).toBe(sha256(data));

    const hash = createHash("sha256");
    let size = 0;
    let chunks = 0;
    for await (const chunk of store.readStream("big/model.safetensors")) {
      hash.update(chunk);
      size += chunk.length;
      chunks++;
    }
    expect(size).toBe(data.length);
    expect(hash.digest("hex")).toBe(sha256(data));
    expect(chunks).toBe(6); // 5 full 4 MiB chunks + the tail

    expect((await store.getBytes("big/model.safetensors")).equals(data)).toBe(true);
    const slice: Buffer[] = [];
    for await (const chunk of store.readStream("big/model.safetensors", { offset: 4 * MiB - 5, count: 8 * MiB + 11 })) slice.push(chunk);
    expect(Buffer.concat(slice).equals(data.subarray(4 * MiB - 5, 12 * MiB + 6))).toBe(true);
  });

  test("stopping a stream early leaves no stray errors, and an aborted signal rejects", async () => {
    const store = await newStore({ blockSize: 64 * KiB });
    await store.putBytes("s.bin", randomBytes(640 * KiB));
    for await (const chunk of store.readStream("s.bin")) {
      expect(chunk.length).toBe(64 * KiB);
      break;
    }
    const controller = new AbortController();
    controller.abort();
    await expect(store.getBytes("s.bin", { signal: controller.signal })).rejects.toMatchObject({ name: "AbortError" });
  });
});

describe("sink", () => {
  test("staged blocks are invisible until commit: a dropped sink leaves no blob and no listing", async () => {
    const store = await newStore({ blockSize: 64 * KiB, uploadConcurrency: 2 });
    const sink = store.sink("crash/model.safetensors");
    await sink.write(randomBytes(200 * KiB)); // 3 full blocks staged, 8 KiB buffered
    await sink.waitForStaged();
    const client = store.container.getBlockBlobClient("crash/model.safetensors");
    const staged = await client.getBlockList("uncommitted");
    expect(staged.uncommittedBlocks?.length).toBe(3); // the server really holds the blocks...
    expect(await store.exists("crash/model.safetensors")).toBe(false); // ...but no blob exists
    expect(await store.list("crash/")).toEqual([]);
    // "crash": the sink is simply dropped. A fresh store (another process) sees nothing either.
    const other = ModelStore.fromConnectionString(azurite.connectionString, store.container.containerName);
    expect(await other.exists("crash/model.safetensors")).toBe(false);
  });

  test("abort() leaves the previous version intact; the sink refuses further use", async () => {
    const store = await newStore({ blockSize: 64 * KiB });
    const first = await store.putBytes("m.bin", Buffer.from("version 1"));
    const sink = store.sink("m.bin");
    await sink.write(randomBytes(150 * KiB));
    await sink.abort();
    expect((await store.getBytes("m.bin")).toString()).toBe("version 1");
    expect((await store.stat("m.bin")).sha256).toBe(first.sha256);
    await expect(sink.write(Buffer.from("x"))).rejects.toThrow(new SinkStateError(`write on ${store.uri("m.bin")}: sink is aborted`));
    await expect(sink.commit()).rejects.toBeInstanceOf(SinkStateError);
  });

  test("digest matches an independent hash of the stored bytes; empty blobs work", async () => {
    const store = await newStore({ blockSize: 64 * KiB });
    const data = randomBytes(129 * KiB);
    const written = await writeBlob(store, "d.bin", data, [4097]);
    const stored = await store.getBytes("d.bin");
    expect(stored.equals(data)).toBe(true);
    expect(written.sha256).toBe(sha256(stored));
    const empty = await store.sink("empty.bin").commit();
    expect(empty).toEqual({ uri: store.uri("empty.bin"), size: 0, sha256: sha256(Buffer.alloc(0)) });
    expect((await store.stat("empty.bin")).size).toBe(0);
    const sink = store.sink("twice.bin");
    await sink.commit();
    await expect(sink.commit()).rejects.toThrow("commit on " + store.uri("twice.bin") + ": sink is committed");
  });

  test("overwrite: false refuses an existing blob", async () => {
    const store = await newStore();
    await store.putJson("manifest.json", { round: 1 });
    await expect(store.putJson("manifest.json", { round: 2 }, { overwrite: false })).rejects.toBeInstanceOf(BlobExistsError);
    const sink = store.sink("manifest.json", { overwrite: false });
    await sink.write(Buffer.from("{}"));
    await expect(sink.commit()).rejects.toBeInstanceOf(BlobExistsError);
    expect(await store.getJson("manifest.json")).toEqual({ round: 1 });
  });
});

describe("json, files, folders", () => {
  test("putJson/getJson round-trip with a digest of the exact bytes; bad JSON names the blob", async () => {
    const store = await newStore();
    const value = { num_examples: 120, metrics: { loss: 0.25 } };
    const written = await store.putJson("metrics.json", value);
    expect(await store.getJson("metrics.json")).toEqual(value);
    expect(written.sha256).toBe(sha256(await store.getBytes("metrics.json")));
    await store.putBytes("bad.json", Buffer.from("{nope"));
    await expect(store.getJson("bad.json")).rejects.toThrow(BlobJsonError);
    await expect(store.getJson("bad.json")).rejects.toThrow(`blob ${store.uri("bad.json")} is not valid JSON`);
  });

  test("folder upload/download round trip keeps bytes, paths and digests; deleteFolder respects folder bounds", async () => {
    const store = await newStore({ blockSize: 64 * KiB });
    const src = tempDir();
    const files: Record<string, Buffer> = {
      "model.safetensors": randomBytes(200 * KiB + 3), // streamed through a sink
      "metrics.json": Buffer.from('{"num_examples": 3}'),
      "empty.txt": Buffer.alloc(0),
      "logs/nested/std_log.txt": Buffer.from("line\n"),
    };
    for (const [rel, bytes] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
      fs.writeFileSync(path.join(src, rel), bytes);
    }
    const prefix = siloUpdateFolder("fed", 1, "east");
    const up = await store.uploadFolder(src, prefix);
    expect(up.map((f) => f.path)).toEqual(
      Object.keys(files)
        .map((rel) => prefix + rel)
        .sort(),
    );
    for (const f of up) expect(f.sha256).toBe(sha256(files[f.path.slice(prefix.length)]));
    await store.putBytes(siloUpdateFolder("fed", 10, "east") + "model.safetensors", Buffer.from("round 10"));

    const dst = tempDir();
    const down = await store.downloadFolder(prefix.replace(/\/$/, ""), dst);
    expect(down.map((f) => f.path).sort()).toEqual(up.map((f) => f.path));
    for (const [rel, bytes] of Object.entries(files)) {
      expect(fs.readFileSync(path.join(dst, rel)).equals(bytes)).toBe(true);
    }
    for (const f of down) expect(f.sha256).toBe(sha256(fs.readFileSync(f.localPath)));
    expect(fs.readdirSync(dst).filter((n) => n.includes(".partial-"))).toEqual([]);

    expect(await store.deleteFolder("federations/fed/rounds/1")).toBe(4);
    expect(await store.list("federations/fed/rounds/1/")).toEqual([]);
    expect((await store.list("federations/fed/")).map((b) => b.path)).toEqual(["federations/fed/rounds/10/updates/east/model.safetensors"]);
    await expect(store.deleteFolder("")).rejects.toBeInstanceOf(StorePathError);
    await expect(store.uploadFolder(path.join(src, "missing"), prefix)).rejects.toThrow(`uploadFolder: ${path.join(src, "missing")} is not a folder`);
    expect(await store.downloadFolder("federations/none/", dst)).toEqual([]);
    fs.rmSync(src, { recursive: true, force: true });
    fs.rmSync(dst, { recursive: true, force: true });
  });

  test("downloadToFile rejects bytes that do not match the recorded sha256 and leaves no file", async () => {
    const store = await newStore();
    const blobPath = roundGlobalPath("fed", 2);
    await store.putBytes(blobPath, Buffer.from("real model"));
    await store.container.getBlockBlobClient(blobPath).setMetadata({ sha256: "0".repeat(64) });
    const dir = tempDir();
    const target = path.join(dir, "global", "model.safetensors");
    await expect(store.downloadToFile(blobPath, target)).rejects.toThrow(new BlobIntegrityError(store.uri(blobPath), "0".repeat(64), sha256(Buffer.from("real model"))));
    expect(fs.readdirSync(path.dirname(target))).toEqual([]);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("downloadFolder checks each file against the sha256 its listing recorded, without a HEAD per file", async () => {
    const store = await newStore();
    const blobPath = roundGlobalPath("fed", 3);
    await store.putBytes(blobPath, Buffer.from("real model"));
    await store.container.getBlockBlobClient(blobPath).setMetadata({ sha256: "1".repeat(64) });
    let stats = 0;
    const stat = store.stat.bind(store);
    store.stat = (...args) => (stats++, stat(...args));
    const dir = tempDir();
    const folder = blobPath.slice(0, blobPath.lastIndexOf("/") + 1);
    await expect(store.downloadFolder(folder, dir)).rejects.toThrow(new BlobIntegrityError(store.uri(blobPath), "1".repeat(64), sha256(Buffer.from("real model"))));
    expect(fs.readdirSync(dir)).toEqual([]);
    expect(stats).toBe(0);
    await store.putBytes(blobPath, Buffer.from("real model"));
    stats = 0;
    const [file] = await store.downloadFolder(folder, dir);
    expect(fs.readFileSync(file.localPath, "utf8")).toBe("real model");
    expect(file.sha256).toBe(sha256(Buffer.from("real model")));
    expect(stats).toBe(0);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("uploadFile/downloadToFile stream a file bigger than a block", async () => {
    const store = await newStore({ blockSize: 64 * KiB });
    const dir = tempDir();
    const data = randomBytes(333 * KiB);
    fs.writeFileSync(path.join(dir, "in.bin"), data);
    const up = await store.uploadFile(path.join(dir, "in.bin"), "f/in.bin");
    expect(up).toEqual({ uri: store.uri("f/in.bin"), size: data.length, sha256: sha256(data) });
    const down = await store.downloadToFile("f/in.bin", path.join(dir, "out.bin"));
    expect(down).toEqual({ uri: path.join(dir, "out.bin"), size: data.length, sha256: sha256(data) });
    expect(fs.readFileSync(path.join(dir, "out.bin")).equals(data)).toBe(true);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test("URIs map back to paths; a foreign container is refused", async () => {
    const store = await newStore();
    expect(store.pathFromUri(store.uri("a/b c.json"))).toBe("a/b c.json");
    expect(() => store.pathFromUri(store.uri("x").replace(store.container.containerName, "other"))).toThrow(StorePathError);
    expect(() => store.uri("../x")).toThrow(StorePathError);
  });
});

describe("construction from settings", () => {
  test("identity settings target the account URL with DefaultAzureCredential; embedded needs Azurite first", () => {
    const store = ModelStore.fromSettings({ kind: "identity", settingName: "AzureWebJobsStorage", blobServiceUri: "https://flodata.blob.core.windows.net" }, "models");
    expect(store.containerUrl).toBe("https://flodata.blob.core.windows.net/models");
    expect(store.uri(roundGlobalPath("f", 1))).toBe("https://flodata.blob.core.windows.net/models/federations/f/rounds/1/global/model.safetensors");
    expect(() => ModelStore.fromSettings({ kind: "identity", settingName: "S", queueServiceUri: "https://q" }, "models")).toThrow(
      "S: identity connection has no blob endpoint (set __accountName or __blobServiceUri)",
    );
    expect(() => ModelStore.fromSettings({ kind: "embedded" }, "models")).toThrow(/no storage connection is configured/);
  });

  test("bad tuning options are rejected naming the option", () => {
    expect(() => ModelStore.fromConnectionString(azurite.connectionString, "x", { blockSize: 0 })).toThrow("blockSize: expected a positive integer, got 0");
    expect(() => ModelStore.fromConnectionString(azurite.connectionString, "x", { readConcurrency: 1.5 })).toThrow("readConcurrency: expected a positive integer, got 1.5");
  });
});
