"""The layer-metadata contract (`napari_lvseg.layer_meta`): one declaration per key, the writers and readers, and no
other module spelling a key."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from napari_lvseg import labels as lb, layer_meta as lm

SRC = Path(lm.__file__).resolve().parent
KEY_LITERAL = re.compile(r"lvseg_[a-z0-9_]+")


def key_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string constant that is a whole ``lvseg_*`` name, docstrings left out."""
    tree = ast.parse(source)
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and KEY_LITERAL.fullmatch(node.value)]


def test_no_module_but_layer_meta_spells_a_metadata_key():
    found = {str(path.relative_to(SRC)): hits for path in sorted(SRC.rglob("*.py")) if path.name != "layer_meta.py"
             for hits in [key_literals(path.read_text(encoding="utf-8"))] if hits}
    assert found == {}


def test_the_key_finder_finds_keys_and_passes_over_docstrings_and_private_names():
    source = '''"""Keeps metadata['lvseg_source']."""
def f(layer):
    """Reads 'lvseg_model'."""
    layer._lvseg_scroll = 1
    return layer.metadata.get("lvseg_model"), {"lvseg_seed": 1}, "an lvseg_x in a sentence"
'''
    assert key_literals(source) == [(5, "lvseg_model"), (5, "lvseg_seed")]


def test_each_key_is_declared_once_and_keeps_its_spelling_on_the_layer():
    # saved napari sessions and scripts hold these names: renaming one breaks them
    assert [key.name for key in lm.KEYS] == [
        "lvseg_source", "lvseg_source_path", "lvseg_classes", "lvseg_prediction", "lvseg_model", "lvseg_image",
        "lvseg_center", "lvseg_correction", "lvseg_derived", "lvseg_what_if_of", "lvseg_seed", "lvseg_mask_layer"]
    assert all(key.meaning and key.types for key in lm.KEYS)
    assert len(set(lm.DERIVED_KINDS)) == len(lm.DERIVED_KINDS)


def test_the_contract_module_needs_neither_qt_nor_napari():
    code = ("import sys, napari_lvseg.layer_meta; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('qtpy', 'PyQt5', 'PyQt6', 'napari')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]"


def test_a_prediction_is_written_and_read_back():
    labels = np.ones((2, 8, 8), np.uint8)
    header = {"format": "nifti", "source": "/data/case.nii.gz"}
    metadata = lm.prediction_metadata(labels, "lvseg-seg", "/data/case.nii.gz", "case", (4.0, 4.0), header)
    assert lm.problems(metadata) == []
    labels[0, 0, 0] = 3   # the kept prediction is a copy: edits of the layer are counted against it
    layer = SimpleNamespace(metadata=metadata, name="case labels")
    assert lm.prediction(layer)[0, 0, 0] == 1 and lm.model(layer) == "lvseg-seg"
    assert lm.source_path(layer) == "/data/case.nii.gz" == lm.source_of(layer)
    assert lm.source(layer) is header and lm.image_name(layer) == "case"
    assert metadata[lm.CLASSES.name] == dict(lb.NAMES)
    assert lm.is_owned(layer) and lm.is_tied_to_file(layer) and not lm.is_derived(layer)
    assert lm.prediction(metadata) is lm.prediction(layer)   # the metadata dict reads as its layer does
    assert "lvseg_source" not in lm.prediction_metadata(labels, "m", "x.tif", "x")   # no header: none kept


def test_corrections_files_and_derived_layers():
    correction = lm.correction_metadata("/data/case.tif", {"format": "tiff"})
    assert lm.problems(correction) == [] and lm.is_owned(correction) and lm.prediction(correction) is None
    assert lm.source_path(correction) == "/data/case.tif" and lm.source(correction) == {"format": "tiff"}

    contours = lm.file_metadata({"source": "/c/Contours/X.nii.gz"}, "/c/Images/X.nii.gz", labels=True)
    assert lm.problems(contours) == [] and not lm.is_owned(contours)   # an expert's labels: never replaced
    assert lm.is_tied_to_file(contours) and lm.CLASSES.name in contours
    image = lm.file_metadata({"source": "/c/Images/X.nii.gz"})
    assert not lm.is_tied_to_file(image) and lm.source_of(SimpleNamespace(metadata=image)) == "/c/Images/X.nii.gz"

    what_if = lm.what_if_metadata("case labels", "case")
    assert lm.problems(what_if) == [] and lm.is_what_if(what_if) and lm.what_if_of(what_if) == "case labels"
    assert not lm.is_tied_to_file(what_if) and not lm.is_owned(what_if)   # Correct and save never sees it
    synthetic = lm.synthetic_metadata(np.int64(3), None, "LV mask")
    assert lm.problems(synthetic) == [] and lm.derived(synthetic) == lm.SYNTHETIC and lm.model(synthetic) is None
    assert lm.derived(lm.derived_metadata(lm.DRAWN, labels=True)) == lm.DRAWN
    with pytest.raises(ValueError, match="unknown derived kind"):
        lm.derived_metadata("sketch")


def test_layers_without_metadata_and_the_source_fallbacks():
    bare = SimpleNamespace(metadata=None, name="drawn by hand")
    assert lm.source(bare) is None and lm.prediction(bare) is None and not lm.is_derived(bare)
    assert lm.source_of(bare) == "drawn by hand"
    opened = SimpleNamespace(metadata={}, name="x", source=SimpleNamespace(path="/d/x.tif"))
    assert lm.source_of(opened) == "/d/x.tif"
    assert lm.source({"lvseg_source": "not a record"}) is None


def test_problems_name_an_undeclared_key_and_a_value_of_another_type():
    assert lm.problems({"lvseg_colour": 1, "lvseg_seed": "3", "lvseg_derived": "sketch", "other": 1}) == [
        "lvseg_colour: not a declared key", "lvseg_seed: str '3'", "lvseg_derived: str 'sketch'"]
