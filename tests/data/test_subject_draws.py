"""Seeded CK+ subject draws (issue 20): small adaptation targets of ~10 people."""
import pytest

from fer_edge.data import open_dataset
from fer_edge.data.landmarks import cache_file
from fer_edge.data.subject_draws import TUNING_DRAWS, subject_draws, subject_of


def test_subject_names_parse_and_bad_names_are_errors():
    assert subject_of("anger/S010_004_00000017.png") == "S010"
    assert subject_of("S999_001_00000001.png") == "S999"
    with pytest.raises(ValueError, match="no CK\\+ subject"):
        subject_of("happy/face_001.png")


def test_draws_are_seeded_disjoint_and_cut_in_order():
    subjects = [f"S{i:03d}" for i in range(25)] * 3  # duplicates: one entry per face
    a, b = subject_draws(subjects, size=10, seed=20), subject_draws(subjects, size=10, seed=20)
    assert a == b and len(a) == 2 and all(len(d) == 10 for d in a)  # 25 people: 2 draws, 5 left out
    assert not set(a[0]) & set(a[1])
    assert subject_draws(subjects, size=10, seed=21) != a


def test_ckplus_draws_cover_disjoint_people_in_every_label_view(data_root):
    every = open_dataset("ckplus", num_classes=8)
    assert len({subject_of(s.name) for s in every.samples}) == 118
    seen = {}
    for k in range(11):
        d8, d7 = open_dataset("ckplus", f"draw{k}", num_classes=8), open_dataset("ckplus", f"draw{k}", num_classes=7)
        people = {subject_of(s.name) for s in d8.samples}
        assert len(people) == 10 and d8.name == f"ckplus48@draw{k}"
        # the 7-class view drops contempt faces, not people: the same draw, minus those faces
        assert {s.name for s in d7.samples} == {s.name for s in d8.samples if s.label != 7}
        for j, other in seen.items():
            assert not people & other, (k, j)
        seen[k] = people
    tuning = set().union(*(seen[k] for k in TUNING_DRAWS))
    report = set().union(*(p for k, p in seen.items() if k not in TUNING_DRAWS))
    assert not tuning & report and len(report) == 80
    with pytest.raises(ValueError, match="11 subject draws"):
        open_dataset("ckplus", "draw11")
    with pytest.raises(ValueError, match="draw<k>"):
        open_dataset("ckplus", "drawx")


def test_a_draw_shares_its_datasets_landmark_cache(tmp_path):
    assert cache_file("ckplus@draw3", tmp_path) == cache_file("ckplus", tmp_path) == tmp_path / "ckplus.npz"
