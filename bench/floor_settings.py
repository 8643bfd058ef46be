"""Settings of the floor of bench/ (bench/floor_urls.py): Warden's own, one URLconf changed."""

from config.settings import *  # noqa: F403

ROOT_URLCONF = "bench.floor_urls"
