"""Minimal safetensors reader and writer (numpy only), laid out exactly like lib/models/safetensors.ts."""

import json
import struct

import numpy as np

_NUMPY = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "U64": "<u8", "U32": "<u4", "I64": "<i8", "I32": "<i4", "U8": "u1"}
_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U64": 8, "U32": 4, "U8": 1, "BOOL": 1}
FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")


class SafetensorsFile:
    """Header of a safetensors file plus chunked access to its tensors (memory bounded by the chunk)."""

    def __init__(self, path):
        self.path = path
        with open(path, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(length).decode("utf-8"))
        self.data_start = 8 + length
        self.metadata = header.pop("__metadata__", None)
        self.tensors = header

    def numel(self, name):
        n = 1
        for d in self.tensors[name]["shape"]:
            n *= d
        return n

    def read_floats(self, name, start, count):
        """Elements [start, start + count) of a float tensor as float64."""
        entry = self.tensors[name]
        dtype = entry["dtype"]
        size = _SIZES[dtype]
        with open(self.path, "rb") as f:
            f.seek(self.data_start + entry["data_offsets"][0] + start * size)
            raw = f.read(count * size)
        if dtype == "BF16":
            return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        return np.frombuffer(raw, dtype=_NUMPY[dtype]).astype(np.float64)


def plan_layout(tensors, metadata):
    """Header bytes and per-tensor data offsets for tensors [(name, dtype, shape)], sorted like the TS writer."""
    # The TS writer sorts names as JavaScript strings (UTF-16 code units): UTF-16BE bytes sort the same.
    ordered = sorted(tensors, key=lambda t: t[0].encode("utf-16-be"))
    header = {}
    if metadata:
        header["__metadata__"] = {k: metadata[k] for k in sorted(metadata)}
    offset = 0
    layout = []
    for name, dtype, shape in ordered:
        n = 1
        for d in shape:
            n *= d
        size = n * _SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        layout.append((name, offset, offset + size))
        offset += size
    body = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    body += b" " * ((8 - len(body) % 8) % 8)
    return struct.pack("<Q", len(body)) + body, layout
