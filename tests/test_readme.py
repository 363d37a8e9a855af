"""The README is the contract: its queries, its module table and its options match the code.

The queries themselves run against both warehouses in test_warehouses.py."""

import glob
import os
import re
import subprocess
import sys

from tests.conftest import REPO, analyst_example_queries, readme_example_queries


def readme() -> str:
    return open(os.path.join(REPO, "README.md")).read()


def test_duckdb_and_bigquery_example_queries_are_the_same_set():
    analysts = readme().split("## For analysts", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sql\n", analysts)
    duckdb = readme_example_queries()
    assert len(duckdb) == len(blocks), "every DuckDB example query starts with '-- name: what it answers'"
    assert list(duckdb) == list(analyst_example_queries())
    numbers = "one two three four five six seven eight nine ten eleven twelve".split()
    [said] = re.findall(r"DuckDB example queries, the same (\w+)", analysts)
    assert said == numbers[len(duckdb) - 1], f"the README says {said} DuckDB example queries; it lists {len(duckdb)}"


def test_every_module_is_in_the_readme_and_every_module_it_names_exists():
    text = readme()
    modules = sorted(
        os.path.relpath(p, REPO)
        for pattern in ("pipelines/*.py", "pipelines/*/*.py", "models/*.py")
        for p in glob.glob(os.path.join(REPO, pattern))
        if not p.endswith("__init__.py")
    )
    missing = [m for m in modules if os.path.basename(m).removesuffix(".py") not in text]
    assert not missing, f"modules the README never names: {missing}"
    for named in set(re.findall(r"`((?:pipelines|models|schemas|transforms|scripts)/[\w/]+\.\w+)`", text)):
        assert os.path.exists(os.path.join(REPO, named)), f"the README names {named}, which does not exist"


def test_help_lists_the_pipeline_options():
    out = subprocess.run(
        [sys.executable, "-m", "pipelines.score", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": REPO},
        timeout=120,
    )
    assert out.returncode == 0
    for option in ("--date", "--input", "--warehouse", "--model_root", "--model_version", "--summary_json"):
        assert option in out.stdout
