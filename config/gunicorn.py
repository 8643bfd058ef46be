"""gunicorn's settings for the roles that take agents' metrics (the web role, and the demo's
one server): `gunicorn -c config/gunicorn.py ...`.

Each worker gets ready before it takes a request: its first would otherwise import every
view and load the approved severity model, about half a second, while the requests a busy
fleet sends it queue behind (a 10,000-host fleet's first second waited up to 1 s).
"""

from typing import Any


def post_worker_init(worker: Any) -> None:
    from config.warm import warm_up

    warm_up()
