# The nightly scoring job's image for CPU workers, and the Flex Template's launcher.
#
# One image for both, so the launcher builds the job with exactly the code and the versions the
# workers run, and nothing is pip-installed when a job starts. The Beam SDK tag must equal the
# apache-beam pin in setup.py (tests/test_deploy.py checks it).
#
#   docker build -t REGION-docker.pkg.dev/PROJECT/scoring/worker:VERSION .
FROM gcr.io/dataflow-templates-base/python311-template-launcher-base:flex_templates_base_image_release_20240628_RC00 AS launcher
FROM apache/beam_python3.11_sdk:2.77.0

WORKDIR /template
COPY setup.py ./
COPY schemas schemas
COPY transforms transforms
COPY models models
COPY pipelines pipelines
RUN pip install --no-cache-dir . && pip check \
 && python -c "import pipelines.scoring, apache_beam; assert apache_beam.__version__ == '2.77.0'"

# The Flex Template launcher runs this file with the template's parameters as --name=value.
COPY --from=launcher /opt/google/dataflow/python_template_launcher /opt/google/dataflow/python_template_launcher
ENV FLEX_TEMPLATE_PYTHON_PY_FILE=/template/pipelines/score.py
# Everything is installed above: the launcher must not install anything at launch time.
ENV PIP_NO_DEPS=True

ENTRYPOINT ["/opt/apache/beam/boot"]
