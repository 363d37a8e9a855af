"""Train the tipper model: tf.Transform analysis on Beam, Keras training, export a new version.

    python -m pipelines.train [--input data/chicago_taxi/trips.csv] [--model_root artifacts/models]

Records go through the same extract and validate stages as scoring (the label required, the key
not). tf.Transform analyses the training split once; the transform graph is exported inside the
model, so scoring applies exactly what training computed.

Exit codes: 0 a new version exported; 2 bad configuration (no input, a bad date range).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from models import quiet
from pipelines.options import CommandOptions, DataOptions, TrainingOptions, parse

if TYPE_CHECKING:
    from pipelines.training import TrainingResult


def run(argv: list[str] | None = None) -> TrainingResult:
    """Parse and check the options, then train: --help and a bad value answer before TensorFlow loads."""
    options = parse(
        argv, __doc__, DataOptions, TrainingOptions, prog="python -m pipelines.train", what="what to train on"
    )
    quiet.configure(options.view_as(CommandOptions).verbose)
    quiet.tensorflow()  # first, so that its start-up notices are filtered
    from pipelines import training

    return training.train(options)


def main(argv: list[str]) -> int:
    from pipelines.bigquery_source import BigQueryInputError
    from pipelines.extract import InputNotFoundError

    try:
        run(argv)
    except (InputNotFoundError, BigQueryInputError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
