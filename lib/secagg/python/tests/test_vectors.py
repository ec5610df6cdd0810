"""Checks flo_secagg against the shared vectors in test/fixtures/secagg-vectors.json (also checked by
test/secagg-vectors.test.ts), plus the properties the protocol relies on."""

import base64
import json
import os
import tempfile
import unittest

import numpy as np

from flo_secagg import protocol as p

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "test", "fixtures", "secagg-vectors.json")


def load():
    with open(FIXTURE, "r", encoding="utf-8") as f:
        return json.load(f)


def roster_of(v):
    return p.build_roster([(s["id"], base64.b64decode(s["publicKey"])) for s in v["silos"]])


class VectorTest(unittest.TestCase):
    def each(self):
        # Both rings ("ring32", "ring64"); an assertion message names the differing values.
        return list(load().values())

    def test_keys_roster_session(self):
        for v in self.each():
            for s in v["silos"]:
                self.assertEqual(base64.b64encode(p.key_pair_from_secret(bytes.fromhex(s["secretKey"]))[1]).decode(), s["publicKey"])
            roster = roster_of(v)
            self.assertEqual([sid for sid, _ in roster.silos], v["roster"])
            self.assertEqual(roster.digest.hex(), v["session"]["rosterDigest"])
            sess = v["session"]
            sid = p.session_id(sess["federationId"], sess["round"], sess["attempt"], sess["threshold"], sess["ringBits"], roster)
            self.assertEqual(sid.hex(), sess["id"])

    def test_pairwise_seeds_and_prg(self):
        for v in self.each():
            roster = roster_of(v)
            session = bytes.fromhex(v["session"]["id"])
            for pair in v["pairwise"]:
                sk_i = bytes.fromhex(v["silos"][pair["i"] - 1]["secretKey"])
                sk_j = bytes.fromhex(v["silos"][pair["j"] - 1]["secretKey"])
                self.assertEqual(p.shared_secret(sk_i, roster.silos[pair["j"] - 1][1]).hex(), pair["sharedSecret"])
                for a, b, sk in ((pair["i"], pair["j"], sk_i), (pair["j"], pair["i"], sk_j)):
                    seed, key = p.pair_secrets(sk, roster, session, a, b)
                    self.assertEqual((seed.hex(), key.hex()), (pair["maskSeed"], pair["shareKey"]))
            ring = v["session"]["ringBits"]
            seed = bytes.fromhex(v["prg"]["seed"])
            self.assertEqual(p.mask_stream(seed, ring, 0, 8).tobytes().hex(), v["prg"]["first8"])
            self.assertEqual(p.mask_stream(seed, ring, 5, 3).tobytes().hex(), v["prg"]["from5"])

    def test_shares_and_shares_files(self):
        for v in self.each():
            roster = roster_of(v)
            session = bytes.fromhex(v["session"]["id"])
            t = v["session"]["threshold"]
            for i, s in enumerate(v["silos"], start=1):
                secret = int(s["selfSecret"], 16)
                coefficients = [int(c, 16) for c in s["coefficients"]]
                shares = p.split_secret(secret, t, len(v["silos"]), coefficients)
                self.assertEqual([{"x": x, "y": format(y, "x")} for x, y in shares], s["shares"])
                self.assertEqual(p.reconstruct_secret([shares[2], shares[0]], t), secret)
                setup = p.prepare_silo_round(bytes.fromhex(s["secretKey"]), roster, session, i, t, secret, coefficients, [bytes.fromhex(n) for n in s["nonces"]])
                self.assertEqual(setup.shares_file, s["sharesFile"])

    def test_masked_files_are_byte_identical(self):
        for v in self.each():
            roster = roster_of(v)
            session = bytes.fromhex(v["session"]["id"])
            q = v["quantization"]
            plan = p.plan_quantization(q["bits"], q["clipNorm"], [s["maxExamples"] for s in v["silos"]])
            self.assertEqual((plan.ring_bits, plan.levels, plan.headroom_bits, plan.scale), (q["ringBits"], q["levels"], q["headroomBits"], q["scale"]))
            with tempfile.TemporaryDirectory() as d:
                glob = os.path.join(d, "global.safetensors")
                with open(glob, "wb") as f:
                    f.write(bytes.fromhex(v["global"]))
                for i, s in enumerate(v["silos"], start=1):
                    trained = os.path.join(d, f"trained-{i}.safetensors")
                    with open(trained, "wb") as f:
                        f.write(bytes.fromhex(s["trained"]))
                    setup = p.prepare_silo_round(bytes.fromhex(s["secretKey"]), roster, session, i, v["session"]["threshold"], int(s["selfSecret"], 16), [int(c, 16) for c in s["coefficients"]], [bytes.fromhex(n) for n in s["nonces"]])
                    out = os.path.join(d, f"masked-{i}.safetensors")
                    p.write_masked_update(trained, glob, out, setup, session, plan, s["numExamples"], s["maxExamples"], "nearest", chunk_elements=2)
                    with open(out, "rb") as f:
                        self.assertEqual(f.read().hex(), s["masked"])

    def test_reveals_and_unmasking(self):
        for v in self.each():
            roster = roster_of(v)
            session = bytes.fromhex(v["session"]["id"])
            t = v["session"]["threshold"]
            split = v["split"]
            files = {s["sharesFile"]["sender"]: s["sharesFile"] for s in v["silos"]}
            with tempfile.TemporaryDirectory() as d:
                reveals = [
                    p.reveal_for_unmask(bytes.fromhex(v["silos"][i - 1]["secretKey"]), roster, session, t, i, split["survivors"], split["dropped"], files, os.path.join(d, str(i)))
                    for i in split["survivors"]
                ]
                self.assertEqual(reveals, v["reveals"])
                # A second split for the same session is refused by a silo that already answered.
                with self.assertRaises(p.SecAggError) as caught:
                    p.reveal_for_unmask(bytes.fromhex(v["silos"][0]["secretKey"]), roster, session, t, 1, [1, 2, 3], [], files, os.path.join(d, "1"))
                self.assertEqual(caught.exception.code, "SECOND_ROSTER")
            # Unmask the weight element from the reveals alone: it must give the stored weight sum.
            ring = v["session"]["ringBits"]
            dtype = np.dtype("<u4") if ring == 32 else np.dtype("<u8")
            total = np.zeros(1, dtype=dtype)
            for i in split["survivors"]:
                data = bytes.fromhex(v["silos"][i - 1]["masked"])
                header_len = int.from_bytes(data[:8], "little")
                header = json.loads(data[8 : 8 + header_len])
                begin = 8 + header_len + header["flo.secagg.weight"]["data_offsets"][0]
                total = total + np.frombuffer(data[begin : begin + dtype.itemsize], dtype=dtype)
                shares = [(r["revealer"], int.from_bytes(bytes.fromhex(next(s["y"] for s in r["selfShares"] if s["owner"] == i)), "little")) for r in reveals]
                total = total - p.mask_stream(p.field_to_bytes(p.reconstruct_secret(shares, t)), ring, 0, 1)
                for r in reveals:
                    if r["revealer"] == i:
                        for seed in r["pairwiseSeeds"]:
                            mask = p.mask_stream(bytes.fromhex(seed["seed"]), ring, 0, 1)
                            total = total - mask if seed["dropped"] > i else total + mask
            self.assertEqual(int(total[0]), v["unmasked"]["weightSum"])


class PropertyTest(unittest.TestCase):
    def test_t_minus_1_shares_fit_any_secret(self):
        secret = p.random_field_element()
        shares = p.split_secret(secret, 3, 5)
        two = [shares[0], shares[4]]
        for other in (0, 1, p.FIELD_PRIME - 1):
            points = [(0, other)] + two
            f1, fm1 = p.interpolate(points, 1), p.interpolate(points, p.FIELD_PRIME - 1)
            inv2 = (p.FIELD_PRIME + 1) // 2
            c2 = (f1 + fm1 - 2 * other) * inv2 % p.FIELD_PRIME
            c1 = (f1 - fm1) * inv2 % p.FIELD_PRIME
            resplit = p.split_secret(other, 3, 5, [c1, c2])
            self.assertEqual([resplit[0], resplit[4]], two)
        with self.assertRaises(p.SecAggError):
            p.reconstruct_secret(two, 3)

    def test_share_authentication(self):
        key, session = bytes(range(32)), bytes(32)
        ct = p.encrypt_share(key, session, 1, 2, 12345)
        self.assertEqual(p.decrypt_share(key, session, 1, 2, ct), 12345)
        with self.assertRaises(p.SecAggError) as caught:
            p.decrypt_share(key, session, 2, 1, ct)
        self.assertEqual(caught.exception.code, "BAD_SHARE")


if __name__ == "__main__":
    unittest.main()
