"""A use case's sample, ready to score: its training file and a night's input written by its sample maker
(schemas.Sample), and a model trained when the use case has none yet. Prints the night's date.

    python scripts/prepare_sample.py [--use_case NAME] [--date D] [--records N] [other options]

Options it does not know are the scorer's (scripts/run_sample.sh passes its own arguments to both) and
are left alone. Files that exist are kept: the training file, and a night's folder that has input (so
--records counts only when the night is first written). The night goes where the use case's own
scoring input is (the scorer's --input, if given, is not followed).
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib
import os
import sys
from datetime import date

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from pipelines.defaults import DEFAULT_MODEL_ROOT, DEFAULT_USE_CASE  # noqa: E402
from schemas import UseCaseError, load_use_case  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    p.add_argument("--use_case", default=DEFAULT_USE_CASE, help="A bundled use case, or a module declaring one.")
    p.add_argument("--date", type=date.fromisoformat, default=None, help="Default: the use case's sample night.")
    p.add_argument("--records", type=int, default=None, help="Records in the night (default: the maker's).")
    p.add_argument("--model_root", default=DEFAULT_MODEL_ROOT)
    return p


def prepare(argv: list[str]) -> str:
    args, _ = parser().parse_known_args(argv)
    use_case = load_use_case(args.use_case)
    if use_case.sample is None or not use_case.training_input or not use_case.scoring_input:
        raise UseCaseError(
            f"--use_case {args.use_case} declares no sample maker and default inputs: nothing to prepare"
        )
    maker = importlib.import_module(use_case.sample.module)
    day = args.date or date.fromisoformat(use_case.sample.night)
    night = os.path.dirname(use_case.scoring_input.format(date=day.isoformat()))
    if not glob.glob(os.path.join(night, "*")):
        maker.write_night(day, night, args.records)
    if not os.path.exists(use_case.training_input):
        maker.write_training(use_case.training_input)
    from models import registry

    if not registry.list_versions(args.model_root, use_case.model_name):
        from pipelines import train

        with contextlib.redirect_stdout(sys.stderr):  # what was trained, shown; stdout is the date alone
            train.run([f"--use_case={args.use_case}", f"--model_root={args.model_root}"])
    return day.isoformat()


def main(argv: list[str] | None = None) -> int:
    try:
        print(prepare(sys.argv[1:] if argv is None else argv))
    except (UseCaseError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
