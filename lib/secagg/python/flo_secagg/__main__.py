"""Silo-side entry point, run by flo around the user's training command on Azure ML:

  python -m flo_secagg mask --session session.json --key silo.key --trained model.safetensors \\
      --global global.safetensors --num-examples N --out DIR      -> DIR/masked.safetensors, DIR/shares.json
  python -m flo_secagg mask-run --session session.json --key silo.key --global global.safetensors \\
      --output DIR [--publish-metrics] -- '<user command>'
      runs the user's command through the shell with FLO_SECAGG_PLAIN_OUTPUT set to a private
      temporary folder (flo rewrites the command's ${{outputs.model_update}} to it), then masks its
      model.safetensors + metrics.json into DIR (masked.safetensors, shares.json and, when asked,
      published-metrics.json). The plain output is deleted in every case and never enters DIR.
  python -m flo_secagg reveal --session session.json --key silo.key --split split.json \\
      (--shares shares-1.json ... | --shares-dir DIR) --record-dir DIR --out reveal.json

session.json: {"federationId", "round", "attempt", "threshold",
               "quantization": {"bits", "clipNorm", "rounding": "stochastic"|"nearest"},
               "silos": [{"id", "publicKey", "maxExamples"}...], "self": "<silo id>"}
split.json:   {"survivors": [indexes], "dropped": [indexes]}
Nothing unmasked is printed or written besides the outputs named above.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

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


PLAIN_OUTPUT_VARIABLE = "FLO_SECAGG_PLAIN_OUTPUT"


def _plain_num_examples(metrics_path):
    try:
        metrics = _load_json(metrics_path)
    except (OSError, ValueError):
        # The parser's message may quote the file (a count): it never goes into the job's error.
        raise p.SecAggError("BAD_INPUT", metrics_path, "expected a readable JSON file written by the trainer")
    n = metrics.get("num_examples") if isinstance(metrics, dict) else None
    if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
        raise p.SecAggError("BAD_INPUT", f"{metrics_path}: num_examples", "expected an integer > 0")
    return metrics, n


def _finite_metrics(value):
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")}


def mask_run(args, loaded, secret_key):
    """Runs the user's command with a private plain output folder, then masks its output into args.output."""
    roster, session, plan, self_index, threshold, max_examples, rounding = loaded
    words = args.user_command[1:] if args.user_command[:1] == ["--"] else args.user_command
    command = " ".join(words)
    if not command.strip():
        raise p.SecAggError("BAD_PARAMETERS", "command", "expected the user's command after --")
    plain = tempfile.mkdtemp(prefix="flo-secagg-plain-")
    masked = os.path.join(args.output, "masked.safetensors")
    try:
        code = subprocess.call(command, shell=True, env={**os.environ, PLAIN_OUTPUT_VARIABLE: plain})
        if code != 0:
            print(f"flo_secagg mask-run: the command exited with code {code}; nothing was masked or written", file=sys.stderr)
            return code
        metrics, num_examples = _plain_num_examples(os.path.join(plain, "metrics.json"))
        os.makedirs(args.output, exist_ok=True)
        setup = p.prepare_silo_round(secret_key, roster, session, self_index, threshold)
        try:
            p.write_masked_update(os.path.join(plain, "model.safetensors"), args.global_model, masked, setup, session, plan, num_examples, max_examples, rounding)
            with open(os.path.join(args.output, "shares.json"), "w", encoding="utf-8") as f:
                json.dump(setup.shares_file, f)
            if args.publish_metrics:
                published = {"metrics": _finite_metrics(metrics.get("metrics")), "global_metrics": _finite_metrics(metrics.get("global_metrics"))}
                with open(os.path.join(args.output, "published-metrics.json"), "w", encoding="utf-8") as f:
                    json.dump(published, f)
        except BaseException:
            for name in ("masked.safetensors", "masked.safetensors.partial", "shares.json", "published-metrics.json"):
                try:
                    os.remove(os.path.join(args.output, name))
                except FileNotFoundError:
                    pass
            raise
        return 0
    finally:
        shutil.rmtree(plain, ignore_errors=True)


def _shares_in(folder):
    return sorted(os.path.join(folder, name) for name in os.listdir(folder) if re.fullmatch(r"shares-\d+\.json", name))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m flo_secagg")
    sub = parser.add_subparsers(dest="command", required=True)
    mask = sub.add_parser("mask", help="clip, weight, quantize and mask a trained model's update")
    mask_run_parser = sub.add_parser("mask-run", help="run the user's training command, then mask its output (the plain output stays private)")
    reveal = sub.add_parser("reveal", help="reveal seeds and shares for the orchestrator's survivor/dropped split")
    for cmd in (mask, mask_run_parser, reveal):
        cmd.add_argument("--session", required=True)
        cmd.add_argument("--key", required=True)
    mask.add_argument("--trained", required=True)
    mask.add_argument("--global", dest="global_model", required=True)
    mask.add_argument("--num-examples", type=int, required=True)
    mask.add_argument("--out", required=True)
    mask_run_parser.add_argument("--global", dest="global_model", required=True)
    mask_run_parser.add_argument("--output", required=True)
    mask_run_parser.add_argument("--publish-metrics", action="store_true")
    mask_run_parser.add_argument("user_command", nargs=argparse.REMAINDER, help="-- then the user's command (one shell-quoted argument or several)")
    reveal.add_argument("--split", required=True)
    shares = reveal.add_mutually_exclusive_group(required=True)
    shares.add_argument("--shares", nargs="+")
    shares.add_argument("--shares-dir")
    reveal.add_argument("--record-dir", required=True)
    reveal.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    try:
        roster, session, plan, self_index, threshold, max_examples, rounding = load_session(args.session)
        secret_key, public_key = p.read_secret_key_file(args.key)
        if roster.silos[self_index - 1][1] != public_key:
            raise p.SecAggError("BAD_KEY", args.key, "this key file's public key is not the roster's key of this silo")
        if args.command == "mask-run":
            return mask_run(args, (roster, session, plan, self_index, threshold, max_examples, rounding), secret_key)
        if args.command == "mask":
            os.makedirs(args.out, exist_ok=True)
            setup = p.prepare_silo_round(secret_key, roster, session, self_index, threshold)
            p.write_masked_update(args.trained, args.global_model, os.path.join(args.out, "masked.safetensors"), setup, session, plan, args.num_examples, max_examples, rounding)
            with open(os.path.join(args.out, "shares.json"), "w", encoding="utf-8") as f:
                json.dump(setup.shares_file, f)
        else:
            split = _load_json(args.split)
            files = {}
            for path in args.shares if args.shares is not None else _shares_in(args.shares_dir):
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
