"""Deciding: the database read into the pure engine's values, the engine asked, its answer
stored.

facts.py turns rows into the engine's facts, stats.py reads what the database knows at
decision time, deciding.py decides a ticket and stores the decision, dispatch.py asks the
rules again where an action starts, simulation.py replays history under a policy.
"""
