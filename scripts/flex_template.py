"""The Dataflow Flex Template's metadata, generated from the pipeline's own options.

    python scripts/flex_template.py [--out templates/score_metadata.json]

Every parameter is one of `pipelines.score`'s options, with its help text and a validation regex,
so the template can never offer a parameter the pipeline does not take, or miss one it does.
`tests/test_dataflow.py` checks that the committed file is what this script writes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pipelines.bigquery import DATASET, IDENTIFIER, PROJECT, SCHEME  # noqa: E402
from pipelines.options import DataOptions, ScoringOptions  # noqa: E402

DEFAULT_OUT = "templates/score_metadata.json"
# Regexes for free-form options; choices, integers and flags get theirs from their definitions, and
# BigQuery names the same patterns the pipeline checks them with.
REGEXES = {
    "date": r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
    "start_date": r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
    "end_date": r"^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])$",
    "timezone": r"^[A-Za-z_]+(/[A-Za-z0-9_+-]+)*$",
    "input": r"^(gs://|bq://|/).+$",
    "warehouse": rf"^({re.escape(SCHEME)}{PROJECT}\.{DATASET}|/.+\.duckdb)$",
    "staging_dir": r"^(gs://|/).+$",
    "report_dir": r"^(gs://.+|none)$",
    "model_root": r"^(gs://|/).+$",
    "model_name": r"^[A-Za-z0-9_.-]+$",
    "use_case": r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$",  # a name, or a module's dotted path
    "model_version": r"^(latest|[0-9]+)$",
    "challenger_version": r"^[0-9]+$",
    "summary_json": r"^(gs://|/).+\.json$",
    "date_column": IDENTIFIER.pattern,
    "bq_project": rf"^{PROJECT}$",
    "bq_temp_dataset": rf"^{DATASET}$",
    "dataset_location": r"^[A-Za-z0-9-]+$",
    "stale_after": r"^[0-9]+(\.[0-9]+)?[smh]?$",
    "publish_timeout": r"^[0-9]+(\.[0-9]+)?[smh]?$",
    "accept_gate_failures": r"^.*\S.*$",
}


def pipeline_options() -> list[argparse.Action]:
    parser = argparse.ArgumentParser()
    DataOptions._add_argparse_args(parser)
    ScoringOptions._add_argparse_args(parser)
    return [a for a in parser._actions if a.dest != "help"]


def regex_for(action: argparse.Action) -> str:
    if action.dest in REGEXES:
        return REGEXES[action.dest]
    if action.choices:
        return "^(" + "|".join(re.escape(str(c)) for c in action.choices) + ")$"
    if action.nargs == 0:  # a flag
        return "^(true|false)$"
    if action.type is int:
        return r"^[0-9]+$"
    if action.type is float:
        return r"^[0-9]+(\.[0-9]+)?$"
    raise ValueError(f"option --{action.dest} needs a validation regex in scripts/flex_template.py")


def metadata() -> dict:
    parameters = []
    for action in pipeline_options():
        parameters.append(
            {
                "name": action.dest,
                "label": action.dest.replace("_", " ").capitalize(),
                "helpText": " ".join((action.help or "").split()),
                "isOptional": True,  # every option has a default; --date defaults to yesterday
                "regexes": [regex_for(action)],
            }
        )
    return {
        "name": "Nightly batch scoring",
        "description": "Scores a date's records with the exported model (tf.Transform inside) through "
        "RunInference and publishes the predictions to the warehouse, atomically.",
        "parameters": parameters,
    }


def render() -> str:
    """The metadata file's exact text (what is committed and what the template is built from)."""
    return json.dumps(metadata(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(render())
    print(f"wrote {args.out}: {len(metadata()['parameters'])} parameters")


if __name__ == "__main__":
    main()
