"""Small fixtures for the widget tests and the GUI benchmark: a tiny untrained model, phantom pairs."""

from __future__ import annotations

from pathlib import Path


def save_tiny_segmentation_model(models_dir, name: str = "tiny-seg", seed: int = 0) -> Path:
    """An untrained AttentionResUNet(base_width=4) saved as a model directory under ``models_dir``."""
    import torch

    from napari_lvseg.models.attention_res_unet import AttentionResUNet
    from napari_lvseg.models.card import ModelCard
    from napari_lvseg.models.weights import save_model

    torch.manual_seed(seed)
    net = AttentionResUNet(base_width=4)
    card = ModelCard(name=name, task="segmentation", architecture="AttentionResUNet", input_size=128,
                     untrained=True)
    return save_model(Path(models_dir) / name, net, card)


def phantom_pair_folder(root, n_pairs: int = 2, n_slices: int = 2, size: int = 128, origin: str = "real"):
    """A pair folder of phantom stacks (``origin`` as given); returns its PairFolder."""
    from napari_lvseg.data.phantom import make_phantom
    from napari_lvseg.io.pairs import PairFolder

    folder = PairFolder(root)
    for i in range(n_pairs):
        image, labels = make_phantom(n_slices=n_slices, size=size, seed=i)
        folder.add(image, labels, origin=origin, source=f"phantom_{i}.tif", name=f"phantom_{i}")
    return folder


class StepGate:
    """A generator function whose steps wait for the test, so that a test can press Stop without racing the worker.

    ``StepGate(function)`` is called like ``function``: its first step waits until ``connected`` is set (the test
    has connected its handlers to the worker), every later step until ``pressed`` is set (the test pressed Stop).
    ``steps`` counts the steps made. A wait gives up after 10 s, so a broken test fails instead of hanging.
    """

    def __init__(self, function):
        import threading

        self.function, self.steps = function, 0
        self.connected, self.pressed = threading.Event(), threading.Event()

    def stop(self, how: str, widget, viewer) -> None:
        """Stop ``widget``'s run the way a user does, ``how`` = "second press" (its run button) or "closing the
        panel" (the dock's close button), then let the worker go on to its next step."""
        if how == "second press":
            widget.run()
        elif widget.parent() is not None:
            viewer.window.remove_dock_widget(widget)
        self.pressed.set()

    def __call__(self, *args, **kwargs):
        self.connected.wait(10)
        for item in self.function(*args, **kwargs):
            self.steps += 1
            yield item
            self.pressed.wait(10)
