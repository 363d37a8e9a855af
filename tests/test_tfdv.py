"""The statistics the project writes, read by real TFDV as a TFDV user would (README: Monitoring,
"Statistics for TFDV"). TFDV 1.16.1 pins TensorFlow 2.16 and Beam 2.59, so it runs in an environment
of its own that scripts/tfdv_env.sh makes once per machine; if that cannot be made, this fails.

Three nights are scored in one job: a normal one, one whose fares were tripled upstream, one whose
most frequent company was renamed. TFDV's `validate_statistics` with skew comparators, on the training
statistics against each night's statistics as `pipelines.export_statistics` writes them, and against
TFDV's own statistics of the normal night's CSV, must flag what the project's `feature_drift` flags at
the same thresholds, and TFDV's L-infinity distances must agree with the project's within 0.005.
"""

import collections
import json
import os
import subprocess
from datetime import date

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from pipelines import export_statistics, score
from pipelines.monitoring import drift
from tests.conftest import REPO, query, write_partition

RECORDS = 5000  # a night: 5x drift's minimum of values to flag
NIGHTS = {"normal": "2026-11-22", "tripled": "2026-11-23", "renamed": "2026-11-24"}
L_INFINITY = ("payment_type", "company")  # categories, L-infinity: TFDV reads their rank_histogram
JENSEN_SHANNON = ("fare",)  # a number, Jensen-Shannon: TFDV reads its STANDARD histogram
# Both read the same counts (exact: these categories hold far fewer than the sketch's 1,000 values); the
# project takes the 50 most frequent with the rest pooled, TFDV its whole rank histogram, so they may part
# only where a value outside the top 50 moves most. In the measured nights they agree to 4 decimals.
L_INFINITY_AGREEMENT = 0.005


def tfdv_python() -> str:
    made = subprocess.run(["bash", os.path.join(REPO, "scripts", "tfdv_env.sh")], capture_output=True, text=True)
    assert made.returncode == 0, f"TFDV's environment could not be made:\n{made.stderr[-3000:]}"
    return os.path.join(made.stdout.strip().splitlines()[-1], "bin", "python")


def write_nights(root) -> str:
    """The three nights' CSV files under root/trips/dt=DATE/; returns the normal night's file."""
    paths = {case: write_partition(root / "trips" / f"dt={day}", day, RECORDS)[0] for case, day in NIGHTS.items()}
    typed = pacsv.ConvertOptions(column_types={"fare": pa.float64(), "company": pa.string()})
    tripled = pacsv.read_csv(paths["tripled"], convert_options=typed)
    fare = tripled.schema.get_field_index("fare")
    pacsv.write_csv(tripled.set_column(fare, "fare", pc.multiply(tripled.column("fare"), 3.0)), paths["tripled"])
    renamed = pacsv.read_csv(paths["renamed"], convert_options=typed)
    company = renamed.column("company")
    top = collections.Counter(pc.drop_null(company).to_pylist()).most_common(1)[0][0]
    index = renamed.schema.get_field_index("company")
    moved = pc.if_else(pc.equal(company, top), "Renamed Cab Co", company)
    pacsv.write_csv(renamed.set_column(index, "company", moved), paths["renamed"])
    return paths["normal"]


def export(warehouse: str, day: str, out, *extra: str) -> str:
    argv = [f"--date={day}", f"--out={out}", f"--warehouse={warehouse}", *extra]
    assert export_statistics.main(argv) == 0
    return str(out)


def test_tfdv_flags_what_the_project_flags_and_measures_l_infinity_alike(model_root, tmp_path, capsys):
    python = tfdv_python()  # first: a machine without TFDV's environment fails here, before scoring
    normal_csv = write_nights(tmp_path)
    warehouse = str(tmp_path / "wh" / "scores.duckdb")
    scored = score.main(
        [
            f"--start_date={NIGHTS['normal']}",
            f"--end_date={NIGHTS['renamed']}",
            f"--input={tmp_path}/trips/dt={{date}}/*.csv",
            f"--model_root={model_root}",
            f"--warehouse={warehouse}",
            "--create_dataset",
            "--report_dir=none",
        ]
    )
    assert scored == 0
    out = tmp_path / "statistics"
    out.mkdir()
    day = NIGHTS["normal"]
    formats = {"normal": "tfrecord", "tripled": "text", "renamed": "binary"}  # each read by its TFDV loader
    nights = {
        case: {"path": export(warehouse, d, out / case, f"--format={formats[case]}"), "format": formats[case]}
        for case, d in NIGHTS.items()
    }
    spec = {
        "training": {"path": export(warehouse, day, out / "training.pb", "--dataset=training"), "format": "binary"},
        "nights": nights,
        "csv": normal_csv,
        "json_export": {
            "binary": export(warehouse, day, out / "all.pb", "--dataset=all"),
            "json": export(warehouse, day, out / "all.json", "--dataset=all", "--format=json"),
        },
        "l_infinity": {name: drift.DEFAULT_THRESHOLD for name in L_INFINITY},
        "jensen_shannon": {name: drift.DEFAULT_THRESHOLD for name in JENSEN_SHANNON},
    }
    assert export_statistics.main(["--date=2026-11-30", f"--warehouse={warehouse}", f"--out={out / 'x'}"]) == 2
    assert "no finished scoring run for 2026-11-30" in capsys.readouterr().err  # one line, nothing written
    assert not (out / "x").exists()
    for wrong, said in (
        ([f"--out={out / 'x'}", "--datset=training"], "unknown option --datset"),  # not dropped in silence
        ([f"--out={out}"], f"--out {out}: cannot be written"),  # a folder
        ([f"--out={out / 'x'}", "--run_id=nope"], "no scoring run nope"),
    ):
        assert export_statistics.main([f"--date={day}", f"--warehouse={warehouse}", *wrong]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("error: ") and said in line, line
    assert not (out / "x").exists()
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    check = os.path.join(REPO, "tests", "tfdv_check.py")
    checked = subprocess.run(
        [python, check, str(tmp_path / "spec.json"), str(tmp_path / "tfdv.json")],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},  # TFDV's packages, not the project's
    )
    assert checked.returncode == 0, checked.stderr[-5000:]
    found = json.loads((tmp_path / "tfdv.json").read_text())

    project = collections.defaultdict(dict)  # case -> (feature, metric) -> (value, flagged)
    rows = query(
        warehouse,
        "SELECT score_date, feature, metric, value, flagged FROM feature_drift WHERE baseline = 'training'",
    )
    by_date = {date.fromisoformat(d): case for case, d in NIGHTS.items()}
    for score_date, feature, metric, value, flagged in rows:
        project[by_date[score_date]][(feature, metric)] = (value, flagged)
    project["tfdv_own"] = project["normal"]  # TFDV's statistics of the normal night's own file

    def project_flags(case: str) -> list[str]:
        checked = [(f, "l_infinity") for f in L_INFINITY] + [(f, "jensen_shannon") for f in JENSEN_SHANNON]
        return sorted(f for f, metric in checked if project[case][(f, metric)][1])

    # The nights sit clearly on either side of the thresholds, so both must say the same.
    assert project_flags("normal") == []
    assert project_flags("tripled") == ["fare"]
    assert project_flags("renamed") == ["company"]
    for case in (*NIGHTS, "tfdv_own"):
        tfdv = found["cases"][case]
        assert tfdv["flagged"] == project_flags(case), (case, tfdv)
        for feature in L_INFINITY:
            theirs = tfdv["measured"][feature]["L_INFTY"]
            ours = project[case][(feature, "l_infinity")][0]
            assert abs(theirs - ours) <= L_INFINITY_AGREEMENT, (case, feature, theirs, ours)
        for feature in JENSEN_SHANNON:  # measured on TFDV's STANDARD histogram: present, not equal
            assert "JENSEN_SHANNON_DIVERGENCE" in tfdv["measured"][feature], (case, tfdv)
    assert found["json_parses_to_binary"] and found["json_is_message_to_json"]
    assert found["facets_html_bytes"] > 10_000  # Facets Overview's page of the training statistics
