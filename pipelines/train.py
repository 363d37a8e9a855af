"""Train a use case's model: tf.Transform analysis on Beam, Keras training, export a new version.

    python -m pipelines.train [--use_case NAME] [--input FILE] [--model_root artifacts/models]

Records go through the same extract and validate steps as scoring (the label required, the key
not). tf.Transform analyses the training split once; the transform graph is exported inside the
model, so scoring applies exactly what training computed.

Exit codes: 0 a new version exported; 2 bad configuration (no input, a bad date range).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from pipelines import arguments

if TYPE_CHECKING:
    from pipelines.training import TrainingResult

PROG = "python -m pipelines.train"
WHAT = "what to train on"


def run(argv: list[str] | None = None) -> TrainingResult:
    """Check the options, then train: --help and a bad value are answered before Beam, TensorFlow or
    tf.Transform is imported."""
    declare = (arguments.data_arguments, arguments.training_arguments)
    arguments.parser(__doc__, *declare, prog=PROG, what=WHAT).parse_known_args(argv)
    from apache_beam.options.pipeline_options import PipelineOptions

    from models import quiet
    from pipelines.options import (
        CommandOptions,  # its import registers the pipelines' options with Beam
        DataOptions,
    )
    from schemas import load_use_case

    options = PipelineOptions(argv)  # checked above: not parsed a second time for errors
    use_case = load_use_case(options.view_as(DataOptions).use_case)  # a wrong name answered before TensorFlow
    quiet.configure(options.view_as(CommandOptions).verbose)
    quiet.tensorflow()  # first, so that its start-up notices are filtered
    from pipelines import training

    return training.train(options, use_case)


def main(argv: list[str]) -> int:
    try:
        run(argv)
    except SystemExit as answered:  # --help (0) or a bad argument (2), said already
        return answered.code
    except (ValueError, FileNotFoundError) as e:
        from pipelines.sources import InputNotFoundError  # loaded by now: run got past the options

        if isinstance(e, FileNotFoundError) and not isinstance(e, InputNotFoundError):
            raise
        print(f"error: {e}", file=sys.stderr)  # no input, a bad date range, a bad BigQuery input
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
