"""CTC vocabulary, decoding and error rates (glcm/ctc.py), and how the sentence task reads
a sample's transcript and pads a batch (glcm/sentence.py). No model, no media."""
from __future__ import annotations

import math

import numpy as np
import pytest

from glcm import ctc
from glcm.data import SkipSample


def test_vocabulary_blank_space_apostrophe_letters_digits():
    assert len(ctc.VOCAB) == 39 and ctc.VOCAB[0] == "<blank>" and ctc.BLANK == 0
    assert ctc.encode("it's  a 4") == [ctc.INDEX[c] for c in "IT'S A 4"]
    assert ctc.INDEX[" "] == 1 and ctc.INDEX["'"] == 2 and ctc.INDEX["A"] == 3 and ctc.INDEX["0"] == 29
    assert ctc.to_text(ctc.encode("HELLO WORLD")) == "HELLO WORLD"
    with pytest.raises(ValueError, match="'-.'"):
        ctc.encode("NO-ONE.")
    assert ctc.min_frames(ctc.encode("HELLO")) == 6           # the LL pair needs a blank between
    assert ctc.min_frames(ctc.encode("AB")) == 2 and ctc.min_frames(ctc.encode("SOON  OK")) == 8


def test_wer_and_cer_against_hand_counts():
    # one deletion in six words
    assert ctc.wer(["THE CAT SAT ON THE MAT"], ["THE CAT SAT ON MAT"]) == pytest.approx(1 / 6)
    # a substitution and an insertion in two words: 100 %
    assert ctc.wer(["A B"], ["A C D"]) == pytest.approx(1.0)
    # over a set: the edits summed over the summed reference words, (1 + 2) / (6 + 2)
    assert ctc.wer(["THE CAT SAT ON THE MAT", "A B"], ["THE CAT SAT ON MAT", "A C D"]) == pytest.approx(3 / 8)
    assert ctc.wer(["BIN BLUE"], [""]) == pytest.approx(1.0)
    assert ctc.cer(["ABC"], ["AXC"]) == pytest.approx(1 / 3)
    assert ctc.cer(["ABC", "HI"], ["AXC", "HI"]) == pytest.approx(1 / 5)
    assert ctc.cer(["AT X"], ["AT"]) == pytest.approx(2 / 4)           # space and X deleted


def _one_hot(symbols: str, sure: float = 0.9) -> np.ndarray:
    """(T, V) log probs, frame t most likely symbols[t] ('-' = blank)."""
    out = np.full((len(symbols), len(ctc.VOCAB)), (1 - sure) / (len(ctc.VOCAB) - 1))
    for t, c in enumerate(symbols):
        out[t, ctc.BLANK if c == "-" else ctc.INDEX[c]] = sure
    return np.log(out)


def test_greedy_merges_repeats_and_drops_blanks():
    assert ctc.greedy(_one_hot("AA-AB B-")) == "AAB B"
    assert ctc.greedy(_one_hot("--")) == ""
    assert ctc.beam_search(_one_hot("AA-AB B-"), beam=4) == "AAB B"     # a clear path: the same answer


def test_beam_search_finds_the_sentence_greedy_misses():
    # Two frames, each blank 0.6 / A 0.4: the best path is blank-blank (""), 0.36, but
    # "A" collects A-A, A-blank and blank-A: 0.16 + 0.24 + 0.24 = 0.64.
    lp = np.full((2, len(ctc.VOCAB)), 1e-12)
    lp[:, ctc.BLANK], lp[:, ctc.INDEX["A"]] = 0.6, 0.4
    lp = np.log(lp)
    assert ctc.greedy(lp) == ""
    assert ctc.beam_search(lp, beam=4) == "A"
    # the same at word level: "I" beats "" and "II" needs a blank between its letters
    lp3 = np.full((3, len(ctc.VOCAB)), 1e-12)
    lp3[:, ctc.BLANK], lp3[:, ctc.INDEX["I"]] = 0.55, 0.45
    assert ctc.greedy(np.log(lp3)) == "" and ctc.beam_search(np.log(lp3), beam=8) == "I"


def test_beam_search_probabilities_add_up_to_the_brute_force_answer():
    rng = np.random.default_rng(0)
    symbols = [ctc.BLANK, ctc.INDEX["A"], ctc.INDEX["B"]]
    probs = rng.dirichlet(np.ones(3), size=4)                           # T=4 over blank, A, B
    totals: dict[str, float] = {}
    for path in np.ndindex(*(3,) * 4):
        seq = [symbols[i] for i in path]
        text = ctc.to_text([s for j, s in enumerate(seq) if j == 0 or s != seq[j - 1]])
        totals[text] = totals.get(text, 0.0) + math.prod(probs[t, i] for t, i in enumerate(path))
    lp = np.full((4, len(ctc.VOCAB)), -1e9)
    lp[:, symbols] = np.log(probs)
    assert ctc.beam_search(lp, beam=64) == max(totals, key=totals.get)


def _meta(**extra):
    from avprep.format import SampleMeta, SourceVideo
    fields = dict(key="k", source="lrs2", item_id="pretrain/1/00001", split="pretrain", source_path="x.mp4",
                  segment=0, first_frame=0, fps=25.0, start_time=0.0, end_time=2.0, cut_start=None,
                  cut_end=None, has_audio=True, sample_rate=16000, hop_length=160, n_fft=400, n_mels=80,
                  mel_per_frame=4, labels={}, extra={},
                  source_video=SourceVideo(360, 288, "1", 0, 25.0, "mpeg1video", "mp2", "stereo", 44100))
    fields.update(extra)
    return SampleMeta(**fields)


def test_sample_text_from_timed_words_or_the_transcript():
    from glcm.sentence import sample_text
    words = [["SET", 0.49, 0.77], ["WHITE", 0.77, 1.09], ["SOON", 1.73, 2.21]]
    assert sample_text(_meta(extra={"text": "SET WHITE SOON", "words": words})) == "SET WHITE SOON"
    assert sample_text(_meta(end_time=1.9, extra={"words": words})) == "SET WHITE"      # SOON's middle is 1.97 s
    assert sample_text(_meta(segment=1, start_time=1.5, end_time=3.0, extra={"words": words})) == "SOON"
    assert sample_text(_meta(extra={"text": "HELLO THERE"})) == "HELLO THERE"
    with pytest.raises(SkipSample) as err:
        sample_text(_meta(segment=1, extra={"text": "HELLO THERE"}))
    assert err.value.reason == "partial_transcript"
    for extra in ({}, {"text": "  "}, {"words": [["X", 5.0, 6.0]]}):
        with pytest.raises(SkipSample) as err:
            sample_text(_meta(extra=extra))
        assert err.value.reason == "no_transcript"


def test_padded_batch_keeps_lengths_and_ctc_targets():
    from glcm.sentence import pad_collate
    clips = [{"frames": np.full((n, 4, 4, 3), n, np.uint8), "target": ctc.encode(t), "text": t, "key": t}
             for n, t in ((3, "AB"), (5, "C D"))]
    b = pad_collate(clips, 0, {"too_long": 1})
    assert tuple(b["frames"].shape) == (2, 5, 4, 4, 3)
    assert b["lengths"].tolist() == [3, 5] and b["target_lengths"].tolist() == [2, 3]
    assert b["targets"].tolist() == ctc.encode("AB") + ctc.encode("C D")
    assert (b["frames"][0, 3:] == 0).all() and (b["frames"][0, :3] == 3).all() and b["skipped"] == {"too_long": 1}
