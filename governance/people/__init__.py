"""People and their access: access changes audited with a reason, service users and API
tokens issued and revoked (actions.py); access.py reads a person's or a group's access.
"""
