"""napari-lvseg: LV segmentation and Pix2Pix synthesis for LGE cardiac MRI.

The core (models, data, engine, inference, synthesis, metrics) imports without Qt or napari;
heavy libraries (torch, monai, napari) are imported lazily where they are used.
"""

__version__ = "0.1.0"
