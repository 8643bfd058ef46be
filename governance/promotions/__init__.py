"""Autonomy earned and lost.

records.py reads a policy's or pattern's track record, proposals.py proposes raising
autonomy when the record earns it, actions.py holds people's answers (accept or dismiss a
proposal, acknowledge or flag a post-action review), demotions.py lowers autonomy at once
after a failure or poor feedback, reviews.py opens the reviews of actions Warden took by
itself.
"""
