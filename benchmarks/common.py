"""What the benchmarks share: the machine they ran on (printed at the top of every output)
and a wall-clock / CPU-time timer."""

import gc
import os
import platform
import time
from pathlib import Path

import torch


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    return "\n".join([
        f"platform      {platform.platform()}",
        f"python        {platform.python_version()}",
        f"cpu           {cpu}; os.cpu_count() = {os.cpu_count()}; affinity = {len(os.sched_getaffinity(0))}",
        f"torch         {torch.__version__}; torch.get_num_threads() = {torch.get_num_threads()}; "
        f"interop threads = {torch.get_num_interop_threads()}",
        f"transformers  {transformers.__version__}",
        f"load average  {' '.join(f'{x:.2f}' for x in os.getloadavg())} (other work on the machine skews wall times)",
    ])


class Timer:
    """`with Timer() as t: ...` then `t.wall`, `t.cpu` in seconds (garbage collected first)."""

    def __enter__(self):
        gc.collect()
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0
