"""Test-session settings (one torch thread is fastest for the small models the tests build on 2 cores), and a
fixture that imports the scripts of benchmarks/."""
import importlib.util, os
from pathlib import Path
import pytest
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
import torch
torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))

@pytest.fixture
def load_benchmark():
    "Import a script of benchmarks/ by name (they are standalone scripts, not a package) to test its helpers."
    def load(name:str):
        path = Path(__file__).resolve().parent.parent/'benchmarks'/f'{name}.py'
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        return mod
    return load
