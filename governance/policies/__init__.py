"""Policies: saving one as a new audited version (actions.py), with shadow mode's agreement
checked before a policy may enforce.
"""
