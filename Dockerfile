# One image for every part of bluegreen: model server, controller and router.
#   docker build -t ghcr.io/bluegreen/bluegreen:0.1.0 .
#   docker run ghcr.io/bluegreen/bluegreen:0.1.0                                  # model server
#   docker run ghcr.io/bluegreen/bluegreen:0.1.0 serve controller --host 0.0.0.0 --port 8080
# BASE_IMAGE: scripts/build-image passes a local Debian base (no registry); users build against
# the public one.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /app
# README.md* : copied when present (pyproject names it as the readme); the glob keeps COPY valid.
COPY pyproject.toml README.md* ./
# The dependencies in a layer of their own, rebuilt only when pyproject.toml changes: a code
# change then rebuilds the small layer below, not the gigabyte of wheels.
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
       > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt
COPY model_server/ model_server/
COPY controller/ controller/
COPY router/ router/
COPY plumbing/ plumbing/
COPY bluegreen/ bluegreen/
RUN pip install --no-cache-dir --no-deps . \
    && rm -rf /app/build /app/*.egg-info

RUN groupadd --system --gid 10001 bluegreen \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --no-create-home \
       --shell /usr/sbin/nologin bluegreen

# The chart mounts an emptyDir at /tmp (root filesystem read-only); models download there.
ENV HOME=/tmp \
    TMPDIR=/tmp

USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["bluegreen"]
CMD ["serve", "model", "--host", "0.0.0.0", "--port", "8080"]
