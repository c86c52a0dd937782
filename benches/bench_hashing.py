"""Consistent hashing: dmsc against uhashring (pure Python), in one run.

* "ketama get (100 nodes)": ``KetamaRing.get`` against uhashring's ketama-compatible
  ring (``hash_fn="ketama"``): the same algorithm and answers.
* "consistent hash get, ring_hash|maglev (100 hosts)": ``RingHash.get`` and ``Maglev.get``
  (xxHash64 + lookup, Envoy's balancers) against uhashring's default ring: the same job,
  mapping a key to one of 100 hosts with little movement when hosts change.
* "... get_many (per key, 1000 keys)": the batch forms, reported per key, against a list
  comprehension over uhashring's ``get_node``.
* "maglev pick_hash_many (per hash, 100k hashes)": numpy uint64 hashes to host indices;
  no Python peer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from uhashring import HashRing  # type: ignore[import-untyped]

from dmsc_fast import KetamaRing, Maglev, RingHash

Measure = Callable[..., Any]

NODES = [f"10.0.0.{i}:11211" for i in range(100)]
KEY = "user:1234567"
BATCH = [f"user:{i}" for i in range(1000)]


def dmsc_ring(kind: str) -> Any:
    if kind == "ketama":
        return KetamaRing(dict.fromkeys(NODES, 1))
    if kind == "ring_hash":
        return RingHash(NODES)
    return Maglev(NODES)


def uhashring_ring(kind: str) -> Any:
    if kind == "ketama":
        return HashRing(NODES, hash_fn="ketama")
    return HashRing(NODES)


def operation(kind: str, what: str) -> str:
    if kind == "ketama":
        return f"ketama {what} (100 nodes)"
    return f"consistent hash {what}, {kind} (100 hosts)"


@pytest.mark.parametrize("impl", ["dmsc", "uhashring"])
@pytest.mark.parametrize("kind", ["ketama", "ring_hash", "maglev"])
def test_get(measure: Measure, kind: str, impl: str) -> None:
    if impl == "dmsc":
        ring = dmsc_ring(kind)
        node = measure(operation(kind, "get"), impl, ring.get, KEY)
    else:
        ring = uhashring_ring(kind)
        node = measure(operation(kind, "get"), impl, ring.get_node, KEY)
    assert node in NODES


@pytest.mark.parametrize("impl", ["dmsc", "uhashring"])
@pytest.mark.parametrize("kind", ["ketama", "ring_hash", "maglev"])
def test_get_many_per_key(measure: Measure, kind: str, impl: str) -> None:
    op = operation(kind, "get_many (per key, 1000 keys)")
    if impl == "dmsc":
        nodes = measure(op, impl, dmsc_ring(kind).get_many, BATCH, items=len(BATCH))
    else:
        get_node = uhashring_ring(kind).get_node
        nodes = measure(op, impl, lambda keys: [get_node(k) for k in keys], BATCH, items=len(BATCH))
    assert len(nodes) == len(BATCH)


def test_maglev_pick_hash_many_per_hash(measure: Measure) -> None:
    maglev = Maglev(NODES)
    hashes = np.random.default_rng(1).integers(0, 2**64 - 1, size=100_000, dtype=np.uint64)
    picks = measure(
        "maglev pick_hash_many (per hash, 100k hashes)",
        "dmsc",
        maglev.pick_hash_many,
        hashes,
        items=len(hashes),
    )
    assert len(picks) == len(hashes)
