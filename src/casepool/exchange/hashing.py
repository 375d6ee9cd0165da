"""Keyed hashes of many short messages at once: HMAC-SHA256 and keyed BLAKE2b, over both cores.

The per-message work is OpenSSL's or CPython's own C code on a hash state prepared once per
secret; what costs is the Python around it, so each batch returns one `bytes` of concatenated
digests (no per-row objects) and big inputs are split over worker processes. The digests are
exactly those of `hmac.digest` and `hashlib.blake2b(key=...)`; only the scheduling differs.
The secret goes to the workers through a pipe between processes of the same user, as it would
sit in this process's memory anyway.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

# Below this many messages starting worker processes costs more than it saves.
PARALLEL_MIN_MESSAGES = 300_000
HMAC_SHA256_BYTES = 32


def _hmac_sha256_batch(secret: bytes, messages: Sequence[bytes]) -> bytes:
    """HMAC-SHA256 (RFC 2104) of each message, the digests concatenated in order."""
    block = (hashlib.sha256(secret).digest() if len(secret) > 64 else secret).ljust(64, b"\0")
    inner_copy = hashlib.sha256(bytes(b ^ 0x36 for b in block)).copy
    outer_copy = hashlib.sha256(bytes(b ^ 0x5C for b in block)).copy

    def keyed(message: bytes) -> bytes:
        state = inner_copy()
        state.update(message)
        result = outer_copy()
        result.update(state.digest())
        return result.digest()

    return b"".join(map(keyed, messages))


def _blake2b_batch(secret: bytes, prefix: bytes, size: int, messages: Sequence[bytes]) -> bytes:
    """BLAKE2b keyed with `secret` of `prefix + message`, `size` bytes each, concatenated."""
    base = hashlib.blake2b(key=secret, digest_size=size)
    base.update(prefix)
    copy = base.copy

    def keyed(message: bytes) -> bytes:
        state = copy()
        state.update(message)
        return state.digest()

    return b"".join(map(keyed, messages))


def _workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


_BATCHES: dict[str, Callable[..., bytes]] = {
    "hmac-sha256": _hmac_sha256_batch,
    "blake2b": _blake2b_batch,
}


def _in_batches(kind: str, args: tuple[Any, ...], messages: Sequence[bytes]) -> bytes:
    """`kind`'s batch over `messages`, split with worker processes when there are many.

    Workers are plain `python -c` children fed through pipes rather than multiprocessing, which
    would re-run a user's unguarded script in each child. A worker that fails changes nothing:
    its share is then computed here.
    """
    batch = _BATCHES[kind]
    workers = _workers()
    if workers < 2 or len(messages) < PARALLEL_MIN_MESSAGES or getattr(sys, "frozen", False):
        return batch(*args, messages)
    step = -(-len(messages) // workers)
    chunks = [messages[i : i + step] for i in range(0, len(messages), step)]
    children = [_start(kind, args, chunk) for chunk in chunks[1:]]
    parts = [batch(*args, chunks[0])]  # this process takes a share too
    for child, chunk in zip(children, chunks[1:], strict=True):
        parts.append(_finish(child, len(chunk) * _digest_size(kind, args)) or batch(*args, chunk))
    return b"".join(parts)


def _digest_size(kind: str, args: tuple[Any, ...]) -> int:
    return HMAC_SHA256_BYTES if kind == "hmac-sha256" else int(args[-1])


def _start(
    kind: str, args: tuple[Any, ...], chunk: Sequence[bytes]
) -> subprocess.Popen[bytes] | None:
    try:
        child = subprocess.Popen(
            [sys.executable, "-c", "from casepool.exchange.hashing import _serve; _serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, ValueError):
        return None
    try:
        assert child.stdin is not None
        child.stdin.write(pickle.dumps((kind, args, list(chunk)), pickle.HIGHEST_PROTOCOL))
        child.stdin.close()
    except (OSError, ValueError):  # the worker died before reading its share
        child.kill()
        child.communicate()
        return None
    return child


def _finish(child: subprocess.Popen[bytes] | None, expected: int) -> bytes | None:
    """The worker's digests, or None when it failed (or gave the wrong length)."""
    if child is None:
        return None
    assert child.stdout is not None
    try:
        out = child.stdout.read()
    except OSError:
        out = b""
    child.stdout.close()
    if child.wait() != 0 or len(out) != expected:
        return None
    return out


def _serve() -> None:
    """The worker: a pickled (kind, args, messages) on stdin, the digests on stdout."""
    kind, args, messages = pickle.loads(sys.stdin.buffer.read())
    sys.stdout.buffer.write(_BATCHES[kind](*args, messages))
    sys.stdout.buffer.flush()


def hmac_sha256_many(secret: bytes, messages: Sequence[bytes]) -> bytes:
    """HMAC-SHA256 under `secret` of every message: 32 bytes each, concatenated in order."""
    return _in_batches("hmac-sha256", (secret,), messages)


def blake2b_many(secret: bytes, prefix: bytes, messages: Sequence[bytes], size: int) -> bytes:
    """Keyed BLAKE2b of `prefix + message` for every message: `size` bytes each, concatenated."""
    return _in_batches("blake2b", (secret, prefix, size), messages)
