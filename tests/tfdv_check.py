"""Run by tests/test_tfdv.py with the TFDV environment's Python (scripts/tfdv_env.sh), never by pytest:
real TFDV reads the statistics the project wrote, as a TFDV user would, and says what it found.

    python tests/tfdv_check.py SPEC.json RESULT.json

SPEC names the training statistics and each night's statistics by case, each file with its format
(read with the TFDV loader for that format), the normal night's CSV (TFDV computes its own statistics of
it: case `tfdv_own`), a binary and a JSON export of the same message, and the skew comparators'
thresholds. RESULT holds, per case, the features TFDV's skew comparators flagged and every skew
measurement TFDV made, and whether the JSON export parses to the binary's message and is what
`MessageToJson` writes of it.
"""

import json
import sys

import tensorflow_data_validation as tfdv
from google.protobuf import json_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2

SKEW = {
    anomalies_pb2.AnomalyInfo.COMPARATOR_L_INFTY_HIGH,
    anomalies_pb2.AnomalyInfo.COMPARATOR_JENSEN_SHANNON_DIVERGENCE_HIGH,
}


LOADERS = {
    "binary": tfdv.load_stats_binary,  # TFX StatisticsGen's FeatureStats.pb
    "tfrecord": tfdv.load_statistics,  # what generate_statistics_from_* writes
    "text": tfdv.load_statistics,  # tries a TFRecord first, then the text format
}


def load(file: dict) -> statistics_pb2.DatasetFeatureStatisticsList:
    return LOADERS[file["format"]](file["path"])


def skew_of(training, serving, schema) -> dict:
    anomalies = tfdv.validate_statistics(training, schema, serving_statistics=serving)
    flagged = sorted(
        name for name, info in anomalies.anomaly_info.items() if any(reason.type in SKEW for reason in info.reason)
    )
    measured = {}
    for info in anomalies.drift_skew_info:
        feature = ".".join(info.path.step)
        for m in info.skew_measurements:
            measured.setdefault(feature, {})[anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type)] = m.value
    return {"flagged": flagged, "measured": measured}


def main(spec_path: str, result_path: str) -> None:
    spec = json.load(open(spec_path))
    training = load(spec["training"])
    schema = tfdv.infer_schema(training)
    for name, threshold in spec["l_infinity"].items():
        tfdv.get_feature(schema, name).skew_comparator.infinity_norm.threshold = threshold
    for name, threshold in spec["jensen_shannon"].items():
        tfdv.get_feature(schema, name).skew_comparator.jensen_shannon_divergence.threshold = threshold
    cases = {case: skew_of(training, load(file), schema) for case, file in spec["nights"].items()}
    own = tfdv.generate_statistics_from_csv(spec["csv"])
    cases["tfdv_own"] = skew_of(training, own, schema)

    binary = tfdv.load_stats_binary(spec["json_export"]["binary"])
    text = open(spec["json_export"]["json"]).read()
    parsed = json_format.Parse(text, statistics_pb2.DatasetFeatureStatisticsList())
    json.dump(
        {
            "cases": cases,
            "json_parses_to_binary": parsed == binary,
            "json_is_message_to_json": json.loads(text) == json.loads(json_format.MessageToJson(binary)),
            "facets_html_bytes": len(tfdv.utils.display_util.get_statistics_html(training)),
        },
        open(result_path, "w"),
        indent=1,
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
