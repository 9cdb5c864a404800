# syntax=docker/dockerfile:1.7
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
# Every runtime dependency is pinned below (the closure resolved for pyproject.toml's ranges), so a
# rebuild gives the same image.

ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/streamjob
COPY <<'PINS' /tmp/constraints.txt
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiohttp-retry==2.9.1
aiosignal==1.4.0
annotated-types==0.8.0
attrs==26.1.0
boto3==1.44.5
botocore==1.44.5
certifi==2026.10.18
charset-normalizer==3.5.2
click==8.5.1
durationpy==0.11
frozenlist==1.8.0
idna==3.20
iso8601==2.1.0
jmespath==1.1.0
jsonpatch==1.47
jsonpointer==3.12
kopf==1.45.2
kubernetes==37.0.1
msgpack==1.2.4
multidict==7.2.1
oauthlib==4.0.1
prometheus-client==0.26.0
propcache==0.5.4
pydantic==2.14.3
pydantic-core==2.50.4
python-dateutil==2.9.0.post0
python-json-logger==4.2.0
pyyaml==6.0.3
requests==2.34.2
requests-oauthlib==2.0.0
rocksdict==0.3.29
s3transfer==0.19.3
six==1.17.0
typing-extensions==4.16.0
typing-inspection==0.4.5
urllib3==2.8.0
uvloop==0.23.0
websocket-client==1.9.2
yarl==1.25.1
PINS
WORKDIR /src
# The pinned closure first (cached while only the sources change), then streamjob itself.
RUN /opt/streamjob/bin/pip install -r /tmp/constraints.txt
COPY pyproject.toml setup.py README.md ./
COPY worker ./worker
COPY operator ./operator
RUN /opt/streamjob/bin/pip install --no-deps -c /tmp/constraints.txt . \
 && find /opt/streamjob -name '__pycache__' -prune -exec rm -rf {} + \
 && /opt/streamjob/bin/python -m compileall -q /opt/streamjob/lib

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
