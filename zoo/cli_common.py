"""Option help shared by several `zoo` commands."""

SET_HELP = "Override one config key, e.g. --set trainer.lr=1e-3 (repeatable; wins over -c and --preset)."
