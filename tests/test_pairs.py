"""PairFolder: the (image, mask) pair store with its JSONL manifest."""

from __future__ import annotations

import json
import re

import nibabel as nib
import numpy as np
import pytest
import tifffile

from napari_lvseg.errors import LvsegError, LvsegWarning
from napari_lvseg.io.pairs import PairFolder

RNG = np.random.default_rng(1)


def pair(shape=(8, 10)):
    return RNG.normal(size=shape).astype(np.float64), RNG.integers(0, 5, shape).astype(np.int32)


def manifest_lines(root):
    return [json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()]


def test_add_writes_files_and_manifest(tmp_path):
    folder = PairFolder(tmp_path / "pairs")
    image, mask = pair()
    name = folder.add(image, mask, origin="corrected", source="/data/Case_1.nii.gz", model="m1", seed=3,
                      edited_pixels=12)
    assert name.startswith("Case_1_")
    on_disk_image = tifffile.imread(tmp_path / "pairs" / "images" / f"{name}.tif")
    on_disk_mask = tifffile.imread(tmp_path / "pairs" / "masks" / f"{name}.tif")
    assert on_disk_image.dtype == np.float32 and on_disk_mask.dtype == np.uint8
    np.testing.assert_array_equal(on_disk_mask, mask)
    (record,) = manifest_lines(tmp_path / "pairs")
    assert record["name"] == name and record["origin"] == "corrected" and record["model"] == "m1"
    assert record["seed"] == 3 and record["edited_pixels"] == 12 and record["source"] == "/data/Case_1.nii.gz"
    assert record["created"][:4].isdigit() and "T" in record["created"]
    assert len(folder) == 1 and folder.records()[0]["name"] == name
    got_image, got_mask = folder.read(name)
    np.testing.assert_array_equal(got_image, image.astype(np.float32))
    np.testing.assert_array_equal(got_mask, mask)
    assert [p.name for p in (tmp_path / "pairs").iterdir() if ".tmp" in p.name] == []


def test_stacks_and_replacing_a_name(tmp_path):
    folder = PairFolder(tmp_path)
    image, mask = pair((3, 6, 7))
    folder.add(image, mask, origin="synthetic", name="s1", seed=1)
    folder.add(image, mask, origin="synthetic", name="s2", seed=2)
    image2, mask2 = pair((3, 6, 7))
    folder.add(image2, mask2, origin="synthetic", name="s1", seed=9)
    records = manifest_lines(tmp_path)
    assert [r["name"] for r in records] == ["s2", "s1"]
    assert records[1]["seed"] == 9
    np.testing.assert_array_equal(folder.read("s1")[1], mask2)
    assert folder.read("s1")[0].shape == (3, 6, 7)


def test_bad_labels_and_shape_mismatch_write_nothing(tmp_path):
    folder = PairFolder(tmp_path / "p")
    image, mask = pair()
    mask[0, 0] = 6
    with pytest.raises(LvsegError, match=r"scan.nii.gz: .*6"):
        folder.add(image, mask, origin="real", source="scan.nii.gz")
    with pytest.raises(LvsegError, match=r"\(8, 10\).*\(8, 9\)"):
        folder.add(image, mask[:, :9] % 5, origin="real")
    with pytest.raises(LvsegError, match="origin"):
        folder.add(image, mask % 5, origin="invented")
    with pytest.raises(LvsegError, match="name"):
        folder.add(image, mask % 5, origin="real", name="../escape")
    assert not (tmp_path / "p").exists()


def test_pairs_are_not_written_into_emidec_folders_they_would_hide(tmp_path):
    from napari_lvseg.data.datasets import load_source
    from napari_lvseg.io.nifti import write_nifti

    image, mask = pair((2, 16, 16))
    for part, data in (("Images", image), ("Contours", mask.astype(np.uint8))):
        write_nifti(tmp_path / "data/Case_A" / part / "Case_A.nii.gz", data)
    assert load_source(tmp_path / "data", 16).cases == ["Case_A", "Case_A"]
    for root in (tmp_path / "data", tmp_path / "data/Case_A"):   # a dataset folder, a case folder
        with pytest.raises(LvsegError, match=f"{root.name}: holds EMIDEC cases: pairs written here would hide them"):
            PairFolder(root).add(image[0], mask[0], origin="synthetic")
        assert not (root / "images").exists() and not (root / "manifest.jsonl").exists()
    PairFolder(tmp_path / "data/synthetic").add(image[0], mask[0], origin="synthetic")   # a folder of its own: fine
    assert load_source(tmp_path / "data", 16).cases == ["Case_A", "Case_A"]


def test_find_returns_latest_record_for_a_source(tmp_path):
    folder = PairFolder(tmp_path)
    image, mask = pair()
    folder.add(image, mask, origin="corrected", source="a.nii.gz", name="first")
    folder.add(image, mask, origin="corrected", source="b.nii.gz", name="other")
    folder.add(image, mask, origin="corrected", source="a.nii.gz", name="second")
    assert folder.find("a.nii.gz")["name"] == "second"
    assert folder.find("missing.nii.gz") is None


def test_nifti_pairs_written_and_found_without_manifest(tmp_path):
    folder = PairFolder(tmp_path)
    image, mask = pair((2, 5, 6))
    folder.add(image, mask, origin="real", name="n1", fmt="nifti")
    assert (tmp_path / "images" / "n1.nii.gz").is_file()
    np.testing.assert_array_equal(folder.read("n1")[1], mask)
    # A folder made by hand, without a manifest: its pairs are listed and readable, as real data.
    hand = PairFolder(tmp_path / "by-hand")
    for folder_name in ("images", "masks"):
        (hand.root / folder_name).mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.ones((6, 5), np.float32), np.eye(4)), str(hand.root / "images" / "hand.nii.gz"))
    nib.save(nib.Nifti1Image(np.full((6, 5), 2, np.uint8), np.eye(4)), str(hand.root / "masks" / "hand.nii.gz"))
    (hand.root / "images" / "orphan.tif").write_bytes(b"")  # image without mask: not a pair
    assert hand.names() == ["hand"] and hand.records()[0]["origin"] == "real"
    hand_image, hand_mask = hand.read("hand")
    assert hand_image.shape == hand_mask.shape == (5, 6) and (hand_mask == 2).all()
    # Replacing a NIfTI pair by a TIFF one removes the old files.
    folder.add(image, mask, origin="real", name="n1")
    assert not (tmp_path / "images" / "n1.nii.gz").exists() and (tmp_path / "images" / "n1.tif").is_file()


def test_open_empty_or_missing_folder_raises(tmp_path):
    with pytest.raises(LvsegError, match="no pairs found"):
        PairFolder.open(tmp_path / "missing")
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    assert PairFolder.is_pair_folder(tmp_path) and not PairFolder.is_pair_folder(tmp_path / "images")
    with pytest.raises(LvsegError, match="no pairs found"):
        PairFolder.open(tmp_path)
    with pytest.raises(LvsegError, match="no pair named"):
        PairFolder(tmp_path).read("nothing")


def test_damaged_manifest_line_is_reported(tmp_path):
    folder = PairFolder(tmp_path)
    image, mask = pair()
    folder.add(image, mask, origin="real", name="a")
    with open(tmp_path / "manifest.jsonl", "a") as fh:
        fh.write("{oops\n")
    with pytest.raises(LvsegError, match="manifest.jsonl: line 2"):
        folder.records()


@pytest.mark.parametrize("outside", ["../victim.txt", "images/../../victim.txt", "VICTIM", "images"])
def test_a_manifest_naming_files_outside_the_folder_is_refused_and_deletes_nothing(tmp_path, outside):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    outside = str(victim) if outside == "VICTIM" else outside   # an absolute path
    root = tmp_path / "pairs"
    folder = PairFolder(root)
    image, mask = pair()
    folder.add(image, mask, origin="real", name="a")
    record = {"name": "b", "origin": "synthetic", "image": outside, "mask": "masks/a.tif"}
    with open(root / "manifest.jsonl", "a") as fh:
        fh.write(json.dumps(record) + "\n")
    message = f"manifest.jsonl: line 2: image {outside!r} is not a file in images/"
    with pytest.raises(LvsegError, match=re.escape(message)):
        folder.add(image, mask, origin="synthetic", name="b")   # replacing b would have deleted the victim
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in (root / "images").iterdir()) == ["a.tif"]   # nothing half-written


def test_a_manifest_that_is_not_text_stops_a_write_before_any_file(tmp_path):
    (tmp_path / "manifest.jsonl").write_bytes(b"\xff\xfe\x00garbage")
    image, mask = pair()
    with pytest.raises(LvsegError, match="manifest.jsonl: not a UTF-8 text file"):
        PairFolder(tmp_path).add(image, mask, origin="synthetic", name="s")
    # a pair left on disk without its record would be listed as real data
    assert not (tmp_path / "images").exists() or not any((tmp_path / "images").iterdir())


def test_a_new_pair_is_appended_to_a_hand_edited_manifest_and_a_replaced_one_rewritten(tmp_path):
    folder = PairFolder(tmp_path)
    image, mask = pair()
    folder.add(image, mask, origin="real", name="a")
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n\n" + manifest.read_text().strip())   # blank lines, no newline at the end
    folder.add(image, mask, origin="real", name="b")
    assert manifest.read_text().count("\n") == 4 and folder.names() == PairFolder(tmp_path).names() == ["a", "b"]
    folder.add(image, mask, origin="corrected", name="a")   # replaced: its record moves to the end
    records = [json.loads(line) for line in manifest.read_text().splitlines() if line]
    assert [(r["name"], r["origin"]) for r in records] == [("b", "real"), ("a", "corrected")]
    assert folder.records() == PairFolder(tmp_path).records()


def test_the_manifest_is_parsed_once_per_version_of_the_file(tmp_path, monkeypatch):
    folder = PairFolder(tmp_path)
    image, mask = pair()
    for i in range(3):
        folder.add(image, mask, origin="real", name=f"p{i}")
    parses = []
    parse = PairFolder._parse_manifest
    monkeypatch.setattr(PairFolder, "_parse_manifest", lambda self, text: parses.append(self) or parse(self, text))
    reader = PairFolder(tmp_path)
    for name in reader.names():
        reader.read(name)
    assert parses == [reader]   # a training run reads thousands of pairs: once, not once per pair
    folder.add(image, mask, origin="synthetic", name="p3", source_slice=np.int64(3), source_data=tmp_path / "x")
    assert reader.names() == ["p0", "p1", "p2", "p3"] and parses.count(reader) == 2   # a new version: read again
    # the writer keeps what it wrote as parsed (a folder filled pair by pair parsed its manifest once per pair),
    # in the form a parse gives: numpy numbers and paths as JSON has them
    folder.add(image, mask, origin="synthetic", name="p4")
    assert folder not in parses and folder.records() == PairFolder(tmp_path).records()
    assert folder.records()[3]["source_slice"] == 3 and folder.records()[3]["source_data"] == str(tmp_path / "x")


def test_new_names_are_drawn_again_while_taken(tmp_path, monkeypatch):
    """Variants of one mask added within a second: a random tag that repeats must not replace a pair."""
    import secrets

    tags = iter(["abcd", "abcd", "abcd", "ef01"])
    monkeypatch.setattr(secrets, "token_hex", lambda n: next(tags))
    folder = PairFolder(tmp_path / "pairs")
    first = folder.add(*pair(), origin="synthetic", source="mask.nii.gz")
    second = folder.add(*pair(), origin="synthetic", source="mask.nii.gz")
    if first[:-5] == second[:-5]:   # the same second (nearly always): the tag was drawn again
        assert first.endswith("_abcd") and second.endswith("_ef01")
    assert first != second and len(folder) == 2


def test_files_without_a_line_in_a_folder_with_a_manifest_are_left_out_never_read_as_real(tmp_path):
    """The pair a kill left between its files and its line (before the line came first) read as real data: it
    would count toward the real validation split and pass the held-out-case leak guard."""
    folder = PairFolder(tmp_path)
    image, mask = pair()
    folder.add(image, mask, origin="synthetic", name="s0", seed=0)
    folder.add(image, mask, origin="synthetic", name="s1", seed=1)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n")   # s1's files stay, its line is gone
    with pytest.warns(LvsegWarning, match=re.escape(
            f"{tmp_path}: pair s1 left out: images/s1.tif and masks/s1.tif have no line in manifest.jsonl, so what "
            "they are (real, corrected, synthetic) is unknown")):
        records = PairFolder(tmp_path).records()
    assert [(r["name"], r["origin"]) for r in records] == [("s0", "synthetic")]
    assert PairFolder(tmp_path).incomplete()[0][0] == "s1"


@pytest.mark.parametrize("written", [(), ("images",)])
def test_a_line_whose_files_are_missing_is_left_out_and_dropped_by_the_next_writer(tmp_path, written):
    """A kill after a pair's line and before (all of) its files: readers leave it out; a writer drops it."""
    folder = PairFolder(tmp_path)
    image, mask = pair()
    folder.add(image, mask, origin="synthetic", name="s0")
    folder.add(image, mask, origin="synthetic", name="s1")
    for folder_name in {"images", "masks"} - set(written):
        (tmp_path / folder_name / "s1.tif").unlink()
    with pytest.warns(LvsegWarning, match=r"pair s1 left out: its manifest line names .*masks/s1\.tif.* missing "
                                          r"\(an interrupted write\)"):
        assert PairFolder(tmp_path).names() == ["s0"]
    with pytest.raises(LvsegError, match="s1.tif"):
        PairFolder(tmp_path).read("s1")
    assert PairFolder(tmp_path).drop_incomplete() == ["s1"]
    assert [r["name"] for r in manifest_lines(tmp_path)] == ["s0"] and PairFolder(tmp_path).incomplete() == []
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == ["s0.tif"]   # its one written file too


def test_a_pairs_line_is_written_before_its_files(tmp_path, monkeypatch):
    """Stopped at each file write, the folder never holds a pair file without its line."""
    from napari_lvseg.io import tiff

    image, mask = pair()
    folder = PairFolder(tmp_path)
    folder.add(image, mask, origin="synthetic", name="s0")
    write = tiff.write_tiff
    for stop_at in (1, 2):
        calls = []

        def stopping(path, data, meta=None):
            calls.append(path)
            if len(calls) == stop_at:
                raise KeyboardInterrupt   # as a kill at that moment: nothing after it runs
            return write(path, data, meta)

        monkeypatch.setattr(tiff, "write_tiff", stopping)
        with pytest.raises(KeyboardInterrupt):
            folder.add(image, mask, origin="synthetic", name=f"k{stop_at}")
        monkeypatch.setattr(tiff, "write_tiff", write)
        lines = {r["name"]: r for r in manifest_lines(tmp_path)}
        assert f"k{stop_at}" in lines and lines[f"k{stop_at}"]["origin"] == "synthetic"
        with pytest.warns(LvsegWarning, match=f"pair k{stop_at} left out"):
            assert f"k{stop_at}" not in PairFolder(tmp_path).names()
