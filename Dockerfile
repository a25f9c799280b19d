# syntax=docker/dockerfile:1
#
# One image for both processes: `stockade controller` (runs as the non-root
# user below; the Deployment sets runAsUser 10001) and `stockade agent`
# (the DaemonSet runs it as root with only NET_ADMIN and NET_RAW).
#
#   docker build -t ghcr.io/stockade/stockade:0.1.0 .
#
# Stage 1 builds wheels for Stockade and every dependency (some need a C
# compiler); stage 2 installs them without a compiler, pip cache or sources.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the wheel is built from (see also .dockerignore).
COPY pyproject.toml README.md ./
COPY stockade ./stockade
COPY controller ./controller
COPY nodeagent ./nodeagent
RUN pip wheel --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The agent's dataplane tools, from Debian: iptables (both the nft and the
# legacy backend, chosen at run time by --iptables-backend), ipset, and
# conntrack (to flush entries of connections a new policy denies).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables ipset conntrack \
 && rm -rf /var/lib/apt/lists/*
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels stockade \
 && stockade --version
RUN groupadd --system --gid 10001 stockade \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
    --home-dir /nonexistent --shell /usr/sbin/nologin stockade
USER 10001:10001
EXPOSE 7700 7701 7702 7703
ENTRYPOINT ["stockade"]
CMD ["--help"]
