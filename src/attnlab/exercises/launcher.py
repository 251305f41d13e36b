"""The go-between of every check: ``python -I launcher.py COMMAND ...`` runs COMMAND and
exits with its status.

attnlab starts this launcher, and the launcher starts the checking process
(:mod:`attnlab.exercises.child`), the one that imports the student's code. So the student's
``os.getppid()`` is the launcher, never attnlab: a submission that kills its parent
(``os.kill(os.getppid(), signal.SIGKILL)``, which no process can block) kills only the
launcher. attnlab starts the launcher in a session and process group of its own, which the
checking process shares, so a submission that kills its process group (``os.killpg(0, ...)``)
kills only the two of them. Either way attnlab sees the launcher killed by a signal, kills
what is left of the group, grades every part of that file an error, however far its check
had got, and goes on.

This guards against accidents and naive code, not against malice: code that looks up
attnlab's process id (in ``/proc``) can still kill it. The launcher is run as a file in
isolated mode, so that it imports the standard library only, not torch nor attnlab.
"""

from __future__ import annotations

import subprocess
import sys


def main(command: list[str]) -> int:
    """Run ``command``; its exit status, or 128 + N when signal N killed it (as a shell does).

    The command inherits the launcher's working folder, environment and standard streams.
    """
    status = subprocess.call(command)
    return status if status >= 0 else 128 - status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
