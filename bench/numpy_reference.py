#!/usr/bin/env python3
"""numpy reference for `npm run bench:aggregate`: FedAvg as a weighted sum accumulated in place
(Flower's aggregate_inplace style: acc = w0*x0, then acc += wi*xi, in the tensor dtype), reading the
same safetensors update dirs and writing the result. Prints one JSON line: seconds (after the imports),
maxrss_kb, cpu_s (the whole process's CPU time, start and imports included)."""
import json, os, resource, struct, sys, time

import numpy as np

DT = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return 8 + n, json.loads(f.read(n))


def main(out, dirs):
    start = time.perf_counter()
    files = [os.path.join(d, "model.safetensors") for d in dirs]
    weights = np.array([json.load(open(os.path.join(d, "metrics.json")))["num_examples"] for d in dirs], dtype=np.float64)
    weights /= weights.sum()
    heads = [header(f) for f in files]
    names = sorted(k for k in heads[0][1] if k != "__metadata__")
    result = {}
    for name in names:
        acc = None
        for (data_start, h), path, w in zip(heads, files, weights):
            t = h[name]
            begin, end = t["data_offsets"]
            x = np.fromfile(path, dtype=DT[t["dtype"]], count=(end - begin) // np.dtype(DT[t["dtype"]]).itemsize, offset=data_start + begin)
            if acc is None:
                acc = x
                acc *= x.dtype.type(w)
            else:
                x *= x.dtype.type(w)
                acc += x
        result[name] = (h[name], acc)
    # write safetensors (same layout rules as flo: sorted names, space padded header)
    hdr, off = {}, 0
    for name in names:
        meta, arr = result[name]
        hdr[name] = {"dtype": meta["dtype"], "shape": meta["shape"], "data_offsets": [off, off + arr.nbytes]}
        off += arr.nbytes
    text = json.dumps(hdr, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in names:
            result[name][1].tofile(f)
    elapsed = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": elapsed, "maxrss_kb": peak_rss_kb(usage), "cpu_s": usage.ru_utime + usage.ru_stime}))


def peak_rss_kb(usage):
    """VmHWM (this process image only: ru_maxrss also counts the parent's size before exec)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return usage.ru_maxrss


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
