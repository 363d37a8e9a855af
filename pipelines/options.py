"""The commands' options as Beam `PipelineOptions`, so that they travel to remote runners.

Each is declared once, in `pipelines.arguments` (which imports nothing heavy, so that --help and a
bad value are answered before Beam loads); these classes hand Beam the same declarations. Beam parses
every PipelineOptions subclass with one parser: `DataOptions` holds what both pipelines take, the
others what only one of them takes. Anything not declared (--runner, --direct_num_workers, ...) goes
to Beam unchanged.
"""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from pipelines import arguments


class DataOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        arguments.data_arguments(parser)

    def input_or(self, default: str | None, use_case: str) -> str:
        """--input, or the use case's default input for this command (`default`)."""
        if self.input:
            return self.input
        if not default:
            raise ValueError(f"use case {use_case} declares no default input here: give --input")
        return default

    def model_name_or(self, default: str) -> str:
        """--model_name, or the use case's (`default`)."""
        return self.model_name or default


class ScoringOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        arguments.scoring_arguments(parser)


class TrainingOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        arguments.training_arguments(parser)


class CommandOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser) -> None:
        arguments.command_arguments(parser)
