# Mnemo in a container. With compose.yaml: `docker compose up -d`. By hand:
#   docker build -t mnemo .
#   docker run -d --env-file .env -e DATABASE_URL=sqlite:////data/mnemo.db \
#     -v mnemo-data:/data --name mnemo mnemo
# (-e after --env-file: .env's DATABASE_URL, a path relative to the working directory, would
# otherwise win over the ENV below.) The image has no sqlite3 command; back up with
#   docker exec mnemo python -c "import sqlite3; sqlite3.connect('/data/mnemo.db').backup(sqlite3.connect('/data/backup.db'))"
# tests/process/test_packaging.py runs this file's install and command steps in a fresh virtual
# environment (no container engine there); keep them plain RUN/COPY/ENV/CMD lines.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# The pinned dependencies first: this layer is rebuilt only when requirements.txt changes.
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY pyproject.toml README.md LICENSE ./
COPY bot ./bot
COPY cogs ./cogs
COPY storage ./storage
RUN pip install --no-deps .

# An unprivileged user; the database (and its backups) live in the /data volume.
RUN useradd --system --uid 10001 --no-create-home --home-dir /data mnemo \
    && mkdir -p /data && chown mnemo /data
USER mnemo
WORKDIR /data
ENV DATABASE_URL=sqlite:////data/mnemo.db
VOLUME ["/data"]

# `mnemo health`: settings, database, model server, and a heartbeat under 90 s old.
HEALTHCHECK --interval=60s --timeout=20s --start-period=90s --retries=3 CMD ["mnemo", "health"]
# SIGTERM (docker stop) finishes replies in flight and exits 0 well within Docker's 10 s.
CMD ["python", "-m", "bot"]
