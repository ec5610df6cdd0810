"""Silo side of flo's secure aggregation, byte-compatible with lib/secagg (TypeScript).

Needs only numpy and `cryptography`. docs/secure-aggregation.md defines every byte string used here.
"""

from .protocol import (  # noqa: F401
    FIELD_PRIME,
    SecAggError,
    build_roster,
    decrypt_share,
    encrypt_share,
    field_from_bytes,
    field_to_bytes,
    interpolate,
    key_pair_from_secret,
    mask_stream,
    pair_secrets,
    plan_quantization,
    prepare_silo_round,
    read_secret_key_file,
    reconstruct_secret,
    reveal_for_unmask,
    session_id,
    shared_secret,
    split_secret,
    write_masked_update,
)
