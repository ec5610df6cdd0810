import { aggregateUpdates, AggregateOptions, firstNonFinite } from "../lib/aggregation/engine";
import { AggregationError } from "../lib/aggregation/errors";
import { createFedAvg } from "../lib/aggregation/fedavg";
import { weightedSum } from "../lib/aggregation/weightedSum";
import { createStrategy } from "../lib/aggregation/registry";
import { arenaOf, SimdArena } from "../lib/aggregation/simdKernel";
import type { CombineChunk, RoundContext, StatisticsChunk, Strategy } from "../lib/aggregation/strategy";
import type { ByteSource } from "../lib/models/bytes";
import { decodeFloats, DType, encodeFloats, FloatDType, isFloatDType } from "../lib/models/dtypes";
import { readSafetensorsHeader, readTensorBytes, writeSafetensors } from "../lib/models/safetensors";
import { memorySink, memorySource, MemorySink, rawSafetensors, sha256 } from "./fixtures/memoryBytes";
import { rng } from "./helpers/random";

type TensorValues = { name: string; dtype: DType; shape: number[]; values: number[] | bigint[] };

function encodeValues(t: TensorValues): Uint8Array {
  if (isFloatDType(t.dtype)) return encodeFloats(t.values as number[], t.dtype);
  switch (t.dtype) {
    case "I64":
      return new Uint8Array(BigInt64Array.from(t.values as bigint[]).buffer);
    case "I32":
      return new Uint8Array(Int32Array.from(t.values as number[]).buffer);
    case "U8":
    case "BOOL":
      return Uint8Array.from(t.values as number[]);
    default:
      throw new Error(`test helper: no encoder for ${t.dtype}`);
  }
}

async function modelBytes(tensors: TensorValues[], metadata?: Record<string, string>): Promise<Buffer> {
  const sink = memorySink();
  await writeSafetensors(
    sink,
    tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, data: encodeValues(t) })),
    { metadata },
  );
  return sink.committed!;
}

async function readModel(bytes: Buffer): Promise<Map<string, { dtype: DType; shape: number[]; bytes: Buffer }>> {
  const src = memorySource("out", bytes);
  const header = await readSafetensorsHeader(src);
  const out = new Map<string, { dtype: DType; shape: number[]; bytes: Buffer }>();
  for (const t of header.tensors) out.set(t.name, { dtype: t.dtype, shape: t.shape, bytes: await readTensorBytes(src, header, t.name) });
  return out;
}

function floats(t: { dtype: DType; bytes: Buffer }): number[] {
  return Array.from(decodeFloats(t.bytes, t.dtype as FloatDType));
}

interface Run {
  sinks: MemorySink[];
  options: Partial<AggregateOptions>;
}

function runFedAvg(updates: AggregateOptions["updates"], extra: Partial<AggregateOptions> = {}) {
  const sinks: MemorySink[] = [];
  const run: Run = { sinks, options: extra };
  const promise = aggregateUpdates({
    updates,
    output: () => {
      const s = memorySink();
      sinks.push(s);
      return s;
    },
    strategy: createFedAvg(),
    minUpdates: 1,
    ...extra,
  });
  return { promise, run };
}

const filled = (v: number, n = 4) => new Array<number>(n).fill(v);

describe("FedAvg golden values (worked by hand)", () => {
  test("values 1, 2, 3 with n = 1, 1, 2 -> 2.25", async () => {
    const updates = await Promise.all(
      [1, 2, 3].map(async (v, i) => ({
        id: `s${i}`,
        model: memorySource(`s${i}`, await modelBytes([{ name: "w", dtype: "F32", shape: [4], values: filled(v) }])),
        metrics: { numExamples: [1, 1, 2][i], metrics: {} },
      })),
    );
    const { promise, run } = runFedAvg(updates);
    const result = await promise;
    expect(floats((await readModel(run.sinks[0].committed!)).get("w")!)).toEqual(filled(2.25));
    expect(result.included.map((u) => [u.id, u.numExamples])).toEqual([
      ["s0", 1],
      ["s1", 1],
      ["s2", 2],
    ]);
    expect(result.totalExamples).toBe(4);
  });

  test("float [1,2],[3,4] n = 1,3 -> [2.5,3.5]; int tensors are taken from the first valid update, never averaged", async () => {
    const a = await modelBytes([
      { name: "f", dtype: "F32", shape: [2], values: [1, 2] },
      { name: "i", dtype: "I64", shape: [2], values: [10n, 20n] },
    ]);
    const b = await modelBytes([
      { name: "f", dtype: "F32", shape: [2], values: [3, 4] },
      { name: "i", dtype: "I64", shape: [2], values: [30n, 40n] },
    ]);
    const { promise, run } = runFedAvg([
      { id: "a", model: memorySource("a", a), metrics: { numExamples: 1, metrics: {} } },
      { id: "b", model: memorySource("b", b), metrics: { numExamples: 3, metrics: {} } },
    ]);
    await promise;
    const out = await readModel(run.sinks[0].committed!);
    expect(floats(out.get("f")!)).toEqual([2.5, 3.5]);
    const ints = out.get("i")!;
    expect(ints.dtype).toBe("I64");
    expect([ints.bytes.readBigInt64LE(0), ints.bytes.readBigInt64LE(8)]).toEqual([10n, 20n]);
  });

  test("identical weights with n = 1, 2 come out unchanged (bit-exact per dtype)", async () => {
    const values = [0.1, -3.75, 1e-3, 12345.678];
    for (const dtype of ["F32", "F64", "F16", "BF16"] as const) {
      const bytes = await modelBytes([{ name: "w", dtype, shape: [2, 2], values }]);
      const { promise, run } = runFedAvg([
        { id: "a", model: memorySource("a", bytes), metrics: { numExamples: 1, metrics: {} } },
        { id: "b", model: memorySource("b", bytes), metrics: { numExamples: 2, metrics: {} } },
      ]);
      await promise;
      expect((await readModel(run.sinks[0].committed!)).get("w")!.bytes.equals((await readModel(bytes)).get("w")!.bytes)).toBe(true);
    }
  });

  test("weighted sum kernel handles 1..5 rows", () => {
    for (let k = 1; k <= 5; k++) {
      const rows = Array.from({ length: k }, (_, j) => Float32Array.from([j + 1, 10 * (j + 1)]));
      const weights = Array.from({ length: k }, () => 1 / k);
      const out = new Float64Array(2);
      weightedSum(rows, weights, out, 2);
      expect(out[0]).toBeCloseTo((k + 1) / 2, 12);
      expect(out[1]).toBeCloseTo((10 * (k + 1)) / 2, 12);
    }
  });
});

describe("streaming FedAvg against a reference computed here", () => {
  const layout: { name: string; dtype: DType; shape: number[] }[] = [
    { name: "conv.weight", dtype: "F32", shape: [3, 5, 7] },
    { name: "fc.bias", dtype: "F64", shape: [23] },
    { name: "half", dtype: "F16", shape: [41] },
    { name: "brain", dtype: "BF16", shape: [6, 6] },
    { name: "bn.num_batches_tracked", dtype: "I64", shape: [] },
    { name: "mask", dtype: "BOOL", shape: [9] },
    { name: "empty", dtype: "F32", shape: [0] },
    { name: "scalar", dtype: "F32", shape: [] },
  ];

  async function randomUpdates(seed: number, k: number) {
    const rand = rng(seed);
    const models: Map<string, number[] | bigint[]>[] = [];
    const updates = [];
    for (let i = 0; i < k; i++) {
      const values = new Map<string, number[] | bigint[]>();
      const tensors: TensorValues[] = layout.map((t) => {
        const n = t.shape.reduce((a, b) => a * b, 1);
        let v: number[] | bigint[];
        if (t.dtype === "I64") v = [BigInt(Math.floor(rand() * 1000))];
        else if (t.dtype === "BOOL") v = Array.from({ length: n }, () => (rand() < 0.5 ? 1 : 0));
        else {
          // Round the inputs to their dtype so the reference sees exactly what the file holds.
          const raw = Array.from({ length: n }, () => (rand() - 0.5) * 4);
          v = Array.from(decodeFloats(encodeFloats(raw, t.dtype as FloatDType), t.dtype as FloatDType));
        }
        values.set(t.name, v);
        return { ...t, values: v };
      });
      models.push(values);
      updates.push({ id: `silo-${i}`, model: memorySource(`silo-${i}`, await modelBytes(tensors)), metrics: { numExamples: 1 + Math.floor(rand() * 500), metrics: { loss: rand(), acc: rand() } } });
    }
    return { models, updates };
  }

  test.each([
    [1, 5, 7],
    [2, 3, 1],
    [3, 10, 64],
    [4, 2, 1 << 20],
  ])("seed %i, K=%i, chunk=%i elements", async (seed, k, chunkElements) => {
    const { models, updates } = await randomUpdates(seed, k);
    const { promise, run } = runFedAvg(updates, { chunkElements });
    const result = await promise;
    const out = await readModel(run.sinks[0].committed!);
    const ns = updates.map((u) => u.metrics.numExamples);
    const total = ns.reduce((a, b) => a + b, 0);
    for (const t of layout) {
      const got = out.get(t.name)!;
      expect(got.dtype).toBe(t.dtype);
      expect(got.shape).toEqual(t.shape);
      if (!isFloatDType(t.dtype)) {
        expect(got.bytes.equals(Buffer.from(encodeValues({ ...t, values: models[0].get(t.name)! })))).toBe(true);
        continue;
      }
      const n = t.shape.reduce((a, b) => a * b, 1);
      const reference = new Array<number>(n).fill(0);
      const magnitude = new Array<number>(n).fill(0);
      models.forEach((m, i) =>
        (m.get(t.name) as number[]).forEach((v, j) => {
          reference[j] += (ns[i] * v) / total;
          magnitude[j] += Math.abs((ns[i] * v) / total);
        }),
      );
      // Compare in the tensor's dtype: at most one unit in the last place apart.
      const expected = Array.from(decodeFloats(encodeFloats(reference, t.dtype), t.dtype));
      const ulp = { F64: 2 ** -52, F32: 2 ** -23, F16: 2 ** -10, BF16: 2 ** -7 }[t.dtype];
      floats(got).forEach((v, j) => {
        // one ulp of the dtype, plus the float64 summation-order error (matters for F64 only)
        const orderError = 16 * 2 ** -52 * magnitude[j];
        expect(Math.abs(v - expected[j])).toBeLessThanOrEqual(ulp * Math.max(Math.abs(expected[j]), 2 ** -14) * 1.0001 + orderError);
        expect(Math.abs(v - reference[j])).toBeLessThanOrEqual(Math.max(1e-6, ulp) * Math.max(1, Math.abs(reference[j])) + orderError);
      });
    }
    // digests recorded: of each update's bytes and of the output
    for (const [i, inc] of result.included.entries()) {
      const src = updates[i].model;
      const bytes = await src.read(0, await src.size());
      expect(inc.sha256).toBe(sha256(bytes));
    }
    expect(result.output.sha256).toBe(sha256(run.sinks[0].committed!));
    // metrics: num_examples-weighted means
    const loss = updates.reduce((s, u, i) => s + ns[i] * u.metrics.metrics.loss, 0) / total;
    expect(result.metrics.loss).toBeCloseTo(loss, 12);
    expect(result.restarts).toBe(0);
  });
});

describe("bad updates are excluded with a reason while the others aggregate", () => {
  const good = (v: number) =>
    modelBytes([
      { name: "a", dtype: "F32", shape: [10], values: filled(v, 10) },
      { name: "b", dtype: "F32", shape: [10], values: filled(v, 10) },
    ]);

  test("NaN found mid-stream restarts the pass without that update", async () => {
    const nanValues = filled(5, 10);
    nanValues[7] = NaN;
    const poisoned = await modelBytes([
      { name: "a", dtype: "F32", shape: [10], values: filled(5, 10) },
      { name: "b", dtype: "F32", shape: [10], values: nanValues },
    ]);
    const infBytes = await modelBytes([
      { name: "a", dtype: "F32", shape: [10], values: [...filled(5, 9), Infinity] },
      { name: "b", dtype: "F32", shape: [10], values: filled(5, 10) },
    ]);
    const { promise, run } = runFedAvg(
      [
        { id: "ok1", model: memorySource("ok1", await good(1)), metrics: { numExamples: 1, metrics: {} } },
        { id: "nan", model: memorySource("nan", poisoned), metrics: { numExamples: 1, metrics: {} } },
        { id: "inf", model: memorySource("inf", infBytes), metrics: { numExamples: 1, metrics: {} } },
        { id: "ok2", model: memorySource("ok2", await good(3)), metrics: { numExamples: 3, metrics: {} } },
      ],
      { chunkElements: 4 },
    );
    const result = await promise;
    expect(result.excluded).toEqual([
      { id: "inf", reason: 'non-finite value (Infinity) in tensor "a" at element 9' },
      { id: "nan", reason: 'non-finite value (NaN) in tensor "b" at element 7' },
    ]);
    expect(result.restarts).toBe(2);
    expect(result.included.map((u) => u.id)).toEqual(["ok1", "ok2"]);
    // Partial outputs of the aborted passes were discarded.
    expect(run.sinks.map((s) => s.aborted)).toEqual([true, true, false]);
    const out = await readModel(run.sinks[2].committed!);
    expect(floats(out.get("a")!)).toEqual(filled(2.5, 10));
    expect(floats(out.get("b")!)).toEqual(filled(2.5, 10));
  });

  test("shape-mismatched, dtype-mismatched, truncated, malformed and unreadable updates", async () => {
    const truncated = (await good(7)).subarray(0, -8);
    const failing = memorySource("flaky", await good(9), { failReadsAfter: 3 });
    const updates = [
      { id: "ok1", model: memorySource("ok1", await good(1)), metrics: { numExamples: 1, metrics: {} } },
      {
        id: "shape",
        model: memorySource(
          "shape",
          await modelBytes([
            { name: "a", dtype: "F32", shape: [2, 5], values: filled(1, 10) },
            { name: "b", dtype: "F32", shape: [10], values: filled(1, 10) },
          ]),
        ),
        metrics: { numExamples: 1, metrics: {} },
      },
      {
        id: "dtype",
        model: memorySource(
          "dtype",
          await modelBytes([
            { name: "a", dtype: "F64", shape: [10], values: filled(1, 10) },
            { name: "b", dtype: "F32", shape: [10], values: filled(1, 10) },
          ]),
        ),
        metrics: { numExamples: 1, metrics: {} },
      },
      { id: "missing", model: memorySource("missing", await modelBytes([{ name: "a", dtype: "F32", shape: [10], values: filled(1, 10) }])), metrics: { numExamples: 1, metrics: {} } },
      {
        id: "extra",
        model: memorySource(
          "extra",
          await modelBytes([
            { name: "a", dtype: "F32", shape: [10], values: filled(1, 10) },
            { name: "b", dtype: "F32", shape: [10], values: filled(1, 10) },
            { name: "c", dtype: "F32", shape: [1], values: [1] },
          ]),
        ),
        metrics: { numExamples: 1, metrics: {} },
      },
      { id: "truncated", model: memorySource("truncated.safetensors", truncated), metrics: { numExamples: 1, metrics: {} } },
      { id: "garbage", model: memorySource("garbage.safetensors", rawSafetensors(null, 0, "{oops")), metrics: { numExamples: 1, metrics: {} } },
      { id: "flaky", model: failing, metrics: { numExamples: 1, metrics: {} } },
      { id: "ok2", model: memorySource("ok2", await good(4)), metrics: { numExamples: 2, metrics: {} } },
    ];
    const { promise, run } = runFedAvg(updates, { chunkElements: 3 });
    const result = await promise;
    const reasons = Object.fromEntries(result.excluded.map((e) => [e.id, e.reason]));
    expect(reasons.shape).toBe('layout mismatch: tensor "a" has shape [2,5], reference update "ok1" has [10]');
    expect(reasons.dtype).toBe('layout mismatch: tensor "a" has dtype F64, reference update "ok1" has F32');
    expect(reasons.missing).toBe('layout mismatch: tensor "b" is missing (present in reference update "ok1")');
    expect(reasons.extra).toBe('layout mismatch: unexpected tensor "c" (absent from reference update "ok1")');
    expect(reasons.truncated).toMatch(/^invalid model: truncated\.safetensors: tensor "b": .*\[OUT_OF_BOUNDS\]$/);
    expect(reasons.garbage).toMatch(/^invalid model: garbage\.safetensors: header is not valid UTF-8 JSON.*\[BAD_JSON\]$/);
    expect(reasons.flaky).toMatch(/^unreadable model: tensor "a" bytes \[\d+, \d+\): injected read failure #4$/);
    expect(result.excluded).toHaveLength(7);
    expect(result.included.map((u) => u.id)).toEqual(["ok1", "ok2"]);
    expect(result.restarts).toBe(1);
    const out = await readModel(run.sinks.at(-1)!.committed!);
    expect(floats(out.get("a")!)).toEqual(filled(3, 10));
  });

  test("fewer valid updates than minUpdates fails with TOO_FEW_UPDATES listing the exclusions, writing nothing", async () => {
    const { promise, run } = runFedAvg(
      [
        { id: "ok", model: memorySource("ok", await good(1)), metrics: { numExamples: 1, metrics: {} } },
        { id: "bad", model: memorySource("bad.safetensors", rawSafetensors(null, 0, "{oops")), metrics: { numExamples: 3, metrics: {} } },
      ],
      { minUpdates: 2 },
    );
    const err = await promise.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AggregationError);
    expect((err as AggregationError).code).toBe("TOO_FEW_UPDATES");
    expect((err as AggregationError).message).toMatch(/^1 valid update\(s\), need at least 2 \(excluded bad: invalid model: bad\.safetensors: header is not valid UTF-8 JSON.*\) \[TOO_FEW_UPDATES\]$/);
    expect((err as AggregationError).excluded).toEqual([{ id: "bad", reason: expect.stringMatching(/^invalid model: bad\.safetensors: /) }]);
    expect(run.sinks).toHaveLength(0);
  });

  test("a NaN that drops the round below minUpdates fails after discarding the partial output", async () => {
    const { promise, run } = runFedAvg(
      [
        { id: "ok", model: memorySource("ok", await good(1)), metrics: { numExamples: 1, metrics: {} } },
        {
          id: "nan",
          model: memorySource(
            "nan",
            await modelBytes([
              { name: "a", dtype: "F32", shape: [10], values: filled(1, 10) },
              { name: "b", dtype: "F32", shape: [10], values: filled(NaN, 10) },
            ]),
          ),
          metrics: { numExamples: 1, metrics: {} },
        },
      ],
      { minUpdates: 2, chunkElements: 4 },
    );
    await expect(promise).rejects.toMatchObject({ code: "TOO_FEW_UPDATES" });
    expect(run.sinks).toHaveLength(1);
    expect(run.sinks[0].aborted).toBe(true);
  });

  test("an aborted signal stops the aggregation and aborts the sink", async () => {
    const controller = new AbortController();
    const { promise, run } = runFedAvg([{ id: "ok", model: memorySource("ok", await good(1)), metrics: { numExamples: 1, metrics: {} } }], {
      chunkElements: 2,
      signal: controller.signal,
      onProgress: (p) => {
        if (p.bytesRead >= 16) controller.abort(new Error("operator cancelled"));
      },
    });
    await expect(promise).rejects.toThrow("operator cancelled");
    expect(run.sinks[0].aborted).toBe(true);
  });
});

describe("SIMD kernel and hashing workers", () => {
  test("the WebAssembly SIMD weighted sum equals the float64 JS sum for odd/even K and ragged lengths", () => {
    const rand = rng(99);
    for (const [k, length] of [
      [1, 9],
      [2, 4],
      [3, 1027],
      [10, 4099],
      [127, 33],
    ]) {
      const arena = new SimdArena(k * length * 4 + length * 8 + 64 * (k + 1));
      expect(arena.simd).toBe(true);
      const rows = Array.from({ length: k }, () => {
        const bytes = arena.allocate(length * 4);
        const row = new Float32Array(bytes.buffer, bytes.byteOffset, length);
        for (let i = 0; i < length; i++) row[i] = (rand() - 0.5) * 1000;
        return row;
      });
      const weights = rows.map(() => rand());
      const outBytes = arena.allocate(length * 8);
      const out = new Float64Array(outBytes.buffer, outBytes.byteOffset, length);
      expect(arenaOf(rows, out)).toBe(arena);
      out.fill(123); // stale values must not leak into the result
      weightedSum(rows, weights, out, length);
      const plainRows = rows.map((r) => Float32Array.from(r));
      expect(arenaOf(plainRows, new Float64Array(length))).toBeUndefined();
      let worst = 0;
      for (let i = 0; i < length; i++) {
        let expected = 0;
        for (let j = 0; j < k; j++) expected += weights[j] * rows[j][i];
        worst = Math.max(worst, Math.abs(out[i] - expected) / Math.max(1, Math.abs(expected)));
      }
      expect(worst).toBeLessThanOrEqual(1e-12 * k);
    }
  });

  test("SIMD float32 encode rounds like Math.fround and flags NaN/Inf anywhere, including the tail", () => {
    const length = 1027;
    const arena = new SimdArena(length * 12 + 64);
    const valuesBytes = arena.allocate(length * 8);
    const values = new Float64Array(arena.buffer, valuesBytes.byteOffset, length);
    const rand = rng(5);
    for (let i = 0; i < length; i++) values[i] = (rand() - 0.5) * 1e6 + 1 / 3;
    const target = arena.allocate(length * 4);
    expect(arena.encodeF32(values, target)).toBe(true);
    const f32 = new Float32Array(arena.buffer, target.byteOffset, length);
    let mismatches = 0;
    for (let i = 0; i < length; i++) if (f32[i] !== Math.fround(values[i])) mismatches++;
    expect(mismatches).toBe(0);
    for (const [at, bad] of [
      [0, NaN],
      [517, Infinity],
      [1023, -Infinity],
      [1026, NaN],
    ] as const) {
      const saved = values[at];
      values[at] = bad;
      expect(arena.encodeF32(values, target)).toBe(false);
      values[at] = saved;
    }
    expect(() => arena.encodeF32(values, new Uint8Array(length * 4))).toThrow("encodeF32: values and target must be aligned views of this arena");
  });

  test("hash workers digest every update while streaming, also across a NaN restart", async () => {
    const models = await Promise.all(
      [1, 2, 3, 4].map((v) =>
        modelBytes([
          { name: "a", dtype: "F32", shape: [1000], values: filled(v, 1000) },
          { name: "b", dtype: "F32", shape: [1000], values: v === 3 ? [...filled(v, 999), NaN] : filled(v, 1000) },
          { name: "c", dtype: "I32", shape: [3], values: [v, v, v] },
        ]),
      ),
    );
    const { promise, run } = runFedAvg(
      models.map((m, i) => ({ id: `u${i}`, model: memorySource(`u${i}`, m), metrics: { numExamples: 1, metrics: {} } })),
      { chunkElements: 96, hashWorkers: 2 },
    );
    const result = await promise;
    expect(result.restarts).toBe(1);
    expect(result.excluded).toEqual([{ id: "u2", reason: 'non-finite value (NaN) in tensor "b" at element 999' }]);
    expect(result.included.map((u) => u.sha256)).toEqual([0, 1, 3].map((i) => sha256(models[i])));
    const out = await readModel(run.sinks.at(-1)!.committed!);
    expect(floats(out.get("a")!)).toEqual(filled(7 / 3, 1000).map((v) => Math.fround(v)));
  });
});

describe("options", () => {
  const model = () => modelBytes([{ name: "w", dtype: "F32", shape: [64], values: filled(2, 64) }]);

  test("a known sha256 is reported as given (not re-hashed); a malformed one is rejected", async () => {
    const bytes = await model();
    const known = "ab".repeat(32);
    const { promise } = runFedAvg([
      { id: "known", model: memorySource("known", bytes), metrics: { numExamples: 1, metrics: {} }, knownSha256: known },
      { id: "hashed", model: memorySource("hashed", bytes), metrics: { numExamples: 1, metrics: {} } },
    ]);
    const result = await promise;
    expect(result.included.map((u) => u.sha256)).toEqual([known, sha256(bytes)]);
    await expect(runFedAvg([{ id: "x", model: memorySource("x", bytes), metrics: { numExamples: 1, metrics: {} }, knownSha256: "ABC" }]).promise).rejects.toThrow(
      'update "x": knownSha256 must be 64 lower-case hex digits, got "ABC" [BAD_OPTIONS]',
    );
  });

  test("an update weighing nothing is a caller error, not an exclusion (metrics are validated before the engine)", async () => {
    const bytes = await model();
    for (const numExamples of [0, -3, 2.5]) {
      const { promise, run } = runFedAvg([{ id: "x", model: memorySource("x", bytes), metrics: { numExamples, metrics: {} } }]);
      await expect(promise).rejects.toThrow(`update "x": metrics.numExamples must be an integer > 0, got ${numExamples} [BAD_OPTIONS]`);
      expect(run.sinks).toHaveLength(0);
    }
  });

  test("deep prefetch and a tiny buffer budget give the same result; bad numbers are rejected", async () => {
    const rand = rng(7);
    const models = await Promise.all([0, 1, 2].map(() => modelBytes([{ name: "w", dtype: "F32", shape: [1000], values: Array.from({ length: 1000 }, () => rand()) }])));
    const updates = models.map((m, i) => ({ id: `u${i}`, model: memorySource(`u${i}`, m), metrics: { numExamples: i + 1, metrics: {} } }));
    const a = runFedAvg(updates);
    const b = runFedAvg(updates, { prefetchChunks: 5, bufferBudgetBytes: 1000, hashWorkers: 1 });
    const [ra, rb] = await Promise.all([a.promise, b.promise]);
    expect(a.run.sinks[0].committed!.equals(b.run.sinks[0].committed!)).toBe(true);
    expect(rb.included.map((u) => u.sha256)).toEqual(ra.included.map((u) => u.sha256));
    await expect(runFedAvg(updates, { prefetchChunks: 0 }).promise).rejects.toThrow("prefetchChunks must be an integer >= 1, got 0 [BAD_OPTIONS]");
    await expect(runFedAvg(updates, { chunkElements: 0 }).promise).rejects.toThrow("chunkElements must be a positive integer, got 0 [BAD_OPTIONS]");
    await expect(runFedAvg(updates, { minUpdates: 0 }).promise).rejects.toThrow("minUpdates must be an integer >= 1, got 0 [BAD_OPTIONS]");
    await expect(runFedAvg([updates[0], updates[0]]).promise).rejects.toThrow('duplicate update id "u0" [BAD_OPTIONS]');
  });
});

describe("read buffers under a budget", () => {
  /** The byte lengths of the tensor reads the engine makes (the header reads are 8 bytes and the header). */
  function recordingSource(name: string, bytes: Buffer, lengths: number[]): ByteSource {
    const inner = memorySource(name, bytes);
    return {
      name,
      size: (o) => inner.size(o),
      read: async (offset, length, o) => {
        lengths.push(length);
        return inner.read(offset, length, o);
      },
    };
  }

  test("with every digest known no slot waits for hash workers, so the same budget holds larger chunks", async () => {
    const n = 4096;
    const models = await Promise.all([0, 1].map((k) => modelBytes([{ name: "w", dtype: "F32", shape: [n], values: Array.from({ length: n }, (_, i) => i * (k + 1)) }])));
    const digests = models.map((m) => sha256(m));
    // 2 updates x 4-byte elements, prefetch 1: (1 + 1) slots when nothing is hashed on workers,
    // (1 + 2) when the workers hash the chunk after it is combined.
    const budget = 2 * 4 * 480;
    const readsOf = async (known: boolean, hashWorkers: number) => {
      const lengths: number[] = [];
      const updates = models.map((m, i) => ({ id: `u${i}`, model: recordingSource(`u${i}`, m, lengths), metrics: { numExamples: 1, metrics: {} }, ...(known ? { knownSha256: digests[i] } : {}) }));
      const { promise, run } = runFedAvg(updates, { prefetchChunks: 1, bufferBudgetBytes: budget, hashWorkers });
      const result = await promise;
      expect(result.included.map((u) => u.sha256)).toEqual(digests);
      return { largest: Math.max(...lengths), output: run.sinks[0].committed! };
    };
    const known = await readsOf(true, 1);
    const hashed = await readsOf(false, 1);
    const inline = await readsOf(false, 0);
    // floor(budget / (slots x 2 x 4)) rounded down to 16 elements, x 4 bytes
    expect(known.largest).toBe(Math.floor(480 / 2 / 16) * 16 * 4);
    expect(hashed.largest).toBe(Math.floor(480 / 3 / 16) * 16 * 4);
    expect(inline.largest).toBe(known.largest); // hashing on the engine's thread frees the slot at once
    expect(known.output.equals(hashed.output)).toBe(true);
    expect(inline.output.equals(hashed.output)).toBe(true);
  });
});

describe("engine plumbing for the registry strategies", () => {
  test("hash falls back to a sequential re-read when a file's data is not in name order", async () => {
    // Hand-made file whose data section stores "b" before "a" (valid safetensors).
    const data = Buffer.concat([Buffer.from(new Float32Array([2, 2]).buffer), Buffer.from(new Float32Array([1, 1]).buffer)]);
    const bytes = rawSafetensors({ a: { dtype: "F32", shape: [2], data_offsets: [8, 16] }, b: { dtype: "F32", shape: [2], data_offsets: [0, 8] } }, data);
    const { promise, run } = runFedAvg([{ id: "x", model: memorySource("x", bytes), metrics: { numExamples: 1, metrics: {} } }]);
    const result = await promise;
    expect(result.included[0].sha256).toBe(sha256(bytes));
    const out = await readModel(run.sinks[0].committed!);
    expect(floats(out.get("a")!)).toEqual([1, 1]);
    expect(floats(out.get("b")!)).toEqual([2, 2]);
  });

  /** A toy stateful strategy: out = global + mean(rows - global) * scale, where scale comes from a
   *  statistics pass (sum of squared deltas), and state "acc" accumulates the deltas across rounds. */
  function toyStrategy(): Strategy<{ scale: number }> {
    return {
      name: "toy",
      options: {},
      needsGlobal: true,
      stateTensors: [{ name: "acc", dtype: "F64" }],
      propagatesNonFinite: false,
      statistics: [
        {
          name: "squared-deltas",
          size: (ctx: RoundContext) => ctx.updates.length,
          accumulate(chunk: StatisticsChunk, acc: Float64Array) {
            chunk.rows.forEach((row, i) => {
              for (let j = 0; j < chunk.length; j++) acc[i] += (row[j] - chunk.global![j]) ** 2;
            });
          },
        },
      ],
      plan: (_ctx: RoundContext, stats: readonly Float64Array[]) => ({ scale: 1 / Math.sqrt(stats[0].reduce((a, b) => a + b, 0)) }),
      combine(chunk: CombineChunk, plan: { scale: number }) {
        for (let j = 0; j < chunk.length; j++) {
          let mean = 0;
          for (const row of chunk.rows) mean += (row[j] - chunk.global![j]) / chunk.rows.length;
          chunk.out[j] = chunk.global![j] + mean * plan.scale;
          chunk.stateOut.acc[j] = chunk.state.acc[j] + mean;
        }
      },
      finish: (ctx: RoundContext, plan: { scale: number }) => ({ state: { rounds: ((ctx.state as { rounds?: number } | undefined)?.rounds ?? 0) + 1 }, report: { scale: plan.scale } }),
    };
  }

  test("statistics pass, global chunks, state tensors in/out and JSON state flow through", async () => {
    const global = await modelBytes([
      { name: "w", dtype: "F32", shape: [5], values: filled(1, 5) },
      { name: "n", dtype: "I32", shape: [1], values: [7] },
    ]);
    const u1 = await modelBytes([
      { name: "w", dtype: "F32", shape: [5], values: filled(2, 5) },
      { name: "n", dtype: "I32", shape: [1], values: [8] },
    ]);
    const u2 = await modelBytes([
      { name: "w", dtype: "F32", shape: [5], values: filled(4, 5) },
      { name: "n", dtype: "I32", shape: [1], values: [9] },
    ]);
    const stateSinks: Record<string, MemorySink> = {};
    const run = async (state: AggregateOptions["state"]) => {
      const out = memorySink();
      const result = await aggregateUpdates({
        updates: [
          { id: "u1", model: memorySource("u1", u1), metrics: { numExamples: 1, metrics: {} } },
          { id: "u2", model: memorySource("u2", u2), metrics: { numExamples: 1, metrics: {} } },
        ],
        output: () => out,
        stateOutput: (name) => (stateSinks[name] = memorySink(`mem://state/${name}`)),
        global: memorySource("global", global),
        strategy: toyStrategy(),
        state,
        minUpdates: 1,
        chunkElements: 2,
      });
      return { result, out: await readModel(out.committed!) };
    };
    const first = await run(undefined);
    // deltas: 1 and 3 per coordinate -> sum of squares = 5 * (1 + 9) = 50
    const scale = 1 / Math.sqrt(50);
    expect(first.result.state.report).toEqual({ scale });
    expect(first.result.state.json).toEqual({ rounds: 1 });
    floats(first.out.get("w")!).forEach((v) => expect(v).toBeCloseTo(1 + 2 * scale, 6));
    expect(first.out.get("n")!.bytes.readInt32LE(0)).toBe(8);
    const acc1 = await readModel(stateSinks.acc.committed!);
    expect(acc1.get("w")!.dtype).toBe("F64");
    expect(acc1.has("n")).toBe(false);
    expect(floats(acc1.get("w")!)).toEqual(filled(2, 5));

    const second = await run({ json: first.result.state.json, tensors: { acc: memorySource("acc", stateSinks.acc.committed!) } });
    expect(second.result.state.json).toEqual({ rounds: 2 });
    expect(floats((await readModel(stateSinks.acc.committed!)).get("w")!)).toEqual(filled(4, 5));
  });

  test("missing global model and missing state output are clear errors", async () => {
    const u = await modelBytes([{ name: "w", dtype: "F32", shape: [1], values: [1] }]);
    const base = { updates: [{ id: "u", model: memorySource("u", u) as ByteSource, metrics: { numExamples: 1, metrics: {} } }], output: () => memorySink(), strategy: toyStrategy(), minUpdates: 1 };
    await expect(aggregateUpdates(base)).rejects.toThrow("strategy toy needs the round's global model, none was given [GLOBAL_MISMATCH]");
    await expect(aggregateUpdates({ ...base, global: memorySource("g", u) })).rejects.toThrow("strategy toy keeps state tensors (acc) but no stateOutput was given [STATE_OUTPUT_MISSING]");
    const otherShape = await modelBytes([{ name: "w", dtype: "F32", shape: [2], values: [1, 2] }]);
    await expect(aggregateUpdates({ ...base, global: memorySource("g.safetensors", otherShape), stateOutput: () => memorySink() })).rejects.toThrow(
      'global model g.safetensors: tensor "w" is F32 [2], updates have F32 [1] [GLOBAL_MISMATCH]',
    );
  });

  test("registry and options", () => {
    expect(createStrategy("fedavg").name).toBe("fedavg");
    expect(() => createStrategy("fedmagic")).toThrow(/aggregation.strategy: expected one of fedavg, .*geometric-median, got "fedmagic"/);
    expect(() => createFedAvg({ lr: 1 })).toThrow('strategy fedavg: takes no options, got {"lr":1}');
    expect(firstNonFinite(Float32Array.from([1, 2, -Infinity]), 3)).toBe(2);
    expect(firstNonFinite(Float64Array.from([1, 2, 3]), 3)).toBe(-1);
  });
});
