"""Pauses: the switches that stop automation for the fleet, a category or a host, at once.

actions.py pauses and resumes (people's actions), says which pauses apply where, and
records pauses that lapsed at their end time. Work a pause held is released by
remediation when it hears the pause ended (remediation/subscriptions.py).
"""
