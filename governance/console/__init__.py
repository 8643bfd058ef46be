"""The live console: the supervisors' screen of the fleet, pending approvals, open tickets
and the audit stream.

panels.py reads what the page shows (read-only queries); views.py serves the page, its
panels and its controls (the admin's actions behind the same permissions); consumers.py and
routing.py carry the websocket; live.py publishes committed audit events to every web
process (a subscriber of the audit log).
"""
