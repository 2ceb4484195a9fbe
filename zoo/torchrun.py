"""``python -m zoo.torchrun ARGS``: torchrun, as ``zoo train --gpus N`` launches it, quiet on Ctrl-C and
on a user error.

On SIGINT/SIGTERM torchrun forwards the signal to its workers -- they stop after the current step, save a
checkpoint and print the resume command (zoo/interrupt.py) -- waits for them, then raises
``SignalException``. Here that ends as exit code 128 + signal (130 for Ctrl-C), not a traceback. A worker
that stopped on a user error (exit code 2) has printed its one-line ``error: ...``; torchrun's own report
and log lines would only bury it, so they are left out and the exit code is 2. Any other failure keeps
torchrun's report.
"""
import logging
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main

if __name__ == "__main__":
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):  # "failed (exitcode: 2)", "Sending ... SIGTERM"
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        main(sys.argv[1:])
    except SignalException as e:
        sys.exit(128 + int(e.sigval))
    except ChildFailedError as e:
        if e.get_first_failure()[1].exitcode != 2:
            raise
        sys.exit(2)
