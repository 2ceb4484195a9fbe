"""The `zoo` command line: a thin layer over zoo's Python API."""
from __future__ import annotations

import click

from .cli_common import SET_HELP
from .errors import ZooError


class ZooGroup(click.Group):
    """Prints ZooError as one line (exit 2, or the error's own code), never a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="zoo", prog_name="zoo")
def main():
    """zoo: train, sample and compare generative models (AE, VAE, GANs, DDPM, plugins).

    \b
    Quick start (MNIST by default):
      zoo list                          models, datasets, extractors
      zoo train ddpm                    train into runs/ddpm-TIMESTAMP
      zoo train vae --preset tiny --set trainer.max_steps=500
      zoo train --resume --out runs/X   continue an interrupted run
      zoo sample runs/X -n 64 --out grid.png
      zoo eval runs/X                   FID / IS / KID / precision-recall

    Data is read from --set data.root=DIR, else $ZOO_DATA, else ~/.cache/zoo/data.
    """


# --- registry views -----------------------------------------------------------------------
def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _param_count(name: str) -> str:
    import torch
    from .registry import create_model, model_config
    try:
        cfg = model_config(name)
        with torch.device("meta"):
            model = create_model(name, cfg)
        n = sum(p.numel() for p in model.parameters())
    except Exception:  # noqa: BLE001 - a listing never fails because one model cannot be built
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _warn_failures(reg) -> None:
    for f in reg.failures:
        click.echo(f"warning: plugin '{f.plugin}': {f.error}", err=True)


@main.command("list")
def list_cmd():
    """List registered models, datasets and feature extractors."""
    from .registry import registry
    reg = registry()
    rows = [[e.name, e.family, e.plugin, _param_count(e.name), ",".join(e.presets) or "-", e.description]
            for e in sorted(reg.models.values(), key=lambda e: e.name)]
    click.echo(_table(rows, ["model", "family", "plugin", "params", "presets", "description"]))
    click.echo()
    rows = [[d.name, d.plugin, f"{d.channels}x{d.image_size}x{d.image_size}", ",".join(d.splits), d.description]
            for d in sorted(reg.datasets.values(), key=lambda d: d.name)]
    click.echo(_table(rows, ["dataset", "plugin", "shape", "splits", "description"]))
    if reg.extractors:
        click.echo()
        rows = [[x.name, x.plugin, x.description] for x in sorted(reg.extractors.values(), key=lambda x: x.name)]
        click.echo(_table(rows, ["extractor", "plugin", "description"]))
    _warn_failures(reg)


@main.group("plugins", invoke_without_command=True)
@click.pass_context
def plugins_cmd(ctx):
    """Show loaded plugins (version, what they add) and plugins that failed to load.

    ZOO_PLUGINS=a,b loads only those entry points; ZOO_DISABLE_PLUGINS=c skips some.
    `zoo plugins new NAME` writes a new plugin package; the guide is docs/plugins.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    from .registry import registry
    reg = registry()
    rows = []
    for p in reg.plugins:
        adds = [m.name for m in reg.models.values() if m.plugin == p.name]
        adds += [f"dataset:{d.name}" for d in reg.datasets.values() if d.plugin == p.name]
        adds += [f"extractor:{x.name}" for x in reg.extractors.values() if x.plugin == p.name]
        rows.append([p.name, p.distribution, p.version, p.module, ", ".join(adds) or "-"])
    click.echo(_table(rows, ["plugin", "package", "version", "module", "adds"]))
    if reg.failures:
        click.echo("\nfailed:")
        for f in reg.failures:
            click.echo(f"  {f.plugin}: {f.error}")


@plugins_cmd.command("new")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(), help="Folder to write the package into "
              "(must not exist or be empty) [default: ./zoo-NAME].")
def plugins_new(name, directory):
    """Write a ready, installable plugin package for a new model NAME.

    \b
    It holds pyproject.toml (the zoo.plugins entry point), a small working model
    with a `tiny` preset (zoo_NAME/model.py), tests using zoo.testing, and a README:
      zoo plugins new my-vae
      pip install -e zoo-my-vae && zoo list && zoo train my-vae --preset tiny
    The guide: docs/plugins.md.
    """
    from .scaffold import names, new_plugin
    target = new_plugin(name, directory)
    n = names(name)
    files = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    click.echo(f"created plugin '{name}' (package {n['dist']}, import name {n['package']}) in {target}:")
    for f in files:
        click.echo(f"  {f}")
    click.echo(f"\nnext:\n  pip install -e {target}\n  zoo list                       # shows {name}\n"
               f"  zoo train {name} --preset tiny\n  pytest {target}\n"
               f"then edit {target / n['package'] / 'model.py'}")


@main.command("show-config")
@click.argument("model", required=False)
@click.option("--preset", "-p", help="A named preset of the model (e.g. tiny) [default: cpu/gpu by device, "
              "when the model has them].")
@click.option("--config", "-c", "config_file", type=click.Path(), help="A YAML file of overrides.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help=SET_HELP)
@click.option("--explain", is_flag=True, help="Also print each key's help and valid values.")
@click.option("--reference", is_flag=True, help="Print the Markdown reference of every built-in key instead "
              "(docs/config.md).")
def show_config(model, preset, config_file, sets, explain, reference):
    """Print MODEL's resolved config as YAML, each value with the layer it came from.

    \b
    Layers, later wins: base defaults < model defaults < user file < preset
    < -c file < --set. The user file is $ZOO_CONFIG, else ~/.config/zoo/config.yaml
    (settings for this machine, e.g. data.split=test); its model.* settings go under
    models: {NAME: {model: {...}}}. The config is checked exactly as `zoo train` checks it:
      zoo show-config ddpm --explain
      zoo show-config vae -p tiny --set model.latent=8
    """
    if reference:
        from .config_docs import reference_markdown
        click.echo(reference_markdown(), nl=False)
        return
    if model is None:
        raise ZooError("name a model (`zoo list` shows them), or pass --reference")
    from .config import annotated_yaml
    from .registry import check_config, model_config, model_schema
    sources: dict = {}
    cfg = model_config(model, preset=preset, file=config_file, sets=sets, sources=sources)
    check_config(cfg)
    click.echo(annotated_yaml(cfg, sources, model_schema(model) if explain else None), nl=False)


# Each family of commands lives in its own module (click only at import time: `zoo --help` stays fast).
from .cli_compare import compare_cmd, sample_cmd  # noqa: E402
from .cli_eval import eval_cmd, eval_net  # noqa: E402
from .cli_train import train_cmd  # noqa: E402

for _command in (train_cmd, sample_cmd, eval_cmd, compare_cmd, eval_net):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
