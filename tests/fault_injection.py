"""Kill -9 at each write step, for the fault-injection tests (`test_faults.py`, `test_synthesis_cli.py`)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

# One process imports torch and MONAI once, then forks a child per kill point: the child counts the write steps
# (every rename, copy and tree removal) and kills itself with SIGKILL before step n. Prints the n that were killed.
DRIVER = r"""
import json, os, shutil, signal, sys
import monai.losses, monai.transforms, torch   # imported before the forks: each child starts at once
from napari_lvseg import cli
from napari_lvseg.models import registry

mode, root, argv = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])

def kill_before_step(n):
    count = [0]
    def wrap(write):
        def step(*args, **kwargs):
            count[0] += 1
            if count[0] == n:
                os.kill(os.getpid(), signal.SIGKILL)
            return write(*args, **kwargs)
        return step
    os.replace, shutil.copy2, shutil.rmtree = wrap(os.replace), wrap(shutil.copy2), wrap(shutil.rmtree)

def child(n):
    folder = os.path.join(root, f"k{n}")
    torch.set_num_threads(1)
    if mode != "cli":   # a folder as the template holds it: a registry with an older model, a synthetic folder
        shutil.copytree(os.path.join(root, "template"), folder)
    if mode == "register":
        os.environ["LVSEG_MODELS_DIR"] = folder
        kill_before_step(n)
        registry.register_model(argv[0], name="m")
        return 0
    kill_before_step(n)
    return cli.main([a.replace("{out}", folder) for a in argv])

killed = []
for n in range(1, 60):
    pid = os.fork()
    if pid == 0:
        os._exit(child(n))
    _, status = os.waitpid(pid, 0)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"step {n}: status {status}"
        break
    killed.append(n)
print(json.dumps(killed))
"""

TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp.*")   # atomic_path's temp files


def drive(mode: str, root, argv) -> list:
    """Kill points of ``mode``: "cli" (``argv`` a command line, ``{out}`` its folder ``root/k<n>``), "cli-template"
    (the same, the folder first copied from ``root/template``) or "register" (``argv`` one model folder, registered
    as "m" into a copy of ``root/template``). Returns the n whose child was killed; the first n that ran to its end
    stops the loop."""
    run = subprocess.run([sys.executable, "-c", DRIVER, mode, str(root), json.dumps(argv)], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])
