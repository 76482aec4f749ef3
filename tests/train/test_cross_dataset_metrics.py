"""Cross-dataset metrics on hand-computed cases: CK+'s per-sequence vote and its confidence
intervals, the basic-six accuracy, and the sequences the CK+ loader records."""
import numpy as np
import pytest

from fer_edge.data.labels import CLASSES
from fer_edge.train.metrics import ambiguous_split, basic_six_accuracy, paired_test_by_sequence, sequence_vote, wilson_interval


def test_wilson_interval_matches_the_textbook_value():
    lo, hi = wilson_interval(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_sequence_vote_majority_tie_to_last_frame_and_face_accuracy():
    groups = ["A", "A", "A", "B", "B", "B", "C", "C", "C"]
    labels = [1, 1, 1, 2, 2, 2, 0, 0, 0]
    pred = [1, 2, 1,  # A: majority 1, right
            3, 4, 2,  # B: three-way tie -> last frame's 2, right
            5, 5, 0]  # C: majority 5, wrong although its last frame is right
    res = sequence_vote(pred, labels, groups)
    assert res["sequences"] == 3 and res["faces"] == 9
    assert res["accuracy"] == pytest.approx(2 / 3)
    assert res["face_accuracy"] == pytest.approx(4 / 9)
    assert res["ci95"] == wilson_interval(2, 3)


def test_tie_between_two_classes_goes_to_the_last_frame_only_if_it_is_tied():
    # counts: 1 twice, 2 twice; last frame says 2 -> 2
    assert sequence_vote([1, 1, 2, 2], [2] * 4, ["s"] * 4)["accuracy"] == 1.0
    # last frame says 3 (not among the tied) -> the lowest tied class, 1 -> wrong
    assert sequence_vote([1, 1, 2, 2, 3], [2] * 5, ["s"] * 5)["accuracy"] == 0.0


def test_correlated_frames_widen_the_face_interval():
    # 100 sequences of 3 frames, each sequence all right or all wrong: 300 faces carry the
    # information of 100, so the by-sequence interval must be about sqrt(3) times wider
    rng = np.random.default_rng(0)
    right = rng.random(100) < 0.7
    labels = np.zeros(300, int)
    pred = np.repeat(np.where(right, 0, 1), 3)
    groups = np.repeat([f"s{i}" for i in range(100)], 3)
    res = sequence_vote(pred, labels, groups, resamples=4000)
    naive = res["face_ci95_if_independent"][1] - res["face_ci95_if_independent"][0]
    honest = res["face_ci95_by_sequence"][1] - res["face_ci95_by_sequence"][0]
    assert 1.4 < honest / naive < 2.1
    assert res["accuracy"] == pytest.approx(res["face_accuracy"])


def test_sequence_with_two_labels_is_an_error():
    with pytest.raises(ValueError, match="one sequence is one expression"):
        sequence_vote([0, 0], [0, 1], ["s", "s"])
    with pytest.raises(ValueError, match="groups"):
        sequence_vote([0, 0], [0, 0], ["s"])


def test_basic_six_drops_contempt_faces_and_never_predicts_an_absent_class():
    classes = CLASSES  # neutral, happiness, surprise, sadness, anger, disgust, fear, contempt
    anger, contempt, neutral, happiness = 4, 7, 0, 1
    labels = np.array([anger, anger, contempt, happiness])
    outputs = np.full((4, 8), -5.0)
    outputs[0, contempt], outputs[0, anger] = 3.0, 2.0   # contempt not allowed -> anger: right
    outputs[1, neutral], outputs[1, happiness] = 3.0, 2.0  # neutral absent -> happiness: wrong
    outputs[2, contempt] = 3.0  # a contempt face: not counted
    outputs[3, happiness] = 1.0
    res = basic_six_accuracy(outputs, labels, classes, "argmax", None)
    assert res["count"] == 3
    assert res["accuracy"] == pytest.approx(2 / 3)
    assert res["classes"] == ["happiness", "anger"]
    assert basic_six_accuracy(outputs[2:3], labels[2:3], classes, "argmax", None) is None


def test_ckplus_faces_carry_their_sequence(data_root):
    from fer_edge.data.folder import ckplus

    ds = ckplus()
    seqs = [s.extras["sequence"] for s in ds.samples]
    assert len(set(seqs)) == 327
    six = [s for s in ds.samples if ds.classes[s.label] != "contempt"]
    assert len(six) == 927
    # every sequence is one expression
    by_seq = {}
    for s in ds.samples:
        by_seq.setdefault(s.extras["sequence"], set()).add(s.label)
    assert all(len(v) == 1 for v in by_seq.values())


def test_ambiguous_split_on_a_hand_computed_case():
    cand = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 1]], bool)
    res = ambiguous_split([0, 1, 1, 0], [0, 0, 1, 2], cand)  # ambiguous: faces 1 (wrong), 2 (right)
    assert res == {"count": 2, "accuracy": 0.5, "accuracy_unambiguous": 0.5}
    assert ambiguous_split([0], [0], np.array([[1, 0]], bool))["accuracy"] is None


def test_paired_test_by_sequence_counts_a_sequence_once():
    # B misses every frame of one sequence: 3 faces by McNemar (p = 2/2**3), one sign by sequence
    groups = ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    labels = [1] * 9
    a, b = [1] * 9, [0] * 3 + [1] * 6
    r = paired_test_by_sequence(a, b, labels, groups)
    assert (r["sequences"], r["differing_sequences"], r["only_first_right"], r["only_second_right"]) == (3, 1, 3, 0)
    assert r["p_value"] == 1.0  # one sequence: a flip of its sign reaches |3| every time
    # six sequences all favouring A by one face: exact p = P(|sum of 6 signs| >= 6) = 2 / 64
    groups = [g for g in "abcdef" for _ in range(3)]
    a = [1] * 18
    b = [0 if i % 3 == 0 else 1 for i in range(18)]
    r = paired_test_by_sequence(a, b, [1] * 18, groups)
    assert r["differing_sequences"] == 6 and r["p_value"] == pytest.approx(2 / 64, abs=0.005)
    # a sequence where A and B each win a face cancels out
    r = paired_test_by_sequence([1, 0, 1], [0, 1, 1], [1, 1, 1], ["s", "s", "s"])
    assert r["differing_sequences"] == 0 and r["p_value"] == 1.0


def test_paired_test_by_sequence_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="groups"):
        paired_test_by_sequence([0, 1], [0, 1], [0, 1], ["a"])


def test_label_shift_prior_recovers_a_hand_computed_target_prior():
    from fer_edge.train.metrics import label_shift_prior

    # two kinds of face, A and B; p(A|class 0) = 0.9, p(A|class 1) = 0.2; posteriors under a uniform
    # source prior: p(0|A) = 0.9/1.1, p(0|B) = 0.1/0.9. A target with prior [0.8, 0.2] has
    # p(A) = 0.8*0.9 + 0.2*0.2 = 0.76: 76 A faces and 24 B faces. EM's fixed point is [0.8, 0.2].
    p = np.array([[0.9 / 1.1, 0.2 / 1.1]] * 76 + [[0.1 / 0.9, 0.8 / 0.9]] * 24)
    prior, adjusted = label_shift_prior(p, [0.5, 0.5])
    assert prior == pytest.approx([0.8, 0.2], abs=1e-6)
    assert adjusted[0] == pytest.approx([0.72 / 0.76, 0.04 / 0.76], abs=1e-6)   # p_t(0|A)
    assert adjusted[-1] == pytest.approx([0.08 / 0.24, 0.16 / 0.24], abs=1e-6)  # p_t(0|B)
    # posteriors already calibrated to the faces' mix (the 76/24 average is the source prior) move nowhere
    mix = p.mean(0)
    prior, same = label_shift_prior(p, mix)
    assert prior == pytest.approx(mix, abs=1e-6) and same == pytest.approx(p, abs=1e-6)


def test_label_shift_prior_rejects_bad_input():
    from fer_edge.train.metrics import label_shift_prior

    with pytest.raises(ValueError, match=r"\[N, C\]"):
        label_shift_prior(np.zeros((0, 3)), [1, 1, 1])
    with pytest.raises(ValueError, match="source_prior"):
        label_shift_prior(np.full((2, 3), 1 / 3), [1, 1])
    with pytest.raises(ValueError, match="sum to 1"):
        label_shift_prior(np.array([[0.5, float("nan")]]), [1, 1])
