"""Process memory as the runner sees it (standalone: stdlib only).

Linux: /proc/self/status. VmHWM is the peak RSS; writing "5" to /proc/self/clear_refs resets
it to the current RSS, so the steady-state peak of the measured runs is separable from the
init peak. ru_maxrss is not used on Linux: it survives exec and would report the parent's
peak. RssAnon vs RssFile shows heap vs mmap'd weights.
macOS: ru_maxrss (bytes there), which cannot be reset.
"""

import resource
import sys
from typing import Dict, Optional

STATUS = "/proc/self/status"


def _status() -> Dict[str, int]:
    out = {}
    with open(STATUS) as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if len(parts) == 2 and parts[1] == "kB":
                out[key] = int(parts[0])
    return out


class MemoryProbe:
    def __init__(self) -> None:
        self.linux = sys.platform.startswith("linux")
        self.method = "VmHWM" if self.linux else "ru_maxrss"
        self.resettable = False

    def peak_kb(self) -> Optional[int]:
        if self.linux:
            return _status().get("VmHWM")
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return int(r // 1024) if sys.platform == "darwin" else int(r)

    def rss(self) -> Dict[str, Optional[int]]:
        if not self.linux:
            return {"rss_anon_kb": None, "rss_file_kb": None}
        s = _status()
        return {"rss_anon_kb": s.get("RssAnon"), "rss_file_kb": s.get("RssFile")}

    def reset_peak(self) -> bool:
        """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
        if not self.linux:
            return False
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            self.resettable = True
        except OSError:
            self.resettable = False
        return self.resettable
