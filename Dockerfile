# The image in which Kubeflow Pipelines / Vertex AI runs every component of the pipeline
# (runner_kubeflow.py --container-image): the locked environment and this project, installed
# at /tfx-poets so that the default schema paths (schemas/...) resolve as on the compiling
# machine. Build and push: docs/orchestrators.md.
FROM python:3.10-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # tensorflow_hub and tf.Transform need Keras 2 (tf_keras) under TF 2.16.
    TF_USE_LEGACY_KERAS=1

WORKDIR /tfx-poets

# The lock first: the layer with TFX and TensorFlow stays cached while the project's code changes.
COPY requirements.lock ./
RUN python -m pip install --no-cache-dir "$(grep -E '^uv==' requirements.lock)" \
 && uv pip sync --system --no-cache requirements.lock

COPY pyproject.toml README.md ./
COPY components ./components
COPY pipeline ./pipeline
COPY schemas ./schemas
COPY runner_local.py runner_kubeflow.py runner_airflow.py label_image.py ./
RUN uv pip install --system --no-cache --no-deps -e .

# Kubeflow's TFX launcher starts each component with its own command; this is for a manual
# run, e.g. `docker run IMAGE python runner_local.py -h`.
CMD ["python", "runner_local.py", "-h"]
