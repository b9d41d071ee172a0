# robustai in a container: the `robustai` command (train, evaluate, summarize, users, dashboard).
#
#   docker build -t robustai .
#   docker run --rm -v "$PWD/experiments:/home/robustai/experiments" robustai train trainer.epochs=1
#
# The base image is pinned by exact tag. To pin it bit for bit, give its digest as well:
#   docker build --build-arg PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> .
# (`docker buildx imagetools inspect python:3.11.13-slim-bookworm` prints the digest.)
#
# PyTorch comes from TORCH_INDEX: CPU-only wheels by default (small; run anywhere). For NVIDIA
# GPUs, build with CUDA wheels and run with `--gpus all` (the wheels bring the CUDA libraries; the
# host needs the NVIDIA driver and container toolkit, not a CUDA base image):
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t robustai:cuda .
#
# No secrets are baked in (.dockerignore keeps keys, .env files and access stores out of the build
# context). They come in at run time, through the environment or volumes:
#   -e ROBUSTAI_SIGNING_KEY              name only: docker copies the value from your environment
#   -v <volume>:/home/robustai/.robustai -e ROBUSTAI_ACCESS_DB=/home/robustai/.robustai/access.db
#                                        the users store of `robustai users` and `robustai dashboard`

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# ---- build: robustai's wheel, installed with its dependencies into the virtualenv /opt/venv ----
FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
# PyTorch first, from TORCH_INDEX, in its own layer: source changes do not download it again.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --index-url "${TORCH_INDEX}" \
        "torch>=2.6" "torchvision>=0.21"
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY configs/ configs/
COPY robustai/ robustai/
# The wheel carries the configs (as robustai/configs/): the image needs no source tree.
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
 && /opt/venv/bin/pip install --no-cache-dir /tmp/wheels/robustai-*.whl

# ---- runtime: the base image, the virtualenv and an unprivileged user (no sources, no wheels) ----
FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
# The folders that volumes are mounted on exist and belong to the user (a new named volume takes
# over their owner, so it is writable).
RUN useradd --create-home --uid 1000 --user-group --shell /bin/bash robustai \
 && install -d -o robustai -g robustai -m 0755 \
        /home/robustai/experiments /home/robustai/data \
 && install -d -o robustai -g robustai -m 0700 /home/robustai/.robustai
COPY --from=build /opt/venv /opt/venv
USER robustai
# Runs write experiments/ (and read data/) relative to the working directory: mount them here.
WORKDIR /home/robustai
# The dashboard's port. It binds 127.0.0.1 by default; in a container run it with --host 0.0.0.0
# and publish the port on the host's loopback: -p 127.0.0.1:6006:6006 (see README, Container).
# No HEALTHCHECK: most containers run one `robustai train` and exit; for a long-running dashboard
# pass --health-cmd to `docker run` (each probe is a line in the dashboard's access log).
EXPOSE 6006
ENTRYPOINT ["robustai"]
CMD ["--help"]
