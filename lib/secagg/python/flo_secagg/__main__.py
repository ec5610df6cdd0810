"""Silo-side entry point, run by flo around the user's training command on Azure ML:

  python -m flo_secagg mask --session session.json --key silo.key --trained model.safetensors \\
      --global global.safetensors --num-examples N --out DIR      -> DIR/masked.safetensors, DIR/shares.json
  python -m flo_secagg reveal --session session.json --key silo.key --split split.json \\
      --shares shares-1.json ... --record-dir DIR --out reveal.json

session.json: {"federationId", "round", "attempt", "threshold",
               "quantization": {"bits", "clipNorm", "rounding": "stochastic"|"nearest"},
               "silos": [{"id", "publicKey", "maxExamples"}...], "self": "<silo id>"}
split.json:   {"survivors": [indexes], "dropped": [indexes]}
Nothing unmasked is printed or written besides the outputs named above.
"""

import argparse
import json
import os
import sys

from . import protocol as p


def _load_json(path):
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def load_session(path):
    """(roster, session, plan, self_index, threshold, self_max_examples, rounding) from session.json."""
    d = _load_json(path)
    for field in ("federationId", "round", "attempt", "threshold", "quantization", "silos", "self"):
        if field not in d:
            raise p.SecAggError("BAD_PARAMETERS", f"{path}: {field}", "missing")
    silos = d["silos"]
    keys = []
    for i, s in enumerate(silos):
        key = p.parse_public_key(s.get("publicKey"), f"{path}: silos[{i}].publicKey")
        keys.append((s["id"], key))
    roster = p.build_roster(keys)
    by_id = {s["id"]: s for s in silos}
    max_examples = [by_id[sid]["maxExamples"] for sid, _ in roster.silos]
    q = d["quantization"]
    plan = p.plan_quantization(q["bits"], q["clipNorm"], max_examples)
    threshold = d["threshold"]
    session = p.session_id(d["federationId"], d["round"], d["attempt"], threshold, plan.ring_bits, roster)
    self_index = roster.index_of(d["self"])
    return roster, session, plan, self_index, threshold, max_examples[self_index - 1], q.get("rounding", "stochastic")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m flo_secagg")
    sub = parser.add_subparsers(dest="command", required=True)
    mask = sub.add_parser("mask", help="clip, weight, quantize and mask a trained model's update")
    reveal = sub.add_parser("reveal", help="reveal seeds and shares for the orchestrator's survivor/dropped split")
    for cmd in (mask, reveal):
        cmd.add_argument("--session", required=True)
        cmd.add_argument("--key", required=True)
    mask.add_argument("--trained", required=True)
    mask.add_argument("--global", dest="global_model", required=True)
    mask.add_argument("--num-examples", type=int, required=True)
    mask.add_argument("--out", required=True)
    reveal.add_argument("--split", required=True)
    reveal.add_argument("--shares", nargs="+", required=True)
    reveal.add_argument("--record-dir", required=True)
    reveal.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        roster, session, plan, self_index, threshold, max_examples, rounding = load_session(args.session)
        secret_key, public_key = p.read_secret_key_file(args.key)
        if roster.silos[self_index - 1][1] != public_key:
            raise p.SecAggError("BAD_KEY", args.key, "this key file's public key is not the roster's key of this silo")
        if args.command == "mask":
            os.makedirs(args.out, exist_ok=True)
            setup = p.prepare_silo_round(secret_key, roster, session, self_index, threshold)
            p.write_masked_update(args.trained, args.global_model, os.path.join(args.out, "masked.safetensors"), setup, session, plan, args.num_examples, max_examples, rounding)
            with open(os.path.join(args.out, "shares.json"), "w", encoding="utf-8") as f:
                json.dump(setup.shares_file, f)
        else:
            split = _load_json(args.split)
            files = {}
            for path in args.shares:
                shares_file = _load_json(path)
                sender = shares_file.get("sender")
                files[sender] = p.parse_shares_file(shares_file, session, sender, len(roster.silos), path)
            result = p.reveal_for_unmask(secret_key, roster, session, threshold, self_index, split["survivors"], split["dropped"], files, args.record_dir)
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump(result, f)
    except p.SecAggError as err:
        print(f"flo_secagg {args.command}: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
