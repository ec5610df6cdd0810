"""Keys, session, seeds, PRG, Shamir shares, quantization, masking and reveal: see
docs/secure-aggregation.md. Mirrors lib/secagg/*.ts byte for byte."""

import base64
import hashlib
import json
import math
import os
import struct

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .safetensors_io import FLOAT_DTYPES, SafetensorsFile, plan_layout

FIELD_PRIME = 2**255 - 19
KEY_FILE_FORMAT = "flo-secagg-x25519/1"
SHARES_FORMAT = "flo-secagg-shares/1"
MASKED_FORMAT = "flo-secagg-masked/1"
WEIGHT_TENSOR = "flo.secagg.weight"
MAX_EXACT_BITS = 48


class SecAggError(Exception):
    """`code` names the rule (same codes as the TypeScript SecAggError), `field` the input at fault."""

    def __init__(self, code, field, message):
        super().__init__(f"{field}: {message} [{code}]")
        self.code = code
        self.field = field


def _u32(n):
    return struct.pack("<I", n)


def _str(s):
    b = s.encode("utf-8")
    return _u32(len(b)) + b


# ---------- keys ----------


def key_pair_from_secret(secret_key):
    public = X25519PrivateKey.from_private_bytes(bytes(secret_key)).public_key()
    return bytes(secret_key), public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def read_secret_key_file(path):
    """(secret_key, public_key) from a key file written by `flo silo keygen`."""
    with open(path, "r", encoding="utf-8") as f:
        record = json.load(f)
    if not isinstance(record, dict) or record.get("format") != KEY_FILE_FORMAT:
        raise SecAggError("BAD_KEY", f"{path}: format", f'expected "{KEY_FILE_FORMAT}"')
    secret = base64.b64decode(record["secretKey"])
    if len(secret) != 32:
        raise SecAggError("BAD_KEY", f"{path}: secretKey", f"expected 32 bytes, got {len(secret)}")
    pair = key_pair_from_secret(secret)
    if base64.b64decode(record["publicKey"]) != pair[1]:
        raise SecAggError("BAD_KEY", f"{path}: publicKey", "does not belong to the file's secretKey")
    return pair


def parse_public_key(text, field):
    """32 raw bytes from standard or URL-safe base64; errors name the field."""
    if not isinstance(text, str):
        raise SecAggError("BAD_KEY", field, f"expected a base64 string of 32 bytes, got {type(text).__name__}")
    try:
        key = base64.b64decode(text.strip().replace("-", "+").replace("_", "/"), validate=True)
    except ValueError:
        raise SecAggError("BAD_KEY", field, "expected base64 of 32 bytes (44 characters)") from None
    if len(key) != 32:
        raise SecAggError("BAD_KEY", field, f"expected 32 bytes, got {len(key)}")
    return key


def shared_secret(secret_key, peer_public_key):
    try:
        secret = X25519PrivateKey.from_private_bytes(bytes(secret_key)).exchange(X25519PublicKey.from_public_bytes(bytes(peer_public_key)))
    except ValueError:
        raise SecAggError("BAD_KEY", "publicKey", "X25519 with this public key fails (a low-order point?)") from None
    if secret == bytes(32):
        raise SecAggError("BAD_KEY", "publicKey", "X25519 with this public key gives the all-zero secret (a low-order point)")
    return secret


# ---------- roster and session ----------


class Roster:
    def __init__(self, silos):
        """silos: [(id, public_key bytes)] in any order; sorted by the UTF-8 bytes of the id."""
        self.silos = sorted(silos, key=lambda s: s[0].encode("utf-8"))
        ids = [s[0] for s in self.silos]
        if len(set(ids)) != len(ids) or len({s[1] for s in self.silos}) != len(ids):
            raise SecAggError("BAD_ROSTER", "silos", "silo ids and public keys must be unique")
        h = hashlib.sha256(b"flo-secagg/v1/roster" + _u32(len(self.silos)))
        for silo_id, public_key in self.silos:
            h.update(_str(silo_id) + bytes(public_key))
        self.digest = h.digest()

    def index_of(self, silo_id):
        for i, (sid, _) in enumerate(self.silos):
            if sid == silo_id:
                return i + 1
        raise SecAggError("BAD_ROSTER", "silo", f'"{silo_id}" is not in the roster')


def build_roster(silos):
    return Roster(silos)


def session_id(federation_id, round_number, attempt, threshold, ring_bits, roster):
    return hashlib.sha256(
        b"flo-secagg/v1/session" + _str(federation_id) + struct.pack("<QQ", round_number, attempt) + _u32(threshold) + _u32(ring_bits) + roster.digest
    ).digest()


def _derive(label, shared, session, i, j):
    info = label + _u32(min(i, j)) + _u32(max(i, j))
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=session, info=info).derive(shared)


def pair_secrets(secret_key, roster, session, self_index, peer_index):
    """(mask_seed, share_key) of silo self_index with silo peer_index (1-based roster indexes)."""
    shared = shared_secret(secret_key, roster.silos[peer_index - 1][1])
    return (
        _derive(b"flo-secagg/v1/pairwise-mask", shared, session, self_index, peer_index),
        _derive(b"flo-secagg/v1/share-key", shared, session, self_index, peer_index),
    )


# ---------- Shamir over 2^255 - 19 ----------


def field_to_bytes(v):
    return (v % FIELD_PRIME).to_bytes(32, "little")


def field_from_bytes(b, field="value"):
    if len(b) != 32:
        raise SecAggError("BAD_SHARE", field, f"expected 32 bytes, got {len(b)}")
    v = int.from_bytes(b, "little")
    if v >= FIELD_PRIME:
        raise SecAggError("BAD_SHARE", field, "value is not below the field prime 2^255-19")
    return v


def random_field_element():
    while True:
        b = bytearray(os.urandom(32))
        b[31] &= 0x7F
        v = int.from_bytes(b, "little")
        if v < FIELD_PRIME:
            return v


def split_secret(secret, threshold, count, coefficients=None):
    """[(x, y)] for x = 1..count; coefficients (t-1) only for test vectors."""
    if coefficients is None:
        coefficients = [random_field_element() for _ in range(threshold - 1)]
    poly = [secret] + [c % FIELD_PRIME for c in coefficients]
    shares = []
    for x in range(1, count + 1):
        acc = 0
        for c in reversed(poly):
            acc = (acc * x + c) % FIELD_PRIME
        shares.append((x, acc))
    return shares


def interpolate(shares, at=0):
    acc = 0
    for xi, yi in shares:
        num, den = 1, 1
        for xj, _ in shares:
            if xj != xi:
                num = num * (at - xj) % FIELD_PRIME
                den = den * (xi - xj) % FIELD_PRIME
        acc = (acc + yi * num * pow(den, FIELD_PRIME - 2, FIELD_PRIME)) % FIELD_PRIME
    return acc


def reconstruct_secret(shares, threshold, field="shares"):
    if len(shares) < threshold:
        raise SecAggError("UNRECOVERABLE", field, f"{len(shares)} shares, need at least t = {threshold}")
    base = list(shares[:threshold])
    for x, y in shares[threshold:]:
        if interpolate(base, x) != y % FIELD_PRIME:
            raise SecAggError("BAD_SHARE", field, f"share at x = {x} does not lie on the polynomial of the first t shares")
    return interpolate(base, 0)


# ---------- share encryption ----------


def parse_shares_file(parsed, session, sender, roster_size, file):
    """Validates a shares file like lib/secagg/shares.ts: format, session, sender, one share per silo."""
    if not isinstance(parsed, dict) or parsed.get("format") != SHARES_FORMAT:
        raise SecAggError("BAD_UPLOAD", f"{file}: format", f'expected "{SHARES_FORMAT}"')
    if parsed.get("session") != session.hex():
        raise SecAggError("BAD_UPLOAD", f"{file}: session", f"expected {session.hex()}, got {parsed.get('session')}")
    if not isinstance(sender, int) or not 1 <= sender <= roster_size:
        raise SecAggError("BAD_UPLOAD", f"{file}: sender", f"expected a roster index in [1, {roster_size}], got {sender}")
    shares = parsed.get("shares")
    if not isinstance(shares, list) or len(shares) != roster_size:
        raise SecAggError("BAD_UPLOAD", f"{file}: shares", f"expected {roster_size} shares (one per roster silo)")
    for i, share in enumerate(shares):
        if not isinstance(share, dict) or share.get("recipient") != i + 1:
            raise SecAggError("BAD_UPLOAD", f"{file}: shares[{i}].recipient", f"expected {i + 1} (shares in recipient order)")
        if not isinstance(share.get("ciphertext"), str) or len(base64.b64decode(share["ciphertext"])) != 60:
            raise SecAggError("BAD_UPLOAD", f"{file}: shares[{i}].ciphertext", "expected base64 of 60 bytes")
    return parsed


def _share_aad(session, sender, recipient):
    return b"flo-secagg/v1/share" + bytes(session) + _u32(sender) + _u32(recipient)


def encrypt_share(share_key, session, sender, recipient, value, nonce=None):
    nonce = os.urandom(12) if nonce is None else bytes(nonce)
    return nonce + AESGCM(share_key).encrypt(nonce, field_to_bytes(value), _share_aad(session, sender, recipient))


def decrypt_share(share_key, session, sender, recipient, ciphertext, field="share"):
    if len(ciphertext) != 60:
        raise SecAggError("BAD_SHARE", field, f"expected 60 bytes, got {len(ciphertext)}")
    try:
        plain = AESGCM(share_key).decrypt(ciphertext[:12], ciphertext[12:], _share_aad(session, sender, recipient))
    except InvalidTag:
        raise SecAggError("BAD_SHARE", field, f"share from silo {sender} to silo {recipient} fails authentication") from None
    return field_from_bytes(plain, field)


# ---------- PRG and ring ----------


def _ring_dtype(ring_bits):
    return np.dtype("<u4") if ring_bits == 32 else np.dtype("<u8")


class MaskStream:
    """AES-256-CTR keystream (key = seed, counter block = byte offset / 16, big-endian) as k-bit LE words."""

    def __init__(self, seed, ring_bits, start_element=0):
        self.dtype = _ring_dtype(ring_bits)
        start_byte = start_element * self.dtype.itemsize
        counter = (start_byte // 16).to_bytes(16, "big")
        self.encryptor = Cipher(algorithms.AES(bytes(seed)), modes.CTR(counter)).encryptor()
        if start_byte % 16:
            self.encryptor.update(bytes(start_byte % 16))

    def next(self, elements):
        return np.frombuffer(self.encryptor.update(bytes(elements * self.dtype.itemsize)), dtype=self.dtype)


def mask_stream(seed, ring_bits, start_element, elements):
    return MaskStream(seed, ring_bits, start_element).next(elements)


# ---------- quantization ----------


class QuantizationPlan:
    def __init__(self, bits, clip_norm, max_examples):
        if not (isinstance(bits, int) and 2 <= bits <= 32):
            raise SecAggError("BAD_PARAMETERS", "bits", f"expected an integer in [2, 32], got {bits}")
        if not (clip_norm > 0 and math.isfinite(clip_norm)):
            raise SecAggError("BAD_PARAMETERS", "clipping.norm", f"expected a finite number > 0, got {clip_norm}")
        total = sum(max_examples)
        headroom = 0
        while 2**headroom < total:
            headroom += 1
        if bits + headroom > MAX_EXACT_BITS:
            raise SecAggError("BAD_PARAMETERS", "bits", f"b + ceil(log2(sum of maxExamples)) = {bits} + {headroom} exceeds {MAX_EXACT_BITS}")
        self.bits = bits
        self.clip_norm = clip_norm
        self.total_max_examples = total
        self.headroom_bits = headroom
        self.ring_bits = 32 if bits + headroom + 1 <= 32 else 64
        self.levels = 2 ** (bits - 1) - 1
        self.scale = self.levels / clip_norm


def plan_quantization(bits, clip_norm, max_examples):
    return QuantizationPlan(bits, clip_norm, max_examples)


def quantize(values, factor, limit, rounding, ring_bits):
    """Ring elements of round(values * factor) clamped to +-limit ("nearest": floor(v + 0.5))."""
    v = values * factor
    if not np.all(np.isfinite(v)):
        raise SecAggError("BAD_INPUT", "update", "a coordinate is not finite")
    if rounding == "nearest":
        q = np.floor(v + 0.5)
    else:
        low = np.floor(v)
        u = np.frombuffer(os.urandom(4 * len(v)), dtype="<u4") / 4294967296.0
        q = low + (u < v - low)
    q = np.clip(q, -limit, limit).astype(np.int64)
    return q.astype(_ring_dtype(ring_bits))


# ---------- silo round ----------


class SiloRoundSetup:
    def __init__(self, self_index, self_seed, pairwise, shares_file):
        self.self_index = self_index
        self.self_seed = self_seed
        self.pairwise = pairwise  # [(peer, mask_seed)]
        self.shares_file = shares_file

    def streams(self):
        """(seed, sign) of every mask this silo adds: self, +s_ij for j > i, -s_ij for j < i."""
        return [(self.self_seed, 1)] + [(seed, 1 if peer > self.self_index else -1) for peer, seed in self.pairwise]


def prepare_silo_round(secret_key, roster, session, self_index, threshold, self_secret=None, coefficients=None, nonces=None):
    count = len(roster.silos)
    self_secret = random_field_element() if self_secret is None else self_secret
    shares = split_secret(self_secret, threshold, count, coefficients)
    pairwise, encrypted = [], []
    for peer in range(1, count + 1):
        mask_seed, share_key = pair_secrets(secret_key, roster, session, self_index, peer)
        if peer != self_index:
            pairwise.append((peer, mask_seed))
        ct = encrypt_share(share_key, session, self_index, peer, shares[peer - 1][1], None if nonces is None else nonces[peer - 1])
        encrypted.append({"recipient": peer, "ciphertext": base64.b64encode(ct).decode("ascii")})
    shares_file = {"format": SHARES_FORMAT, "session": session.hex(), "sender": self_index, "shares": encrypted}
    return SiloRoundSetup(self_index, field_to_bytes(self_secret), pairwise, shares_file)


def _apply(words, streams, ring_bits, start_element):
    for seed, sign in streams:
        mask = mask_stream(seed, ring_bits, start_element, len(words))
        words = words + mask if sign == 1 else words - mask
    return words


def write_masked_update(trained_path, global_path, out_path, setup, session, plan, num_examples, max_examples, rounding="stochastic", chunk_elements=1 << 16):
    """Clips, weights, quantizes and masks (trained - global); writes the masked safetensors file."""
    trained = SafetensorsFile(trained_path)
    glob = SafetensorsFile(global_path)
    names = sorted((n for n, e in glob.tensors.items() if e["dtype"] in FLOAT_DTYPES), key=lambda n: n.encode("utf-8"))
    for name in names:
        if name not in trained.tensors or trained.tensors[name]["shape"] != glob.tensors[name]["shape"]:
            raise SecAggError("BAD_INPUT", f'{trained_path}: tensor "{name}"', "missing or shaped unlike the global model's")

    def chunks(name):
        n = glob.numel(name)
        for start in range(0, n, chunk_elements):
            count = min(chunk_elements, n - start)
            yield start, trained.read_floats(name, start, count) - glob.read_floats(name, start, count)

    # Sequential float64 sum of squares in stream order: the same rounding as the TypeScript side.
    total = np.float64(0.0)
    for name in names:
        for _, diff in chunks(name):
            total = np.cumsum(np.concatenate(([total], diff * diff)))[-1]
    norm = math.sqrt(float(total))
    if not math.isfinite(norm):
        raise SecAggError("BAD_INPUT", trained_path, "the update (trained - global) has a non-finite coordinate")
    clip = plan.clip_norm / norm if norm > plan.clip_norm else 1.0
    if not (isinstance(num_examples, int) and num_examples >= 0):
        raise SecAggError("BAD_INPUT", "num_examples", f"expected a non-negative integer, got {num_examples}")
    weight = min(num_examples, max_examples)
    factor = clip * weight * plan.scale
    limit = weight * plan.levels
    ring_bits = plan.ring_bits
    dtype = "U32" if ring_bits == 32 else "U64"
    offsets, offset = {}, 1
    for name in names:
        offsets[name] = offset
        offset += glob.numel(name)
    metadata = {"format": MASKED_FORMAT, "session": session.hex(), "sender": str(setup.self_index), "ringBits": str(ring_bits)}
    specs = [(WEIGHT_TENSOR, dtype, [1])] + [(n, dtype, glob.tensors[n]["shape"]) for n in names]
    prefix, layout = plan_layout(specs, metadata)
    streams = setup.streams()
    tmp = out_path + ".partial"
    with open(tmp, "wb") as out:
        out.write(prefix)
        for name, _, _ in layout:
            if name == WEIGHT_TENSOR:
                words = np.array([weight], dtype=np.int64).astype(_ring_dtype(ring_bits))
                out.write(_apply(words, streams, ring_bits, 0).tobytes())
                continue
            # One keystream per mask for the whole tensor, read chunk by chunk.
            tensor_streams = [(MaskStream(seed, ring_bits, offsets[name]), sign) for seed, sign in streams]
            for _, diff in chunks(name):
                words = quantize(diff, factor, limit, rounding, ring_bits)
                for stream, sign in tensor_streams:
                    mask = stream.next(len(words))
                    words = words + mask if sign == 1 else words - mask
                out.write(words.tobytes())
    os.replace(tmp, out_path)


# ---------- reveal ----------


def _check_record(record, body):
    """Refuses when a different split is on record for the session (the same one again is answered)."""
    try:
        with open(record, "r", encoding="utf-8") as f:
            previous = f.read()
    except FileNotFoundError:
        return
    if previous != body:
        raise SecAggError("SECOND_ROSTER", "survivors", f"this silo already revealed for this session with split {previous}; refusing {body}")


def reveal_for_unmask(secret_key, roster, session, threshold, self_index, survivors, dropped, shares_files, record_dir):
    """Pairwise seeds with dropped silos and shares of survivors' self seeds; refuses a second split."""
    survivors, dropped = sorted(survivors), sorted(dropped)
    everyone = survivors + dropped
    if sorted(everyone) != list(range(1, len(roster.silos) + 1)):
        raise SecAggError("BAD_ROSTER", "survivors", "survivors and dropped must partition the roster")
    if len(survivors) < threshold:
        raise SecAggError("TOO_FEW_SURVIVORS", "survivors", f"{len(survivors)} survivors, the threshold is t = {threshold}: nothing may be unmasked")
    if self_index not in survivors:
        raise SecAggError("BAD_ROSTER", "survivors", f"silo {self_index} is asked to reveal but is not a survivor")
    record = os.path.join(record_dir, session.hex() + ".json")
    body = json.dumps({"survivors": survivors, "dropped": dropped}, separators=(",", ":"))
    _check_record(record, body)
    self_shares = []
    for owner in survivors:
        if owner not in shares_files:
            raise SecAggError("UNRECOVERABLE", f"shares[{owner}]", f"no shares file from survivor {owner}")
        _, share_key = pair_secrets(secret_key, roster, session, self_index, owner)
        ct = base64.b64decode(shares_files[owner]["shares"][self_index - 1]["ciphertext"])
        y = decrypt_share(share_key, session, owner, self_index, ct, f"shares[{owner}].shares[{self_index - 1}]")
        self_shares.append({"owner": owner, "y": field_to_bytes(y).hex()})
    pairwise = [{"dropped": d, "seed": pair_secrets(secret_key, roster, session, self_index, d)[0].hex()} for d in dropped]
    os.makedirs(record_dir, mode=0o700, exist_ok=True)
    try:
        fd = os.open(record, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
    except FileExistsError:
        _check_record(record, body)
    return {"session": session.hex(), "revealer": self_index, "pairwiseSeeds": pairwise, "selfShares": self_shares}
