"""The text triage model: reads a ticket's title and description, suggests a category and
a runbook (or "a person picks"), and finds similar resolved incidents."""
