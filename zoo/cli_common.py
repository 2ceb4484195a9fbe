"""Option help and parsing shared by several `zoo` commands."""
from __future__ import annotations

from .errors import ZooError

SET_HELP = "Override one config key, e.g. --set trainer.lr=1e-3 (repeatable; wins over -c and --preset)."

OPTION_HELP = ("A sampling option, KEY=VALUE (repeatable): any option the model declares in its sample_options "
               "(`zoo list MODEL` shows them), e.g. --option sampler=dpm++ --option steps=20.")


LABEL_HELP = ("A class-conditional run's classes: --label 7 (every image a 7), --label 3,5 (-n shared between "
              "them, one grid row each) or --label all (one grid row per class, -n // classes images each).")


def label_plan(spec: str | None, cfg, n: int) -> tuple[list[int] | None, int]:
    """``--label SPEC`` for a run with config ``cfg`` and ``-n n``: the class of each image to draw and the
    images per grid row (0: a square grid); ``(None, 0)`` without ``--label``. Checked against the run's
    config only (no torch): labels for an unconditional run, a bad spec or a class out of range are one-line
    errors."""
    if spec is None:
        return None, 0
    k = cfg.data.get("num_classes") if (cfg.get("model") or {}).get("conditional") else None
    if not k:
        raise ZooError(f"--label {spec}: this run of '{cfg.model_name}' is unconditional (trained without "
                       f"labels); train one with --set model.conditional=true (`zoo list` marks the models that can)")
    try:
        classes = list(range(k)) if spec.strip().lower() == "all" else [int(v) for v in spec.split(",")]
    except ValueError:
        raise ZooError(f"--label '{spec}': give a class (--label 7), classes (--label 3,5) or all") from None
    bad = [c for c in classes if not -1 <= c < k]
    if bad:
        raise ZooError(f"--label {bad[0]} is out of range: this run has {k} classes (0..{k - 1})")
    if len(classes) == 1:
        return classes * n, 0
    per = max(1, n // len(classes))
    return [c for c in classes for _ in range(per)], per


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
