"""Option help and parsing shared by several `zoo` commands."""
from __future__ import annotations

from .errors import ZooError

SET_HELP = "Override one config key, e.g. --set trainer.lr=1e-3 (repeatable; wins over -c and --preset)."

OPTION_HELP = ("A sampling option, KEY=VALUE (repeatable): any option the model declares in its sample_options "
               "(`zoo list MODEL` shows them), e.g. --option sampler=dpm++ --option steps=20.")


def option_values(items, **shortcuts) -> dict:
    """``--option KEY=VALUE`` items plus shortcut flags (``sampler=("--sampler", "ddim")`` is ``--option
    sampler=ddim``) as one dict; a key given both ways is an error. Values are YAML scalars; the model's
    declarations convert and check them."""
    from .config import parse_options
    options = parse_options(items, "--option")
    for key, (flag, value) in shortcuts.items():
        if value is None:
            continue
        if key in options:
            raise ZooError(f"{flag} and --option {key}=... both set '{key}': give it once")
        options[key] = parse_options([f"{key}={value}"], flag)[key]
    return options


def metrics_help(template: str) -> str:
    """``template`` with ``{choices}`` and ``{default}`` filled from the built-in metrics' declarations."""
    from .metrics import choices_help, default_help
    return template.format(choices=choices_help(), default=default_help())


def metrics_option(template: str):
    """``--metrics``, its help written from the metrics' declarations only when help is shown (``zoo
    --help`` and every command stay free of the metric declarations' import)."""
    import click

    class MetricsOption(click.Option):
        def get_help_record(self, ctx):
            self.help = metrics_help(template)
            return super().get_help_record(ctx)
    return click.option("--metrics", cls=MetricsOption, help=template)
