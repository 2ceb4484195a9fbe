"""`python -m zoo` (used by torchrun for multi-GPU training)."""
from .cli import main

main(prog_name="zoo")
