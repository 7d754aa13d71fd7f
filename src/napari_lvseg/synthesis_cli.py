"""``lvseg`` subcommands of the synthesis engine (Pix2Pix): synthesize, synthesize-dataset, evaluate-synthesis."""

from __future__ import annotations


def add_parsers(sub, add_model) -> None:
    """Register the synthesis subcommands on the ``lvseg`` sub-parser collection."""
