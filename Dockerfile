# One image for the streamjob operator, the JobMaster and the workers.
#
#   docker build -t streamjob:0.1.0 .
#   operator:  streamjob-operator --peering streamjob          (what the Helm chart runs)
#   JobMaster: streamjob jobmaster --config /etc/streamjob/job.json   (what the operator runs)
#   worker:    streamjob worker --jobmaster IP:8081 --slots N          (what the operator runs)
#
# User jobs are images built FROM this one (see docs/user-guide.md, "Building the job image"):
#
#   FROM streamjob:0.1.0
#   COPY --chown=10001:10001 myjobs/ /opt/jobs/myjobs/
#   ENV PYTHONPATH=/opt/jobs
#
# Every runtime dependency is pinned in constraints.txt (the closure resolved for pyproject.toml's
# ranges), so a rebuild gives the same image. No BuildKit frontend is needed (no heredocs), so the
# image builds with the classic builder on machines without registry access. PYTHON_IMAGE may be any
# Debian-like image with python3 (>= 3.11) and its venv module: python:*-slim, or the Debian base that
# tests/containers/images.sh makes without a registry (docs/operations.md, "Building the image
# without a registry").

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/streamjob
COPY constraints.txt /tmp/constraints.txt
WORKDIR /src
# The pinned closure first (cached while only the sources change), then streamjob itself.
RUN /opt/streamjob/bin/pip install -r /tmp/constraints.txt
COPY pyproject.toml setup.py README.md ./
COPY worker ./worker
COPY operator ./operator
# From here on /src (the working directory) holds an operator/ directory that would shadow the
# standard library's operator module ("cannot import name 'eq' from 'operator'") for any Python
# started here with the working directory on sys.path: PYTHONSAFEPATH (and -P) keep it off.
ENV PYTHONSAFEPATH=1
RUN /opt/streamjob/bin/pip install --no-deps -c /tmp/constraints.txt . \
 && find /opt/streamjob -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/streamjob/bin/python -P -m compileall -q /opt/streamjob/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="streamjob" \
      org.opencontainers.image.description="streamjob operator, JobMaster and workers" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 streamjob \
 && useradd --system --uid 10001 --gid streamjob --home-dir /home/streamjob --create-home streamjob \
 && mkdir -p /opt/jobs /etc/streamjob && chown streamjob:streamjob /opt/jobs
COPY --from=build /opt/streamjob /opt/streamjob
ENV PATH=/opt/streamjob/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/opt/jobs
USER 10001:10001
WORKDIR /home/streamjob
CMD ["streamjob-operator"]
