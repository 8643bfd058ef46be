"""Governance's admin, one module per room: Django's autodiscovery imports this package,
and importing each room's module registers its pages.

base: what the rooms' pages build on (labels, read-only pages, governed pages that save
through an action with a reason), used by the other apps' admins too.
"""

from django.contrib import admin

from governance.admin import (  # noqa: F401  (each registers its pages)
    approvals,
    audit,
    decisions,
    notices,
    pauses,
    people,
    policies,
    promotions,
    schedules,
)

admin.site.site_header = "Warden"
admin.site.site_title = "Warden"
admin.site.index_title = "Operations"
