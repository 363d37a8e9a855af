"""The commands as a person meets them: help for people, answers before heavy imports, quiet output,
a new warehouse only on purpose, and refusals that say why.

How fast the commands answer is measured by scripts/startup.py, not here: these tests check what makes
them fast (nothing heavy imported before the answer), which holds on any machine."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pyarrow.csv as pacsv
import pytest

from models import quiet
from pipelines import export_statistics, report, score
from pipelines.arguments import data_arguments, parser, scoring_arguments, training_arguments
from pipelines.parsing import ShowDefaults
from tests.conftest import REPO, write_partition

DAY = "2026-11-23"
HEAVY = ("tensorflow", "tensorflow_transform", "tfx_bsl", "matplotlib", "duckdb")


def command(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`python -X importtime -m ...` from the repository, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**(env or os.environ), "PYTHONPATH": REPO},
        timeout=300,
    )


def imported(stderr: str) -> set[str]:
    return set(re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s+([\w.]+)$", stderr, re.M))


def said(stderr: str) -> list[str]:
    """stderr less -X importtime's lines."""
    return [line for line in stderr.splitlines() if not line.startswith("import time:")]


def test_help_is_in_sections_in_the_order_a_user_needs_them_with_every_default():
    scoring = parser(score.__doc__, data_arguments, scoring_arguments, prog=score.PROG, what=score.WHAT)
    assert scoring.format_usage().startswith("usage: python -m pipelines.score")
    titles = [g.title for g in scoring._action_groups if g._group_actions]
    assert titles == [
        "options",
        "what to score",
        "model",
        "warehouse",
        "quality gates (README: Quality gates; a night failing one is refused, exit code 3)",
        "monitoring (README: Monitoring)",
        "sources' details",
        "running",
    ]
    [first] = [g._group_actions for g in scoring._action_groups if g.title == "what to score"]
    assert [a.dest for a in first[:4]] == ["use_case", "date", "start_date", "end_date"]  # whose, then when
    assert "--use_case" in scoring.format_help()
    training = parser(
        "train", data_arguments, training_arguments, prog="python -m pipelines.train", what="what to train on"
    )
    for built in (scoring, training, report.parser(), export_statistics.parser()):
        formatter = ShowDefaults(built.prog)
        for action in built._actions:
            if action.option_strings and action.default is not False and not action.required and action.dest != "help":
                assert "default" in formatter._get_help_string(action), f"{built.prog} {action.option_strings[0]}"


@pytest.mark.parametrize(
    "args, code, answer, before_beam",
    [
        (["pipelines.score", "--help"], 0, None, True),
        (["pipelines.train", "--help"], 0, None, True),
        (["pipelines.report", "--help"], 0, None, True),
        (["pipelines.export_statistics", "--help"], 0, None, True),
        (
            ["pipelines.score", "--date", "2026-13-01"],
            2,
            "error: argument --date: '2026-13-01' is not a real date",
            True,
        ),
        (["pipelines.score", "--accelerator", "xpu"], 2, "invalid choice: 'xpu'", True),
        (["pipelines.train", "--epochs", "many"], 2, "invalid int value: 'many'", True),
        (["pipelines.report", "--date", "2026-02-30"], 2, "'2026-02-30' is not a real date", True),
        (["pipelines.export_statistics", "--date", DAY, "--out=x", "--format=csv"], 2, "invalid choice: 'csv'", True),
        (["pipelines.score", "--date", DAY, "--max_rejected_fraction=2"], 2, "--max_rejected_fraction must be", False),
    ],
    ids=[
        "score-help",
        "train-help",
        "report-help",
        "export-help",
        "bad-date",
        "bad-choice",
        "train-bad-int",
        "report-date",
        "export-format",
        "bad-gate",
    ],
)
def test_a_command_answers_before_anything_heavy_is_imported(args, code, answer, before_beam):
    """Help and a bad value are answered before Beam itself loads; what needs Beam's options (a gate's
    limits) before anything heavier."""
    out = command(*args)
    assert out.returncode == code, out.stderr[-2000:]
    heavy = set(HEAVY) | ({"apache_beam"} if before_beam else set())
    assert not imported(out.stderr) & heavy, sorted(imported(out.stderr) & heavy)
    if answer is None:
        assert out.stdout.startswith(f"usage: python -m {args[0]}")
    else:
        [line] = said(out.stderr)  # one line, no usage dump, no traceback
        assert line.startswith("error: ") and answer in line


def test_a_missing_input_is_answered_before_anything_heavy_is_imported(model_root, tmp_path):
    out = command(
        "pipelines.score",
        f"--date={DAY}",
        f"--input={tmp_path}/none/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--warehouse={tmp_path}/w.duckdb",
    )
    assert out.returncode == 2 and said(out.stderr) == [
        f"error: no input files for date {DAY}: nothing matches {tmp_path}/none/dt={DAY}/*.csv"
    ]
    assert not imported(out.stderr) & set(HEAVY)
    assert not (tmp_path / "w.duckdb").exists()


def test_a_run_prints_what_matters_and_verbose_brings_back_the_rest(model_root, tmp_path):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 300)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    args = [
        "pipelines.score",
        f"--date={DAY}",
        f"--input={tmp_path}/trips/dt={{date}}/*.csv",
        f"--model_root={model_root}",
        f"--warehouse={tmp_path}/scores.duckdb",  # a new file in an existing folder: made, and said
        "--progress_seconds=0",
    ]
    out = command(*args, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert said(out.stderr) == []  # no CUDA notices, no TensorFlow warnings, no per-bundle Beam warnings
    lines = out.stdout.splitlines()
    assert lines[0] == f"new warehouse: {tmp_path}/scores.duckdb, its tables and views created"
    assert lines[1].startswith(f"{DAY}: input 300 = scored 300")
    again = command(*args, "--verbose", env=env)
    assert again.returncode == 0 and not again.stdout.startswith("new warehouse")  # it exists now
    assert re.search(r"^[IWE]\d{4} ", "\n".join(said(again.stderr)), re.M), "TensorFlow's own log lines"


def test_a_typo_in_the_warehouse_path_starts_nothing_unless_asked(model_root, tmp_path, capsys):
    write_partition(tmp_path / "trips" / f"dt={DAY}", DAY, 20)
    base = [f"--date={DAY}", f"--input={tmp_path}/trips/dt={{date}}/*.csv", f"--model_root={model_root}"]
    typo = tmp_path / "no" / "such" / "scores.duckdb"
    assert score.main([*base, f"--warehouse={typo}"]) == 2
    assert capsys.readouterr().err == (
        f"error: --warehouse {typo}: there is no folder {typo.parent}; check the path (scoring into a new "
        "warehouse there needs --create_dataset)\n"
    )
    assert not (tmp_path / "no").exists()
    assert score.main([*base, f"--warehouse={typo}", "--create_dataset", "--progress_seconds=0"]) == 0
    assert capsys.readouterr().out.startswith(f"new warehouse: {typo}, its tables and views created\n")


def test_a_refusal_names_its_reasons_and_a_file_in_another_format(model_root, tmp_path, capsys):
    [clean] = write_partition(tmp_path / "csv", DAY, 200)
    folder = tmp_path / "in" / f"dt={DAY}"
    folder.mkdir(parents=True)
    (folder / "trips.json").write_bytes(open(clean, "rb").read())  # CSV, named as JSON
    base = [f"--date={DAY}", f"--model_root={model_root}", f"--warehouse={tmp_path}/w.duckdb", "--progress_seconds=0"]
    assert score.main([*base, f"--input={folder}/*.json"]) == 3
    [line] = capsys.readouterr().err.splitlines()
    assert "rejected: malformed_json 201" in line
    assert "1 file named as another format holds CSV: pass --input_format csv or rename it" in line
    assert score.main([*base, f"--input={folder}/*.json", "--input_format=csv"]) == 0

    capsys.readouterr()
    (folder / "trips.json").unlink()
    records = pacsv.read_csv(clean).to_pylist()  # JSON lines, named as CSV: the first line taken for a header
    (folder / "trips.csv").write_text("".join(json.dumps(r, default=str) + "\n" for r in records))
    assert score.main([*base, f"--input={folder}/*.csv", "--allow_shrink"]) == 3
    [line] = capsys.readouterr().err.splitlines()
    assert "rejected: missing_column 199" in line and "holds JSON: pass --input_format json or rename it" in line


def test_only_lines_known_to_say_nothing_are_filtered(capfd, monkeypatch):
    monkeypatch.delenv(quiet.VERBOSE_ENV, raising=False)
    with quiet.muffled():  # as C++ writes them: to file descriptor 2, not through sys.stderr
        os.write(2, b"E0000 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool which ...\n")
        os.write(2, b"E0000 some_kernel.cc:1] a real error\n")
    assert capfd.readouterr().err == "E0000 some_kernel.cc:1] a real error\n"
    monkeypatch.setenv(quiet.VERBOSE_ENV, "1")
    with quiet.muffled():
        os.write(2, b"E0000 node_def_util.cc:682] NodeDef mentions attribute use_unbounded_threadpool\n")
    assert "NodeDef" in capfd.readouterr().err
