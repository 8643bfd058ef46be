"""`python -m warden_agent.runbooks ...` is `warden-runbook ...`."""

import sys

from .cli import main

sys.exit(main())
