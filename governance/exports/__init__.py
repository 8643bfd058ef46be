"""The audit trail taken away: filtered, streamed as CSV, JSON or NDJSON, and verified
offline against WARDEN_AUDIT_KEY (records.py), with the filters people give (filters.py).
"""
