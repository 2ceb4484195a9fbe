"""``python -m zoo.torchrun ARGS``: torchrun, as ``zoo train --gpus N`` launches it, quiet on Ctrl-C.

On SIGINT/SIGTERM torchrun forwards the signal to its workers -- they stop after the current step, save a
checkpoint and print the resume command (zoo/interrupt.py) -- waits for them, then raises
``SignalException``. Here that ends as exit code 128 + signal (130 for Ctrl-C), not a traceback.
"""
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.run import main

if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except SignalException as e:
        sys.exit(128 + int(e.sigval))
