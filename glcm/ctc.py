"""CTC over characters for sentence lip reading (LRS2): the vocabulary, greedy and
prefix-beam-search decoding, and word / character error rates.

Vocabulary (deep_avsr's, without its end token): index 0 is the CTC blank, then space,
apostrophe, A-Z and 0-9 (39 symbols). Transcripts are upper-cased and their whitespace
collapsed; any other character makes the transcript unusable (`encode` raises ValueError).

Error rates come from jiwer: WER = (substitutions + deletions + insertions) / reference
words, summed over the whole test set (not a mean of per-utterance rates); CER the same
over characters (spaces included).
"""
from __future__ import annotations

import math

import jiwer
import numpy as np

BLANK = 0
SYMBOLS = " '" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ" + "0123456789"
VOCAB = ("<blank>",) + tuple(SYMBOLS)          # index -> symbol
INDEX = {c: i + 1 for i, c in enumerate(SYMBOLS)}


def normalise(text: str) -> str:
    """Upper case, single spaces, no leading or trailing space."""
    return " ".join(text.upper().split())


def encode(text: str) -> list[int]:
    """Target indices of a transcript (1..38); ValueError naming characters outside the vocabulary."""
    text = normalise(text)
    unknown = sorted({c for c in text if c not in INDEX})
    if unknown:
        raise ValueError(f"characters outside the CTC vocabulary: {''.join(unknown)!r}")
    return [INDEX[c] for c in text]


def to_text(ids) -> str:
    """Indices (no blanks) -> text."""
    return "".join(VOCAB[i] for i in ids if i != BLANK)


def min_frames(target: list[int]) -> int:
    """The fewest frames CTC can align `target` to: its length plus one blank between
    each pair of equal neighbours."""
    return len(target) + sum(1 for a, b in zip(target, target[1:]) if a == b)


def greedy(log_probs: np.ndarray) -> str:
    """Best path: the most likely symbol per frame, repeats merged, blanks dropped. (T, V)."""
    best = np.asarray(log_probs).argmax(axis=1)
    merged = [int(s) for j, s in enumerate(best) if j == 0 or s != best[j - 1]]
    return normalise(to_text(merged))


def _logsumexp(a: float, b: float) -> float:
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def beam_search(log_probs: np.ndarray, beam: int = 8, prune: float = -12.0) -> str:
    """CTC prefix beam search (Hannun et al. 2014, no language model) over (T, V) log
    probabilities: keeps the `beam` most likely prefixes, each with the probability of
    ending in a blank and of ending in its last symbol, so paths that collapse to the same
    text add up. Symbols below `prune` (log prob) at a frame are not tried."""
    lp = np.asarray(log_probs, dtype=np.float64)
    beams: dict[tuple, tuple[float, float]] = {(): (0.0, -math.inf)}     # prefix -> (p_blank, p_symbol)
    for t in range(lp.shape[0]):
        row = lp[t]
        tried = [int(s) for s in np.flatnonzero(row >= min(prune, row.max())) if s != BLANK]
        nxt: dict[tuple, list[float]] = {}

        def add(prefix: tuple, blank: float, symbol: float) -> None:
            cur = nxt.setdefault(prefix, [-math.inf, -math.inf])
            cur[0], cur[1] = _logsumexp(cur[0], blank), _logsumexp(cur[1], symbol)

        for prefix, (pb, ps) in beams.items():
            total = _logsumexp(pb, ps)
            add(prefix, total + row[BLANK], -math.inf)                   # a blank: same prefix
            if prefix:
                add(prefix, -math.inf, ps + row[prefix[-1]])            # the last symbol repeated
            for s in tried:
                if prefix and s == prefix[-1]:
                    add(prefix + (s,), -math.inf, pb + row[s])           # a new one needs a blank between
                else:
                    add(prefix + (s,), -math.inf, total + row[s])
        ranked = sorted(nxt.items(), key=lambda kv: _logsumexp(*kv[1]), reverse=True)[:beam]
        beams = {p: (v[0], v[1]) for p, v in ranked}
    best = max(beams.items(), key=lambda kv: _logsumexp(*kv[1]))[0]
    return normalise(to_text(best))


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Word error rate over a set: total word edits / total reference words."""
    return float(jiwer.wer(list(references), list(hypotheses)))


def cer(references: list[str], hypotheses: list[str]) -> float:
    """Character error rate over a set: total character edits / total reference characters."""
    return float(jiwer.cer(list(references), list(hypotheses)))
