"""The pure rules: values in, an answer out; no database, no clock, no queue.

engine.py decides (on facts.py's values, with checks.py and the reason lines of
reasons.py), dispatch.py asks the same rules again where an action starts, defaults.py
holds the seed's default policies, ceilings.py the global ceilings, command_floor.py the
commands no runbook may run, autonomy.py the autonomy ladder, labels.py the words people
read. The import contract "pure-rules" keeps models and the audit log out.
"""
