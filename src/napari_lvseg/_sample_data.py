"""napari sample data: the procedural LGE phantom (deterministic, no download)."""

from __future__ import annotations


def make_phantom_sample() -> list[tuple]:
    """Phantom LGE stack (8 slices, 128 x 128) with its true labels, as napari layer data."""
    from napari_lvseg import layer_meta
    from napari_lvseg._reader import labels_layer_kwargs
    from napari_lvseg.data.phantom import make_phantom

    image, labels = make_phantom(seed=0)
    return [
        (image, {"name": "LGE phantom", "colormap": "gray"}, "image"),
        (labels, {"name": "LGE phantom truth", "opacity": 0.5, "visible": False,
                  "metadata": {**layer_meta.labels_metadata(), layer_meta.IMAGE.name: "LGE phantom"},
                  **labels_layer_kwargs()}, "labels"),
    ]
