"""One options schema drives every front end: `lvseg train`'s flags and the Train panel's fields are built from the
`TrainOptions` fields' `Option`s, and a bad option is named as each front end names it (no rewriting of text)."""

from __future__ import annotations

import inspect
from dataclasses import make_dataclass

import pytest

pytest.importorskip("napari")

from qtpy.QtWidgets import QCheckBox, QFormLayout  # noqa: E402

from napari_lvseg import cli  # noqa: E402
from napari_lvseg.engine import options as options_module  # noqa: E402
from napari_lvseg.engine.options import TrainOptions  # noqa: E402
from napari_lvseg.engine.process import error_line, read_error  # noqa: E402
from napari_lvseg.engine.schema import OptionError, option, schema  # noqa: E402
from napari_lvseg.widgets import _common  # noqa: E402
from napari_lvseg.widgets.train import TrainLogic, TrainWidget  # noqa: E402


def train_parser():
    return cli.build_parser()._subparsers._group_actions[0].choices["train"]


def cli_flags() -> set:
    return {flag for action in train_parser()._actions for flag in action.option_strings}


def form_label(widget, field) -> str:
    form = widget.findChild(QFormLayout)   # the panel's form
    label = form.labelForField(field)
    return label.text() if label is not None else ""


def test_every_option_is_a_flag_and_every_panel_option_a_field_of_the_train_panel(make_napari_viewer):
    options = schema(TrainOptions)
    assert {opt.flag for opt in options} <= cli_flags()
    widget = TrainWidget(make_napari_viewer())
    panel = {opt.name: opt for opt in options if opt.panel}
    assert set(widget.fields) == set(panel) and len(panel) < len(options)   # some are CLI-only
    for name, opt in panel.items():
        field = widget.fields[name]
        assert widget.isAncestorOf(field)
        assert field.toolTip() == (opt.tip or opt.help) or name == "mix"   # the data table's ratio column
        if name not in ("data", "mix", "init", "out"):   # the panel's own rows; the others are built from the schema
            assert getattr(widget, name) is field
            assert (field.text() if isinstance(field, QCheckBox) else form_label(widget, field)) == opt.label
    # as before the schema: the panel's starting values and special texts
    assert widget.samples_per_epoch.specialValueText() == "one pass" and widget.lr.decimals() == 6
    assert [widget.device.itemText(i) for i in range(widget.device.count())] == ["auto", "cpu", "cuda"]


def test_an_option_added_to_the_schema_reaches_both_front_ends(monkeypatch, make_napari_viewer, tmp_path):
    warmup = option(0, low=0, high=100, group="training run", panel=True, label="warm-up epochs",
                    help="epochs of rising learning rate", tip="Warm-up epochs.")
    extended = make_dataclass("Extended", [("warmup", "int", warmup)], bases=(TrainOptions,))
    monkeypatch.setattr(options_module, "TrainOptions", extended)
    assert "--warmup" in cli_flags() and "epochs of rising learning rate" in train_parser().format_help()
    args = cli.build_parser().parse_args(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
                                          "--warmup", "3"])
    options = cli.options_from_args(args)
    assert isinstance(options, extended) and options.warmup == 3 and options.epochs == 10

    widget = TrainWidget(make_napari_viewer())
    assert form_label(widget, widget.warmup) == "warm-up epochs" and widget.warmup.toolTip() == "Warm-up epochs."
    widget.warmup.setValue(5)
    widget.add_source(tmp_path)
    widget.run_folder.setText(str(tmp_path / "run"))
    assert widget.current_options().warmup == 5
    with pytest.raises(OptionError) as caught:
        extended(data=[str(tmp_path)], warmup=101).validate()
    assert str(caught.value) == "--warmup: must be 0..100, got 101"
    assert _common.error_text(caught.value) == '"warm-up epochs": must be 0..100, got 101'


def test_a_bad_value_is_named_by_each_front_end_in_its_own_words(tmp_path, capsys):
    assert cli.main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--val-fraction", "1.5"]) == 2
    assert capsys.readouterr().err == "lvseg train: error: --val-fraction: must be in [0, 1), got 1.5\n"
    with pytest.raises(OptionError) as caught:
        TrainLogic.build_options("segmentation", [(tmp_path, None)], tmp_path / "r", val_fraction=1.5)
    assert (caught.value.option, caught.value.problem) == ("val_fraction", "must be in [0, 1), got 1.5")
    assert _common.error_text(caught.value) == '"validation fraction": must be in [0, 1), got 1.5'
    # from the training process (the panel's runs): the error comes back as data, and the panel words it
    assert _common.error_text(read_error(error_line(caught.value))) == _common.error_text(caught.value)
    # a problem naming another option: each front end names both
    with pytest.raises(OptionError) as caught:
        TrainOptions(data=["x"], batch_size=32, samples_per_epoch=8).check_new_run()
    assert str(caught.value).startswith("--batch-size: 32 is larger than --samples-per-epoch 8: ")
    assert _common.error_text(caught.value).startswith('"batch size": 32 is larger than "samples per epoch" 8: ')
    assert "re.sub" not in inspect.getsource(_common)   # no flag rewriting left
