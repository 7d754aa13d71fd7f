"""Networks (Attention Res-UNet, Pix2Pix) and the model store: `card` (the card schema and its validation),
`weights` (saving and safe loading) and `registry` (names, the user's model folder, registering).

Cards and the registry import without torch; the networks are imported on first use.
"""

from napari_lvseg.models.card import ModelCard, read_card
from napari_lvseg.models.registry import (
    ModelEntry,
    bundled_models_dir,
    default_model_name,
    list_models,
    load_model,
    register_model,
    resolve,
    user_models_dir,
)
from napari_lvseg.models.weights import ARCHITECTURES, build_model, save_model

_LAZY = {
    "AttentionResUNet": "napari_lvseg.models.attention_res_unet",
    "AttentionGate": "napari_lvseg.models.attention_res_unet",
    "ResidualBlock": "napari_lvseg.models.attention_res_unet",
    "SegmentationEnsemble": "napari_lvseg.models.ensemble",
    "Pix2PixGenerator": "napari_lvseg.models.pix2pix",
    "PatchDiscriminator": "napari_lvseg.models.pix2pix",
    "one_hot": "napari_lvseg.models.pix2pix",
}

__all__ = [
    "ARCHITECTURES", "ModelCard", "ModelEntry", "build_model", "bundled_models_dir", "default_model_name",
    "list_models", "load_model", "read_card", "register_model", "resolve", "save_model", "user_models_dir",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
