"""One date-time format everywhere people read (admin lists and pages, forms' read-only
fields): '2026-12-06 14:54:19 UTC', in the server's TIME_ZONE and naming it. Localization
is always on in Django 5, so these replace the locale's 'Dec. 6, 2026, 2:54 p.m.'."""

DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"
TIME_FORMAT = "H:i:s"
