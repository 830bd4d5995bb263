"""Deterministic seeds: one per (run seed, purpose, step, problem, sample, ...), so a run,
a resumed run and a rerun draw the same numbers wherever they are computed."""

from __future__ import annotations

import hashlib


def row_seed(*parts: object) -> int:
    """A 63-bit seed from any tuple (e.g. (run seed, 'train', step, problem id, sample))."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
