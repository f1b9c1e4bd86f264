# syntax=docker/dockerfile:1

# Build stage: turn the project into wheels, its own and one for every dependency, so that the
# runtime stage installs from local files without a compiler or a package index. The full
# python image has the compilers a dependency without a binary wheel would need.
FROM python:3.11 AS builder

WORKDIR /build
COPY pyproject.toml README.md ./
COPY lightweight_charts_pro_backend ./lightweight_charts_pro_backend
# The wheel ships the migrations too, for `charts-backend db upgrade`.
COPY migrations ./migrations
RUN python -m pip wheel --no-cache-dir --wheel-dir wheels .

# Runtime stage: the slim image, the installed wheels and nothing else from the build.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ENVIRONMENT=production

# /data is the one directory the service may write to, for an SQLite file on a mounted volume
# (a new named volume takes over the directory's owner).
RUN groupadd --gid 1000 app \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app \
    && install --directory --owner=1000 --group=1000 /data

# The wheels are bind-mounted, not copied, so they never become a layer of this image.
# setuptools and wheel are build tools the service never imports.
RUN --mount=type=bind,from=builder,source=/build/wheels,target=/tmp/wheels \
    python -m pip install --no-cache-dir --no-index --find-links=/tmp/wheels \
       /tmp/wheels/lightweight_charts_pro_backend-*.whl \
    && python -m pip uninstall --yes setuptools wheel

WORKDIR /app
# Files that live beside the package rather than in it are copied here, owned by root and so
# read-only for the service (tests/deploy checks that each one present in the repo is listed):
COPY gunicorn.conf.py ./
COPY alembic.ini ./
COPY migrations ./migrations

# Numeric, so Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 1000:1000
EXPOSE 8000

# python:3.11-slim has no curl or wget; the standard library makes the request instead.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --start-interval=1s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status != 200)"]

# gunicorn with the repository's gunicorn.conf.py: several workers, their metrics summed, JSON
# logs from the master too. WEB_CONCURRENCY sets the number of workers.
CMD ["gunicorn", "-c", "/app/gunicorn.conf.py", "lightweight_charts_pro_backend.app_production:create_app()"]
