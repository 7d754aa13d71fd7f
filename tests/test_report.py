"""`lvseg report` and the report page on a real EMIDEC case (skipped where the data are absent)."""

from __future__ import annotations

import csv

import pytest

from napari_lvseg.analysis.report import SEGMENT_COLUMNS
from napari_lvseg.cli import main


def read_rows(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_report_with_given_labels_png_and_csv(emidec_dir, tmp_path, capsys):
    case = emidec_dir / "Case_P010"
    out = tmp_path / "out" / "report.png"
    assert main(["report", str(case), "-o", str(out), "--labels", str(case), "--insertion", "120"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 50_000
    rows = read_rows(out.with_suffix(".csv"))
    assert set(SEGMENT_COLUMNS) <= set(rows[0])
    assert [r["segment"] for r in rows] == [str(s) for s in range(1, 18)] + ["total"]
    total = rows[-1]
    assert total["note"] == "pixel size unknown" and total["myocardium_g"] == ""   # EMIDEC crops: 1 mm placeholders
    assert float(total["infarct_pct"]) > 0 and total["insertion_source"] == "user angle"
    assert all(f"{m}_infarct_pct" in total for m in ("2-SD", "3-SD", "5-SD", "FWHM"))
    assert rows[16]["myocardium_px"] == "0"   # no cavity-less cap slice in EMIDEC: 17 not imaged
    printed = capsys.readouterr().out
    assert "Case_P010" in printed and "pixel size unknown" in printed


def test_report_segments_the_case_and_writes_pdf_with_grams(emidec_dir, tmp_path, capsys):
    case = emidec_dir / "Case_P010"
    out = tmp_path / "report.pdf"
    assert main(["report", str(case), "-o", str(out), "--spacing", "8", "1.4", "1.4", "--threads", "1"]) == 0
    assert out.read_bytes()[:5] == b"%PDF-"
    rows = read_rows(out.with_suffix(".csv"))
    assert rows[0]["model"].startswith("model ")
    assert float(rows[-1]["myocardium_g"]) == pytest.approx(
        int(rows[-1]["myocardium_px"]) * 8 * 1.4 * 1.4 * 1.05e-3, rel=1e-4)


@pytest.mark.parametrize("args, message", [
    (["-o", "{tmp}/r.txt"], "written as .pdf or .png"),
    (["-o", "{case}/r.png"], "lies inside the input folder"),
    (["-o", "{tmp}/r.png", "--levels", "bbm", "--labels", "{case}"], "3 levels given"),
])
def test_bad_input_one_line_exit_2(emidec_dir, tmp_path, capsys, args, message):
    case = emidec_dir / "Case_P010"
    args = [a.format(tmp=tmp_path, case=case) for a in args]
    assert main(["report", str(case), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_missing_case_exit_2(tmp_path, capsys):
    assert main(["report", str(tmp_path / "none.nii.gz"), "-o", str(tmp_path / "r.png")]) == 2
    assert "no such file" in capsys.readouterr().err
