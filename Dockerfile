# Production image: gunicorn with uvicorn workers (HTTP and websockets).
# Run the worker from the same image: `python manage.py qcluster`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WARDEN_ENV=production \
    WARDEN_DATA_DIR=/data \
    STATIC_ROOT=/app/static

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN WARDEN_ENV=embedded WARDEN_DATA_DIR=/tmp/build python manage.py collectstatic --noinput \
    && rm -rf /tmp/build \
    && useradd --system --home /data warden \
    && mkdir -p /data && chown warden /data

USER warden
EXPOSE 8000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn config.asgi:application -k uvicorn_worker.UvicornWorker -w ${WEB_CONCURRENCY:-2} -b 0.0.0.0:8000"]
