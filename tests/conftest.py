"Test-session settings: one torch thread is fastest for the small models the tests build on 2 cores."
import os
os.environ.setdefault('OMP_NUM_THREADS', '1')
os.environ.setdefault('MPLBACKEND', 'Agg')
import torch
torch.set_num_threads(int(os.environ['OMP_NUM_THREADS']))
