"""plmdepth.cpu_math: MKL's vector math gets its first calls on one thread, before any model runs."""

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from plmdepth import cpu_math


def test_every_listed_function_is_a_torch_function():
    missing = [name for name in cpu_math.FUNCTIONS if not callable(getattr(torch, name, None))]
    assert not missing


@pytest.mark.skipif(not torch.backends.mkl.is_available(), reason="torch built without MKL")
def test_torch_tanh_is_mkl_vector_math_here():
    """The premise: torch's CPU tanh is MKL's vector math (high-accuracy mode), bit for bit; its
    low-accuracy mode differs (the code path the first thread once took on a first call)."""
    lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
    vms_tanh = lib.vmsTanh
    vms_tanh.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    x = torch.linspace(-4, 4, 100_003)
    ours = torch.tanh(x)

    def mkl(mode):
        out = torch.empty_like(x)
        vms_tanh(x.numel(), x.data_ptr(), out.data_ptr(), mode | 0x140000 | 0x100)  # FTZDAZ off, errors ignored
        return out

    assert torch.equal(ours, mkl(0x2))  # VML_HA
    if torch.equal(mkl(0x2), mkl(0x3)):
        pytest.skip(f"on this CPU ({torch.backends.cpu.get_cpu_capability()}) MKL's low-accuracy tanh equals its "
                    "high-accuracy one, so a first call on the other code path cannot change a result here")
    assert not torch.equal(ours, mkl(0x3))  # VML_EP


def test_building_a_model_makes_the_first_calls_before_any_forward_pass():
    code = ("from plmdepth import cpu_math\n"
            "assert not cpu_math._done\n"
            "import sys; sys.path.insert(0, 'tests')\n"
            "from conftest import tiny_esm\n"
            "lm = tiny_esm()\n"
            "assert cpu_math._done\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1])
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]
