#!/bin/sh
# One image, three roles (README: Running in production):
#   web     the API, admin and console pages: gunicorn sync workers (WSGI)
#   live    websockets and agents' long polls: one uvicorn worker (ASGI) holds thousands
#   worker  the django-q2 cluster: dispatch, sweeper, notices (Warden's qcluster: its
#           processes die with it, and it finds lost dispatch tasks within seconds)
# Behind a front that routes /ws/ and /api/v1/agent/actions to live (deploy/nginx/).
set -eu
role=${1:-web}
case "$role" in
  web)
    python manage.py migrate --noinput
    exec gunicorn config.wsgi:application -c config/gunicorn.py --worker-class sync \
      --workers "${WEB_CONCURRENCY:-4}" --bind "0.0.0.0:${PORT:-8000}" --backlog 4096
    ;;
  live)
    exec gunicorn config.asgi:application --worker-class uvicorn_worker.UvicornWorker \
      --workers "${LIVE_CONCURRENCY:-1}" --bind "0.0.0.0:${PORT:-8001}" --backlog 4096
    ;;
  worker)
    exec python manage.py qcluster
    ;;
  *)
    exec "$@"
    ;;
esac
