"""A use case: everything the platform needs to know about one team's data and model, declared once.

The platform (pipelines/, the warehouses, monitoring, the scripts) names no column of its own: it reads
the key, the event time, the features and their kinds, the label, the preprocessing, the model builder,
the training and monitoring settings and the words people read from the `UseCase` chosen at run time
(`--use_case NAME`), and hands that object to every step, so it reaches Beam's workers with the graph
rather than by environment. A bundled use case is one module per top-level folder (`schemas/NAME.py`
declares it, `transforms/NAME.py` preprocesses, `scripts/make_*.py` makes its sample data); one outside
this repository is any importable module
that defines `USE_CASE` (`--use_case my_team.loans`). Declaring one imports neither TensorFlow nor
tf.Transform: the preprocessing and the model builder are named as "module:function" and imported where
they run, so `--help` and option errors stay fast.
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schemas.core import ColumnType, InputSchema, Role

TRANSFORMED_SUFFIX = "_xf"  # a model input's name: its feature's name and this


class FeatureKind(str, enum.Enum):
    """How a feature enters the model (README: Bringing your own data and model)."""

    NUMERIC = "numeric"  # z-scored
    BUCKETIZED = "bucketized"  # quantile buckets, embedded
    VOCABULARY = "vocabulary"  # most frequent values to ids, embedded (strings, or ids such as tracts)
    INTEGER_CATEGORY = "integer_category"  # an integer with a known range of ids, embedded


@dataclass(frozen=True)
class Feature:
    """A model input. `sources` names the raw columns it is computed from, where that is not the column
    of its own name (a derived feature): monitoring and explanations map a model input back through it."""

    name: str
    kind: FeatureKind
    buckets: int = 10  # BUCKETIZED: quantile buckets
    vocabulary_size: int = 1000  # VOCABULARY: most frequent values kept
    oov_buckets: int = 1  # VOCABULARY: ids for values outside it (and missing ones)
    ids: int = 0  # INTEGER_CATEGORY: ids 0 .. ids-1; others map to 0
    sources: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind is FeatureKind.INTEGER_CATEGORY and self.ids < 1:
            raise ValueError(f"feature {self.name}: an integer category needs its number of ids")

    @property
    def transformed(self) -> str:
        return f"{self.name}{TRANSFORMED_SUFFIX}"

    @property
    def raw_columns(self) -> tuple[str, ...]:
        return self.sources or (self.name,)


# The column types each kind of feature takes.
_KIND_TYPES = {
    FeatureKind.NUMERIC: (ColumnType.INT64, ColumnType.FLOAT64),
    FeatureKind.BUCKETIZED: (ColumnType.INT64, ColumnType.FLOAT64),
    FeatureKind.VOCABULARY: (ColumnType.STRING, ColumnType.INT64),
    FeatureKind.INTEGER_CATEGORY: (ColumnType.INT64,),
}


class ThresholdRule(str, enum.Enum):
    """How training picks the decision threshold on the evaluation split."""

    MAX_F1 = "max_f1"
    PRECISION = "precision"  # the lowest threshold whose precision reaches `target`
    RECALL = "recall"  # the highest threshold whose recall reaches `target`
    COST = "cost"  # the lowest expected cost, a false positive costing `target` false negatives


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 8
    batch_size: int = 256
    class_weights: tuple[float, float] | None = None  # (negative, positive); None: unweighted
    threshold_rule: ThresholdRule = ThresholdRule.MAX_F1
    threshold_target: float | None = None  # PRECISION, RECALL: the share; COST: the cost ratio

    def __post_init__(self) -> None:
        """Refused when declared, not hours into a training run."""
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"training needs at least one epoch and one record a batch, not {self}")
        weights = self.class_weights
        if weights is not None and (len(weights) != 2 or not all(math.isfinite(w) and w > 0 for w in weights)):
            raise ValueError(f"class_weights are two positive weights (negative, positive), not {self.class_weights}")
        target = self.threshold_target
        if self.threshold_rule in (ThresholdRule.PRECISION, ThresholdRule.RECALL):
            if target is None or not (math.isfinite(target) and 0 < target <= 1):
                raise ValueError(
                    f"threshold rule {self.threshold_rule.value} needs a target share in (0, 1], not {target}"
                )
        elif self.threshold_rule is ThresholdRule.COST:
            if target is None or not (math.isfinite(target) and target > 0):
                raise ValueError(f"threshold rule cost needs a positive cost ratio as its target, not {target}")
        elif target is not None:
            raise ValueError(f"threshold rule {self.threshold_rule.value} takes no target (given {target})")


@dataclass(frozen=True)
class DriftSettings:
    """Thresholds per feature and metric where the defaults do not suit ({"amount": {"psi": 0.4}}),
    features measured but never flagged (with why), and the fewest values on either side to flag."""

    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)
    not_flagged: dict[str, str] = field(default_factory=dict)
    min_values: int = 1000


@dataclass(frozen=True)
class Words:
    """What people read: in the summary, the report and the tables' descriptions."""

    record: str = "record"
    records: str = "records"
    positive: str = "positive"  # what the label's 1 means, as a noun: "default", "late arrival"
    # Old names of the views' generic columns, kept beside them for one release so that existing queries
    # keep working: {"records": "applications"} adds a column `applications` equal to `records`.
    view_aliases: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Sample:
    """A use case's demo data, made by a module of its own (its "sample maker"): the walk-through
    (`scripts/prepare_sample.py`), the conformance test and the benchmark call the module's
    `write_training(path, records=None) -> int` (a labelled file for `pipelines.train`; the records
    written) and `write_night(day, folder, records=None, rows_per_file=1_000_000) -> list[str]` (one
    night's input files in `folder`; None: as many as the maker's data has for `day`), and score
    `night`, a date its data has. A maker raises ValueError for what it cannot make (a date its data
    lacks), said in one line."""

    module: str
    night: str  # ISO date


@dataclass(frozen=True)
class UseCase:
    name: str
    input: InputSchema
    features: tuple[Feature, ...]
    label: str  # the 0/1 output of the preprocessing the model learns (the label column, or derived)
    preprocessing: str  # "module:function", the tf.Transform preprocessing_fn
    model_name: str  # the default --model_name
    training_input: str | None = None  # the default --input of training (a file, or a pattern with {date})
    scoring_input: str | None = None  # the default --input of scoring
    model_builder: str = "models.model:build_model"
    training: TrainingSettings = TrainingSettings()
    drift: DriftSettings = DriftSettings()
    words: Words = Words()
    sample: Sample | None = None
    timezone: str = "UTC"  # where its nights are dated: the nightly schedule's time zone (scripts/deploy.py)
    # Whether a missing label value is itself an outcome the preprocessing reads (flights: no arrival delay
    # means the flight never arrived, which counts as late). Otherwise a record without its label is
    # rejected at training, as one that cannot be learnt from.
    missing_label_is_outcome: bool = False

    def __post_init__(self) -> None:
        for feature in self.features:
            for name in feature.raw_columns:
                self._check_source(feature, name)

    def _check_source(self, feature: Feature, name: str) -> None:
        """A model input reads feature columns only (the others never reach the preprocessing, and are
        not described by monitoring), of a type its kind can take."""
        try:
            column = self.input.column(name)
        except KeyError:
            raise ValueError(f"use case {self.name}: feature {feature.name} reads unknown column {name}") from None
        if column.role is not Role.FEATURE:
            raise ValueError(
                f"use case {self.name}: feature {feature.name} reads {name}, a {column.role.value} column; "
                "model inputs read feature columns only"
            )
        if feature.sources:
            return  # a derived feature's preprocessing decides what it makes of its sources
        allowed = _KIND_TYPES[feature.kind]
        if column.type not in allowed:
            kinds = ", ".join(t.value for t in allowed)
            raise ValueError(
                f"use case {self.name}: feature {name} is {feature.kind.value}, which takes {kinds}, "
                f"not {column.type.value}"
            )

    def of_kind(self, *kinds: FeatureKind) -> tuple[Feature, ...]:
        return tuple(f for f in self.features if f.kind in kinds)

    def preprocessing_fn(self) -> Callable[[dict], dict]:
        return _named(self.preprocessing)

    def build_model(self) -> Callable[..., Any]:
        return _named(self.model_builder)


def _named(reference: str) -> Any:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


# The bundled use cases: each name, and the module declaring it. A use case outside this repository is
# named by its module instead, and needs no entry here.
BUNDLED = {"taxi": "schemas.taxi", "flights": "schemas.flights"}


class UseCaseError(ValueError):
    """A use case that cannot be loaded: said in one line, exit code 2."""


def load_use_case(name: str) -> UseCase:
    """A bundled use case by its name, or any importable module that defines USE_CASE. A use case is
    known by what `--use_case` names (its bundled name, or its module's path): that is the name its model
    versions and its warehouse record, and the one a refusal tells to use."""
    module_name = BUNDLED.get(name, name)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if e.name is None or not module_name.startswith(e.name):  # the module is there; one of its imports is not
            raise UseCaseError(f"--use_case {name}: module {module_name} cannot be imported: {e}") from None
        known = ", ".join(sorted(BUNDLED))
        raise UseCaseError(f"--use_case {name}: no such use case (bundled: {known}; or a module on the path)") from None
    declared = getattr(module, "USE_CASE", None)
    if not isinstance(declared, UseCase):
        raise UseCaseError(f"--use_case {name}: module {module_name} defines no USE_CASE (a schemas.UseCase)")
    return declared if declared.name == name else dataclasses.replace(declared, name=name)
