"""Seeded CK+ subject draws (issue 20): small adaptation targets of ~10 people."""
import pytest

from fer_edge.data import open_dataset
from fer_edge.data.landmarks import cache_file
from fer_edge.data.subject_draws import TUNING_DRAWS, fresh_draws, parse_draw, subject_draws, subject_of


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
    # the fresh cut: new groups of the 88 people outside the tuning draws, seeded, disjoint
    fresh = {}
    for k in range(8):
        d = open_dataset("ckplus", f"fresh{k}", num_classes=8)
        people = {subject_of(s.name) for s in d.samples}
        assert len(people) == 10 and d.name == f"ckplus48@fresh{k}" and not people & tuning
        assert all(not people & other for other in fresh.values())
        assert people not in seen.values()  # a new group, not one of the first cut's
        fresh[k] = people
    with pytest.raises(ValueError, match="8 fresh draws"):
        open_dataset("ckplus", "fresh8")
    # the larger cuts: the same 88 people in 3 groups of 25 (~200 faces) and 2 of 44 (over 300 faces)
    for kind, n_draws, size, faces in (("wide", 3, 25, (150, 260)), ("half", 2, 44, (300, 400))):
        groups = []
        for k in range(n_draws):
            d8, d7 = open_dataset("ckplus", f"{kind}{k}", num_classes=8), open_dataset("ckplus", f"{kind}{k}", num_classes=7)
            people = {subject_of(s.name) for s in d8.samples}
            # sized by the 7-class faces an adaptation run sees (contempt-only people add none)
            assert len(people) == size and not people & tuning and faces[0] < len(d7) < faces[1], (kind, k, len(d7))
            assert all(not people & other for other in groups)
            groups.append(people)
        with pytest.raises(ValueError, match=f"{n_draws} {kind} draws of {size} people"):
            open_dataset("ckplus", f"{kind}{n_draws}")


def test_fresh_draws_avoid_the_tuning_people_and_are_seeded():
    subjects = [f"S{i:03d}" for i in range(60)]
    first = subject_draws(subjects, size=10)
    tuning = set().union(*(first[k] for k in TUNING_DRAWS))
    a = fresh_draws(subjects * 2, size=10)  # one entry per face: duplicates do not change the draws
    assert a == fresh_draws(list(reversed(subjects)), size=10) and len(a) == 3
    assert all(not set(d) & tuning for d in a)
    assert parse_draw("fresh3") == ("fresh", 3) and parse_draw("draw0") == ("draw", 0)
    assert parse_draw("test") is None and parse_draw("fresh") is None
    assert parse_draw("wide2") == ("wide", 2) and parse_draw("half0") == ("half", 0) and parse_draw("wider2") is None


def test_a_draw_shares_its_datasets_landmark_cache(tmp_path):
    assert cache_file("ckplus@draw3", tmp_path) == cache_file("ckplus", tmp_path) == tmp_path / "ckplus.npz"
    assert cache_file("ckplus@fresh3", tmp_path) == cache_file("ckplus@wide1", tmp_path) == tmp_path / "ckplus.npz"
    assert cache_file("ckplus@half0", tmp_path) == tmp_path / "ckplus.npz"
