"""What importing costs: a reader loads no method it does not run, and the public API's
names still resolve (each check in a fresh interpreter, so earlier imports do not count)."""

import subprocess
import sys


def _run(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return result.stdout.strip()


def test_readers_do_not_load_the_methods_or_numba():
    """numba and llvmlite are about 50 MiB: imported on the first compiled loop's call."""
    loaded = _run("import sys\nfrom napari_mrmicro.io import read_volume\n"
                  "print(sorted(m for m in ('numba', 'llvmlite', 'scipy.fft', "
                  "'napari_mrmicro.core.qsm', 'napari_mrmicro.core.compressed_sensing') "
                  "if m in sys.modules))")
    assert loaded == "[]"


def test_public_names_resolve_and_qsm_is_the_function():
    """``core.qsm`` is the function of the public API, also when the subpackage of the same
    name was imported first; a compiled loop loads numba when it runs."""
    out = _run("import sys\n"
               "import napari_mrmicro.core.qsm.tv\n"
               "import napari_mrmicro.core as core\n"
               "from napari_mrmicro.core import qsm, simulate, Acquisition, region_table\n"
               "print(callable(qsm) and qsm is core.qsm and qsm.__module__.endswith('pipeline'))\n"
               "print('numba' in sys.modules)\n"
               "import numpy as np\n"
               "from napari_mrmicro.core.qsm import _fused\n"
               "a = np.ones((2, 3, 4), np.complex64); f = np.full((2, 3, 4), 2, np.float32)\n"
               "_fused.multiply_spectrum(a, f, a)\n"
               "print('numba' in sys.modules, a.real.min())\n"
               "print(sorted(set(core.__all__) - set(dir(core))))")
    assert out.splitlines() == ["True", "False", "True 2.0", "[]"]


def test_compiled_loops_load_once_when_threads_call_them_together():
    """The slab pool's threads may make the first calls of a compiled loop at once: numba
    is loaded once, every thread gets the compiled result."""
    out = _run("import threading\n"
               "import numpy as np\n"
               "from napari_mrmicro.core.qsm import _fused\n"
               "stub = _fused.multiply_planes\n"
               "results, barrier = [], threading.Barrier(4)\n"
               "def work(k):\n"
               "    s = np.full((3, 4, 5), k + 1, np.complex64); f = np.full((3, 4, 5), 2, np.float32)\n"
               "    o = np.empty_like(s)\n"
               "    barrier.wait()\n"
               "    stub(s.view(np.float32), f, o.view(np.float32))\n"
               "    results.append(float(o.real.min()) == 2 * (k + 1))\n"
               "threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]\n"
               "[t.start() for t in threads]; [t.join() for t in threads]\n"
               "print(results.count(True), type(_fused.multiply_planes).__name__)")
    assert out == "4 CPUDispatcher"
