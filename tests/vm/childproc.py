"""Run a function in a forked child of the test process, set up first, and get its result.

The child inherits everything imported (pyflaxdev, numpy), so nothing is
exec'd: it can drop to another uid that could not read the project's venv.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any


def in_child(fn: Callable[[], Any], setup: Callable[[], None] = lambda: None) -> Any:
    """Fork, run ``setup`` then ``fn`` in the child, return what ``fn`` returned.

    An ``OSError`` from ``fn`` comes back as ``("error", errno, class name,
    message)``; anything else going wrong in the child fails the caller.
    """
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.close(rfd)
            setup()
            try:
                out: Any = fn()
            except OSError as e:
                out = ("error", e.errno, type(e).__name__, str(e))
            with os.fdopen(wfd, "wb") as f:
                pickle.dump(out, f)
        except BaseException:  # report anything, then leave
            code = 1
        os._exit(code)
    os.close(wfd)
    with os.fdopen(rfd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data, "the forked child failed"
    return pickle.loads(data)
