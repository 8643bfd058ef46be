# Production image, one for every role (deploy/entrypoint.sh; README: Running in production):
#   web     gunicorn sync workers: the API, admin and pages (the default)
#   live    one uvicorn worker: websockets and agents' long polls
#   worker  the django-q2 cluster
# with nginx in front routing between web and live (deploy/nginx/, deploy/compose.yaml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WARDEN_ENV=production \
    WARDEN_DATA_DIR=/data \
    STATIC_ROOT=/app/static

WORKDIR /app
COPY requirements.txt .
# requirements.txt installs the agent package from ./agent (-e ./agent).
COPY agent/ agent/
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# Production mode, so the manifest the production storage reads at run time is written;
# the secret and hosts here exist only for this build step.
RUN SECRET_KEY=collectstatic-only-build-step-placeholder-key ALLOWED_HOSTS=build \
    WARDEN_AUDIT_KEY=collectstatic-only-build-step-placeholder-key \
    WARDEN_DATA_DIR=/tmp/build python manage.py collectstatic --noinput \
    && rm -rf /tmp/build \
    && useradd --system --home /data warden \
    && mkdir -p /data && chown warden /data \
    && chmod +x /app/deploy/entrypoint.sh

USER warden
EXPOSE 8000 8001
# The first of ALLOWED_HOSTS as the Host header: a bare 127.0.0.1 would be refused.
HEALTHCHECK CMD python -c "import os, urllib.request; host = os.environ['ALLOWED_HOSTS'].split(',')[0].strip().lstrip('.'); urllib.request.urlopen(urllib.request.Request('http://127.0.0.1:8000/healthz', headers={'Host': host}))"
ENTRYPOINT ["/app/deploy/entrypoint.sh"]
CMD ["web"]
