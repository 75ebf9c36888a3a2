"""What Linux's `/proc` says about a process: its state, parent, group, CPU and start time; and the
signal state every process we start begins with.

The supervisor, the fork launcher and its server, the test servers and the benchmarks all ask it;
`/proc/<pid>/stat` is read in one place so that its one trap is handled once: the command name
(field 2) may hold spaces and parentheses, so the fields are counted from the last `)`.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

# Indexes into `stat_fields` (proc(5) numbers the fields from 1; these start at field 3).
STATE, PARENT, GROUP, SESSION = 0, 1, 2, 3
USER_TICKS, SYSTEM_TICKS, CHILDREN_USER_TICKS, CHILDREN_SYSTEM_TICKS = 11, 12, 13, 14
START_TICKS = 19

# The signals that ask a process to stop: the supervisor's and `terminate`'s SIGTERM, a Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def default_signal_state() -> None:
    """No signal blocked and the stop signals at their defaults, in a process we start.

    Blocked and ignored signals survive fork and exec. A process started from a thread that blocks
    SIGTERM (threads some libraries start do), or by a parent that ignores SIGINT (a shell's
    background job, some container runtimes; Dagster then maps SIGTERM to SIGINT's handler), would
    otherwise hand that on, and what it starts could only be stopped by SIGKILL. Safe between fork
    and exec (`preexec_fn`): it only makes system calls.
    """
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def stat_fields(pid: int | str) -> list[str] | None:
    """The fields of `/proc/<pid>/stat` from the state on, or None once the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def pids() -> Iterator[int]:
    """Every process id /proc lists (some may end before they are read)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def cpu_seconds(fields: list[str], *, with_children: bool = True) -> float:
    """User + system CPU of a process from its `stat_fields`, with its reaped children's."""
    last = CHILDREN_SYSTEM_TICKS if with_children else SYSTEM_TICKS
    return sum(int(v) for v in fields[USER_TICKS : last + 1]) / os.sysconf("SC_CLK_TCK")
