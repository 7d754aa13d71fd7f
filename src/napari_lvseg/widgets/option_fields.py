"""The Train panel's fields, built from the training options' schema (engine/schema.py), and how the panels name an
option in an error.

Each option the schema shows in the panel gets a Qt widget from its declared type: a combo box for choices or
suggestions, a check box where it declares one, a spin box for a number (its range; None shown as its ``none_text``
at the minimum, 0), a line edit for text. Qt widgets rather than magicgui's: magicgui's integer spin box has no
special-value text ("one pass", "task default"), which the panel shows for None.
"""

from __future__ import annotations

import math

from qtpy.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

ACTIONS = {"resume": "Resume"}   # what an error may refer to besides options: the panel's buttons
INT_MAX = 2 ** 31 - 1


def train_schema() -> tuple:
    from napari_lvseg.engine.options import TrainOptions
    from napari_lvseg.engine.schema import schema

    return schema(TrainOptions)


def panel_name(name: str) -> str:
    """An option as the panels name it in errors: its label in quotes (a button by its text)."""
    label = next((opt.label for opt in train_schema() if opt.name == name), None)
    return f'"{label}"' if label is not None else ACTIONS.get(name, name)


def make_field(opt):
    """The Qt widget of the option ``opt`` (an `Option`), at its panel default, with its tooltip."""
    if opt.check:
        widget = QCheckBox(opt.check)
    elif opt.choices or opt.suggestions:
        widget = QComboBox()
        widget.addItems([str(v) for v in opt.choices or opt.suggestions])
    elif opt.kind in ("int", "float"):
        widget = QSpinBox() if opt.kind == "int" else QDoubleSpinBox()
        if opt.kind == "float" and opt.step:
            widget.setSingleStep(opt.step)
            widget.setDecimals(max(2, round(-math.log10(opt.step)) + 2))
        low = 0 if opt.none_text else (opt.low or 0)
        high = opt.high if opt.high is not None else (INT_MAX if opt.kind == "int" else 1e9)
        widget.setRange(low, high)
        widget.setSpecialValueText(opt.none_text)
    else:
        widget = QLineEdit()
    default = opt.panel_default() if callable(opt.panel_default) else opt.panel_default
    set_field(opt, widget, opt.default if default is None else default)
    widget.setToolTip(opt.tip or opt.help)
    return widget


def field_value(opt, widget):
    """The option's value in ``widget`` (None where the panel shows its ``none_text``)."""
    if isinstance(widget, QCheckBox):
        return widget.isChecked() if opt.kind == "bool" else int(widget.isChecked())
    if isinstance(widget, QComboBox):
        return widget.currentText()
    if isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        value = widget.value()
        return None if opt.none_text and value == widget.minimum() else value
    return widget.text().strip() or None


def set_field(opt, widget, value) -> None:
    if isinstance(widget, QCheckBox):
        widget.setChecked(bool(value))
    elif isinstance(widget, QComboBox):
        widget.setCurrentText(str(value))
    elif isinstance(widget, (QSpinBox, QDoubleSpinBox)):
        widget.setValue(widget.minimum() if value is None else value)
    else:
        widget.setText("" if value is None else str(value))
