"""The layer-metadata contract: every ``lvseg_*`` key the plugin keeps in a napari layer's ``metadata``, declared once
(its name on the layer, its type, what it means), and the functions that write and read them.

The reader and the writer (npe2 entry points) and the dock widgets use these functions; no other module spells a
key (a test reads the sources). The keys keep their spelling: saved napari sessions and scripts hold them.
Qt-free and napari-free: it only reads and writes ``metadata`` dicts, a layer's or the one a reader hands napari.
Every reader takes a layer (anything with ``.metadata``) or the metadata mapping itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Key:
    """One metadata key: its name on the layer, the types its value may have, and what it means."""

    name: str
    types: tuple
    meaning: str


NONE = type(None)
SOURCE = Key("lvseg_source", (dict,),
             "the reader's record of the file the layer came from (format, header, affine, spacing, 'source' path): "
             "File > Save writes labels back in that file's space")
SOURCE_PATH = Key("lvseg_source_path", (str,),
                  "the image file the layer is tied to: labels segmented from it, a correction of it, a case's "
                  "contours opened with it (Correct and save pairs them with that image only); an image layer's own "
                  "file")
CLASSES = Key("lvseg_classes", (dict,), "{label value: class name} of a labels layer")
PREDICTION = Key("lvseg_prediction", (np.ndarray,),
                 "the labels as the model predicted them: hand edits are counted against it, and labels still equal "
                 "to it are never autosaved over a saved correction")
MODEL = Key("lvseg_model", (str, NONE), "the model that made the labels or the synthetic image")
IMAGE = Key("lvseg_image", (str, NONE), "name of the image layer the labels belong to (segmented from it)")
CENTER = Key("lvseg_center", (tuple, list, NONE), "(y, x) of the LV centre the model's view was placed on")
CORRECTION = Key("lvseg_correction", (bool,), "labels loaded from the annotation folder (a saved correction)")
DERIVED = Key("lvseg_derived", (str,),
              "the kind of layer a panel derived from others (one of DERIVED_KINDS): never a case's own image or "
              "labels")
WHAT_IF_OF = Key("lvseg_what_if_of", (str,), "name of the labels layer a what-if copy was made from")
SEED = Key("lvseg_seed", (int,), "noise seed of a synthetic image")
MASK_LAYER = Key("lvseg_mask_layer", (str,), "name of the mask layer a synthetic image was rendered from")
KEYS = (SOURCE, SOURCE_PATH, CLASSES, PREDICTION, MODEL, IMAGE, CENTER, CORRECTION, DERIVED, WHAT_IF_OF, SEED,
        MASK_LAYER)

# the values of DERIVED: what a panel made the layer as
UNCERTAINTY = "uncertainty"      # Segment LV's uncertainty map
SYNTHETIC = "synthetic"          # a synthetic image (Synthesize)
WHAT_IF = "what-if"              # a mask copy that Synthesize's edits go to
DRAWN = "drawn"                  # a mask Synthesize drew
RV_INSERTION = "rv_insertion"    # the AHA section's insertion Points layer
THRESHOLD = "threshold"          # a threshold method's labels (AHA section)
DERIVED_KINDS = (UNCERTAINTY, SYNTHETIC, WHAT_IF, DRAWN, RV_INSERTION, THRESHOLD)


def metadata_of(layer_or_metadata) -> Mapping:
    """The metadata mapping of a layer (empty when it has none), or the mapping itself."""
    if isinstance(layer_or_metadata, Mapping):
        return layer_or_metadata
    return getattr(layer_or_metadata, "metadata", None) or {}


def problems(metadata: Mapping) -> list[str]:
    """What in ``metadata`` breaks the contract: an lvseg key not declared here, a value of another type."""
    declared = {key.name: key for key in KEYS}
    found = []
    for name, value in metadata.items():
        if not str(name).startswith("lvseg_"):
            continue
        key = declared.get(name)
        if key is None:
            found.append(f"{name}: not a declared key")
        elif not isinstance(value, key.types) or key is DERIVED and value not in DERIVED_KINDS:
            found.append(f"{name}: {type(value).__name__} {value!r:.40}")
    return found


# ------------------------------------------------------------------------------------------ writing

def file_metadata(source: dict | None, source_path: str | None = None, labels: bool = False) -> dict:
    """A layer read from a file: the reader's record of it, the file it is tied to (a case's contours: their image;
    an image: itself) and, for labels, the class names."""
    metadata = {SOURCE.name: source} if source is not None else {}
    if labels:
        metadata.update(labels_metadata())
    if source_path:
        metadata[SOURCE_PATH.name] = str(source_path)
    return metadata


def labels_metadata() -> dict:
    """What every labels layer of the plugin carries: the class names."""
    from napari_lvseg.labels import NAMES

    return {CLASSES.name: dict(NAMES)}


def prediction_metadata(labels, model: str | None, source_path: str, image: str, center=None,
                        source: dict | None = None) -> dict:
    """A model's labels of the image layer ``image`` (file ``source_path``; ``source``: its reader's record, so that
    File > Save writes the labels in its space). The prediction is kept as a copy, for counting edits."""
    metadata = {**labels_metadata(), PREDICTION.name: np.array(labels, copy=True), MODEL.name: model,
                SOURCE_PATH.name: str(source_path), IMAGE.name: image, CENTER.name: center}
    if source:
        metadata[SOURCE.name] = source
    return metadata


def correction_metadata(source_path: str, source: dict | None = None) -> dict:
    """Labels loaded from the annotation folder: a correction of the image file ``source_path``."""
    metadata = {SOURCE_PATH.name: str(source_path), CORRECTION.name: True}
    if source:
        metadata[SOURCE.name] = source
    return metadata


def derived_metadata(kind: str, labels: bool = False) -> dict:
    """A layer a panel made from others (``kind`` one of `DERIVED_KINDS`); ``labels``: with the class names."""
    if kind not in DERIVED_KINDS:
        raise ValueError(f"unknown derived kind {kind!r}")
    return {**(labels_metadata() if labels else {}), DERIVED.name: kind}


def what_if_metadata(of: str, image: str | None) -> dict:
    """The what-if copy of labels layer ``of`` (belonging to image layer ``image``): no file or correction tie, so
    Correct and save never sees it."""
    return {**derived_metadata(WHAT_IF, labels=True), WHAT_IF_OF.name: of, IMAGE.name: image}


def synthetic_metadata(seed: int, model: str | None, mask_layer: str) -> dict:
    """A synthetic image rendered by ``model`` with noise ``seed`` from the mask layer ``mask_layer``."""
    return {SEED.name: int(seed), MODEL.name: model, MASK_LAYER.name: mask_layer, DERIVED.name: SYNTHETIC}


# ------------------------------------------------------------------------------------------ reading

def source(layer) -> dict | None:
    """The reader's record of the file the layer came from (format, header, affine), if it has one."""
    value = metadata_of(layer).get(SOURCE.name)
    return value if isinstance(value, dict) else None


def source_path(layer) -> str | None:
    """The image file the layer is tied to (None: none)."""
    value = metadata_of(layer).get(SOURCE_PATH.name)
    return str(value) if value else None


def source_of(layer) -> str:
    """The file a layer came from: the file it is tied to, its reader's record, napari's source; else its name."""
    tied = source_path(layer)
    if tied:
        return tied
    record = source(layer)
    if record and record.get("source"):
        return str(record["source"])
    path = getattr(getattr(layer, "source", None), "path", None)
    return str(path) if path else layer.name


def prediction(layer):
    """The labels as the model predicted them (None when none was kept)."""
    return metadata_of(layer).get(PREDICTION.name)


def model(layer) -> str | None:
    """The model that made the layer (None: not a model's)."""
    return metadata_of(layer).get(MODEL.name) or None


def image_name(layer) -> str | None:
    """The name of the image layer the labels belong to."""
    return metadata_of(layer).get(IMAGE.name) or None


def what_if_of(layer) -> str | None:
    """The name of the layer a what-if copy was made from."""
    return metadata_of(layer).get(WHAT_IF_OF.name) or None


def derived(layer) -> str | None:
    """What a panel made the layer as (one of `DERIVED_KINDS`); None for a case's own image or labels."""
    return metadata_of(layer).get(DERIVED.name) or None


def is_derived(layer) -> bool:
    return derived(layer) is not None


def is_what_if(layer) -> bool:
    return derived(layer) == WHAT_IF


def is_owned(layer) -> bool:
    """Labels a panel made or loaded (a prediction, a loaded correction), which a panel may replace; labels opened
    from a file or drawn by hand are not."""
    metadata = metadata_of(layer)
    return PREDICTION.name in metadata or CORRECTION.name in metadata


def is_tied_to_file(layer) -> bool:
    """A labels layer tied to an image file: a prediction, a correction loaded from the annotation folder, or the
    labels of a case opened with its image."""
    return source_path(layer) is not None
