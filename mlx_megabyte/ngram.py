"""A corpus n-gram index for drafting: for every context of a few fixed lengths that occurs in a corpus,
the token that most often followed it (of equally frequent ones, the lowest id). Speculative decoding (speculative.CorpusDraft) proposes with it
one token at a time, backing off from the longest context that occurred to shorter ones.

Built once with numpy: a polynomial hash of every k-gram (wrapping uint64 arithmetic), the (hash, next
token) pairs counted with np.unique, and per hash the most frequent next token kept, sorted by hash. A
query is one np.searchsorted per context length tried. Hashes may collide (55 bits are kept); a collision
only makes a proposal wrong, which the model's check rejects, never the output.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

BASE = 0x9E3779B97F4A7C15  # odd 64-bit multiplier (the golden ratio's bits): spreads k-grams over the hashes
MIX = 0xBF58476D1CE4E5B9  # odd: a k-gram's hash times this puts its last tokens in the high bits, which are kept
MASK = (1 << 64) - 1
TOKEN_BITS = 9  # room for a token id below 512 beside a hash (the bytes layout has 258)
DEFAULT_LENGTHS = (24, 16, 12, 8, 6, 4, 3, 2)


class NgramIndex:
    """The most frequent next token of every k-gram (k in `lengths`) of `tokens` (a 1-D integer array)."""

    def __init__(self, tokens: np.ndarray, lengths: Sequence[int] = DEFAULT_LENGTHS):
        tokens = np.asarray(tokens).astype(np.uint64)
        if tokens.ndim != 1 or (tokens.size and int(tokens.max()) >> TOKEN_BITS):
            raise ValueError(f"an n-gram index takes a 1-D array of token ids below {1 << TOKEN_BITS}")
        self.lengths = tuple(sorted(set(lengths), reverse=True))
        if not self.lengths or self.lengths[-1] < 1:
            raise ValueError(f"context lengths must be positive, got {lengths}")
        self.powers = [pow(BASE, k, 1 << 64) for k in range(self.lengths[0] + 1)]
        self.tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        hashes = np.zeros(tokens.size, np.uint64)  # hashes[i]: the k-gram tokens[i : i + k], k growing
        with np.errstate(over="ignore"):
            for k in range(1, self.lengths[0] + 1):
                if k > tokens.size - 1:
                    break
                hashes[: tokens.size - k + 1] = hashes[: tokens.size - k + 1] * np.uint64(BASE) + tokens[k - 1 :]
                if k in self.lengths:
                    self.tables[k] = _most_frequent_next(hashes[: tokens.size - k], tokens[k:])

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for table in self.tables.values() for a in table)

    def suffix_hashes(self, context: Sequence[int]) -> dict[int, int]:
        """{k: the key of the last k tokens of `context` (as `_most_frequent_next` keeps it)} for every
        indexed k that fits."""
        found, value = {}, 0
        for k in range(1, min(self.lengths[0], len(context)) + 1):
            value = (value + int(context[-k]) * self.powers[k - 1]) & MASK
            if k in self.tables:
                found[k] = (value * MIX & MASK) >> TOKEN_BITS
        return found

    def next_token(self, context: Sequence[int], least_share: float = 0.0) -> int | None:
        """The token that most often followed the longest indexed ending of `context`, or None where no
        ending occurred (or where that token followed less than `least_share` of its occurrences)."""
        hashes = self.suffix_hashes(context)
        for k in self.lengths:
            if k not in hashes:
                continue
            keys, best, share = self.tables[k]
            at = int(np.searchsorted(keys, np.uint64(hashes[k])))
            if at < keys.size and int(keys[at]) == hashes[k]:
                return int(best[at]) if share[at] >= least_share else None
        return None

    def continuation(self, context: Sequence[int], n: int, least_share: float = 0.0) -> list[int]:
        """Up to n tokens, each next_token of the context and the tokens before it."""
        window = list(context[-self.lengths[0] :])
        out: list[int] = []
        while len(out) < n:
            token = self.next_token(window, least_share)
            if token is None:
                break
            out.append(token)
            window = window[1:] + [token] if len(window) >= self.lengths[0] else window + [token]
        return out


def _most_frequent_next(hashes: np.ndarray, following: np.ndarray):
    """(the distinct keys, sorted: the hashes times MIX, their high bits; the token that most often followed each; the share of
    its occurrences that token had)."""
    with np.errstate(over="ignore"):
        mixed = hashes * np.uint64(MIX)
    pairs, counts = np.unique((mixed >> np.uint64(TOKEN_BITS) << np.uint64(TOKEN_BITS)) | following, return_counts=True)
    keys = pairs >> np.uint64(TOKEN_BITS)
    order = np.lexsort((-counts, keys))  # by hash, the most frequent pair first
    first = np.ones(order.size, bool)
    first[1:] = keys[order][1:] != keys[order][:-1]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    totals = np.add.reduceat(counts, starts) if counts.size else counts
    chosen = order[first]
    best = (pairs[chosen] & np.uint64((1 << TOKEN_BITS) - 1)).astype(np.uint16)
    return keys[chosen], best, (counts[chosen] / totals).astype(np.float32)
