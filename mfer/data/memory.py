"""Resident (RSS) and proportional (PSS) memory of this process, from Linux's /proc/self/smaps.

PSS splits each shared page among the processes mapping it, so it shows what the packed cache
promises: N trials memory-mapping one entry hold one copy between them (each accounts for 1/N
of it), where N private copies would each count in full. Used by the tests and the benchmark.
"""
from __future__ import annotations

import re
from typing import Optional

_HEADER = re.compile(r"^[0-9a-f]+-[0-9a-f]+ ")


def mapped_memory(filename: Optional[str] = None) -> dict[str, int]:
    """{"rss_kb", "pss_kb"} of the mappings of ``filename``, or of the whole process if None."""
    totals = {"Rss": 0, "Pss": 0}
    counting = filename is None
    with open("/proc/self/smaps") as fh:
        for line in fh:
            if _HEADER.match(line):
                if filename is not None:
                    fields = line.split(maxsplit=5)
                    counting = len(fields) > 5 and fields[5].strip() == filename
            elif counting and line.split(":", 1)[0] in totals:
                totals[line.split(":", 1)[0]] += int(line.split()[1])
    return {"rss_kb": totals["Rss"], "pss_kb": totals["Pss"]}
