"""Which of the locustfile's user classes run: ``--api`` picks the API's users (from the
command line at start, or from the web UI's form for a run started there) and
``--interrupt-users`` the interrupting user's fixed count. Only the master (or a single
local process) chooses: it is the one that tells the workers which users to spawn."""

from __future__ import annotations

from typing import Any

__all__ = ["select_user_classes"]


def select_user_classes(environment: Any, api: str, interrupt_users: int) -> None:
    """Keep the user classes of ``api`` (``mixed``: every API's) and the interrupting user only
    when ``--interrupt-users`` asks for it. Classes named on the command line win."""
    options = environment.parsed_options
    if options is not None and getattr(options, "user_classes", None):
        return
    everything = getattr(environment, "streamproof_all_user_classes", None)
    if everything is None:
        everything = list(environment.user_classes)
        environment.streamproof_all_user_classes = everything
    keep = []
    for cls in everything:
        cls_api = getattr(cls, "api", None)
        if getattr(cls, "interrupt", False):
            if interrupt_users > 0:
                cls.fixed_count = interrupt_users
                keep.append(cls)
        elif cls_api is None or api == "mixed" or cls_api in (api, "mixed"):
            keep.append(cls)
    if keep:
        environment.user_classes[:] = keep
