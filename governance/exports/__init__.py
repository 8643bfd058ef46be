"""The audit trail taken away: filtered, streamed as CSV, JSON or NDJSON, each export ending
with Warden's signed proof (records.py), with the filters people give (filters.py).
"""
