"""`volna report`: languages, formats, progress, where the report is, one-line errors.

The command is tested with a stand-in for report building (``volna.report.build``)
that returns the hand-made report of ``test_report_render``, so that what the command
does -- read, build per language, write, say where -- is tested on its own; one test
runs the real thing on the bundled study once report building exists.
"""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import polars as pl
import pytest

from test_report_render import sample_report
from volna import example_path
from volna.examples.generate_okrussians import write_example

QUESTIONNAIRE = Path(example_path("okrussians", "questionnaire.yaml"))


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_example(tmp_path_factory.mktemp("okrussians") / "data.csv", n=150, seed=3)[0]


@pytest.fixture
def fake_build(monkeypatch):
    """Report building replaced by the hand-made report; records how it was called."""
    calls = []

    def build_report(questionnaire, frame, config, *, lang, progress=None):
        assert isinstance(frame, pl.DataFrame) and frame.height == 150
        calls.append({"lang": lang, "config": config, "q": questionnaire.id})
        if progress is not None:
            for done, what in enumerate(["methodology", "topline", "banners"], start=1):
                progress(what, done, 3)
        return sample_report(lang)

    module = types.ModuleType("volna.report.build")
    module.build_report = build_report
    monkeypatch.setitem(sys.modules, "volna.report.build", module)
    return calls


def _volna(monkeypatch, capsys, *args) -> tuple[int, str, str]:
    """Run the command in this process (so the stand-in is used), as `volna` would."""
    from volna import cli

    monkeypatch.setattr(sys, "argv", ["volna", *map(str, args)])
    with pytest.raises(SystemExit) as stop:
        cli.main()
    code = stop.value.code if isinstance(stop.value.code, int) else int(bool(stop.value.code))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_every_language_and_format(monkeypatch, capsys, tmp_path, data, fake_build):
    out = tmp_path / "report"
    code, stdout, stderr = _volna(
        monkeypatch, capsys, "report", QUESTIONNAIRE, data, "--lang", "all", "-o", out
    )
    assert code == 0, stderr
    assert [c["lang"] for c in fake_build] == ["ru", "en"]
    for lang in ("ru", "en"):
        for fmt in ("html", "xlsx", "md"):
            assert (out / f"report.{lang}.{fmt}").stat().st_size > 1000
        assert (out / "charts" / f"figure1-destination.{lang}.svg").exists()
        assert f"wrote {out / f'report.{lang}.html'}" in stdout
    assert "150 respondents" in stdout and f"report in {out}/" in stdout
    assert stdout.count("SYNTHETIC DATA") == 1, "the notice once, not once per language"
    assert "charts" not in stdout


def test_report_one_language_one_format(monkeypatch, capsys, tmp_path, data, fake_build):
    out = tmp_path / "r"
    code, _, stderr = _volna(
        monkeypatch, capsys, "report", QUESTIONNAIRE, data, "-o", out, "--format", "html"
    )
    assert code == 0, stderr
    assert [c["lang"] for c in fake_build] == ["ru"]  # the questionnaire's first language
    assert sorted(p.name for p in out.iterdir()) == ["report.ru.html"]
    code, _, stderr = _volna(
        monkeypatch,
        capsys,
        "report",
        QUESTIONNAIRE,
        data,
        "-o",
        out,
        *("--lang", "en"),
        *("--format", "md,xlsx"),
    )
    assert code == 0, stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "charts",
        "report.en.md",
        "report.en.xlsx",
        "report.ru.html",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lang", "de"], "--lang de: the questionnaire has labels in ru, en (or say all)"),
        (["--format", "html,pdf"], "report format 'pdf' is not one of html, xlsx, md"),
    ],
)
def test_report_option_errors_are_one_line(
    monkeypatch, capsys, tmp_path, data, fake_build, args, message
):
    code, _, stderr = _volna(
        monkeypatch, capsys, "report", QUESTIONNAIRE, data, "-o", tmp_path / "r", *args
    )
    assert code == 2
    assert stderr.strip().startswith("volna: error:") and message in stderr
    assert len(stderr.strip().splitlines()) == 1
    assert not fake_build, "nothing is built when an option is wrong"
    assert not (tmp_path / "r").exists()


def test_report_missing_data_is_one_line(monkeypatch, capsys, tmp_path, fake_build):
    code, _, stderr = _volna(
        monkeypatch, capsys, "report", QUESTIONNAIRE, tmp_path / "nope.csv", "-o", tmp_path
    )
    assert code == 2 and "nope.csv" in stderr and len(stderr.strip().splitlines()) == 1


def test_report_output_that_is_a_file(monkeypatch, capsys, tmp_path, data, fake_build):
    taken = tmp_path / "taken"
    taken.write_text("x")
    code, _, stderr = _volna(monkeypatch, capsys, "report", QUESTIONNAIRE, data, "-o", taken)
    assert code == 2 and "is a file, not a folder" in stderr


def test_report_of_the_bundled_study(tmp_path):
    """The real pipeline as `make demo` runs it, once report building exists."""
    pytest.importorskip("volna.report.build", reason="volna.report.build not written yet")
    data = write_example(tmp_path / "data.csv", n=2000, seed=1)[0]
    config = QUESTIONNAIRE.with_name("report.yaml")
    args = [sys.executable, "-m", "volna.cli", "report", QUESTIONNAIRE, data]
    args += ["--lang", "all", "-o", tmp_path / "report"]
    if config.exists():
        args += ["--config", config]
    done = subprocess.run(list(map(str, args)), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for lang in ("ru", "en"):
        for fmt in ("html", "xlsx", "md"):
            assert (tmp_path / "report" / f"report.{lang}.{fmt}").exists()
    assert "2000 respondents" in done.stdout
    assert "synthetic" in done.stdout.lower()
