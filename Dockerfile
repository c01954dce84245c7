# The facegan pipeline image: every Kubeflow step (v1 and v2/Vertex) and the Beam workers
# (Dataflow --sdk_container_image, Flink/Spark --environment_config) run in it.
#
#   docker build -t gcr.io/<project>/facegan-pipeline:0.1.0 .
#   docker push gcr.io/<project>/facegan-pipeline:0.1.0
#   export FACEGAN_PIPELINE_IMAGE=gcr.io/<project>/facegan-pipeline:0.1.0   # read by pipeline/configs.py
#
# Based on the TFX image matching the pinned stack (TFX 1.15.1, Python 3.10, with TFX's container
# entrypoints for KFP v1 and v2); the project's exact versions come from the committed lock file.
FROM tensorflow/tfx:1.15.1

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1

WORKDIR /facegan

# Dependencies first (a layer that only changes with the lock file). `install`, not `sync`: the
# base image's own tools stay; every package the lock names is set to exactly its version.
COPY requirements.lock ./
RUN python -m pip install --quiet uv==0.13.9 \
 && uv pip install --system --quiet -r requirements.lock

# The project itself (no dependency resolution: the lock already installed them).
COPY setup.py ./
COPY facegan ./facegan
COPY components ./components
COPY trainer ./trainer
COPY metrics ./metrics
COPY serving ./serving
COPY pipeline ./pipeline
RUN uv pip install --system --quiet --no-deps . \
 && python -c "import facegan.components.gan_evaluator.executor, facegan.trainer.run_fn, facegan.metrics, facegan.serving.client, facegan.pipeline.configs"

# KFP v1 steps set their own command (tfx.orchestration.kubeflow.container_entrypoint) and v2 steps
# theirs (tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor); the base image's
# entrypoint is kept for anything else.
