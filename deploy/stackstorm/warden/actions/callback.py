"""StackStorm action warden.callback: report to Warden (lib/warden_callback.py).

The shared secret is read here from the encrypted datastore key `secret_key`, so it never
appears in an execution's parameters or result.
"""

from __future__ import annotations

from lib.warden_callback import CallbackError, job_output, report
from st2common.runners.base_action import Action


class WardenCallback(Action):
    def run(
        self,
        callback_url: str,
        token: int,
        ok: bool,
        output: str = "",
        secret_key: str = "warden_handoff_secret",
    ) -> tuple[bool, dict | str]:
        secret = self.action_service.get_value(secret_key, local=False, decrypt=True)
        if not secret:
            return False, f"the datastore key {secret_key} is not set: nothing to sign with"
        try:
            answer = report(callback_url, token, ok, job_output([output]), secret)
        except CallbackError as error:
            return False, str(error)
        return True, answer
