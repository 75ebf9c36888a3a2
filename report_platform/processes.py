"""What Linux's `/proc` says about a process: its state, parent, group, CPU and start time.

The supervisor, the fork launcher and its server, the test servers and the benchmarks all ask it;
`/proc/<pid>/stat` is read in one place so that its one trap is handled once: the command name
(field 2) may hold spaces and parentheses, so the fields are counted from the last `)`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

# Indexes into `stat_fields` (proc(5) numbers the fields from 1; these start at field 3).
STATE, PARENT, GROUP, SESSION = 0, 1, 2, 3
USER_TICKS, SYSTEM_TICKS, CHILDREN_USER_TICKS, CHILDREN_SYSTEM_TICKS = 11, 12, 13, 14
START_TICKS = 19


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
