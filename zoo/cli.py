"""The `zoo` command line: a thin layer over zoo's Python API."""
from __future__ import annotations

import click

from .cli_common import SET_HELP
from .errors import ZooError


class ZooGroup(click.Group):
    """Prints ZooError as one line (exit 2, or the error's own code), never a traceback -- except the
    plugin tracebacks a user asked for with ZOO_STRICT_PLUGINS=1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ZooError as e:
            if getattr(e, "detail", ""):
                click.echo(e.detail.rstrip(), err=True)
            click.echo(f"error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)


EXIT_CODES = ("Exit codes: 0 done; 1 the work failed (training diverged, a model failed in compare); 2 bad input "
              "(one `error:` line); 130 interrupted (Ctrl-C; a training saves its checkpoint first).")


@click.group(cls=ZooGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EXIT_CODES)
@click.version_option(package_name="zoo", prog_name="zoo")
def main():
    """zoo: train, sample and compare generative models (AE, VAE, GANs, DDPM, plugins).

    \b
    Quick start (MNIST by default):
      zoo list                          models, datasets, extractors
      zoo list ddpm                     one model: presets, settings, sampling options
      zoo train ddpm                    train into runs/ddpm-TIMESTAMP
      zoo train vae --preset tiny --set trainer.max_steps=500
      zoo train --resume --out runs/X   continue an interrupted run
      zoo sample runs/X -n 64 --out grid.png
      zoo eval runs/X                   FID / IS / KID / precision-recall
      zoo export runs/X exports/X       safetensors + model card; sample/eval/compare take it

    Data is read from --set data.root=DIR, else $ZOO_DATA, else ~/.cache/zoo/data (downloaded
    there on first use; ZOO_OFFLINE=1 never downloads).
    """


# --- registry views -----------------------------------------------------------------------
def _table(rows: list[list[str]], header: list[str] | None, indent: str = "") -> str:
    head = [header, ["-" * len(h) for h in header]] if header else []
    widths = [max(len(str(r[i])) for r in rows + head) for i in range(len((head or rows)[0]))]
    if header:
        head[1] = ["-" * w for w in widths]
    line = lambda r: indent + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join(line(r) for r in head + rows)


def _params(n) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def _literal(value) -> str:
    """A default as one would write it after --set."""
    import json
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (list, dict)) else f"{value}"


def _listing(refresh: bool) -> dict:
    import sys
    from .catalog import listing

    def building():
        if sys.stderr.isatty():
            click.echo("loading every plugin to index them (slow once; later `zoo list` calls read the index)",
                       err=True)
    return listing(refresh, building)[0]


@main.command("list")
@click.argument("model", required=False)
@click.option("--refresh", is_flag=True, help="Rebuild the cached listing (it is rebuilt by itself when an "
              "installed plugin, zoo or the environment changes).")
def list_cmd(model, refresh):
    """List models (with their presets), datasets and feature extractors; or one MODEL in detail.

    \b
      zoo list          every model, dataset and extractor
      zoo list ddpm     ddpm's presets, settings (model.*) and sampling options
    """
    snap = _listing(refresh)
    if model is not None:
        click.echo(_model_detail(snap, model))
    else:
        rows = []
        for m in snap["models"]:
            rows.append([m["name"], m["family"], m["plugin"], _default_params(m),
                         "yes" if m.get("can_condition") else "-", m["description"]])
        lines = _table(rows, ["model", "family", "plugin", "params", "cond.", "description"]).split("\n")
        width = max((len(p["name"]) for m in snap["models"] for p in m["presets"]), default=0)
        out = lines[:2]
        for m, row in zip(snap["models"], lines[2:]):
            out.append(row)
            out += [f"  --preset {p['name']:<{width}}  {_params(p['params']):>6}  {p['help']}".rstrip()
                    for p in m["presets"]]
        click.echo("\n".join(out))
        click.echo()
        rows = [[d["name"], d["plugin"], f"{d['channels']}x{d['image_size']}x{d['image_size']}",
                 ",".join(d["splits"]), d["extractor"] or "-", d["description"]] for d in snap["datasets"]]
        click.echo(_table(rows, ["dataset", "plugin", "shape", "splits", "extractor", "description"]))
        if snap["extractors"]:
            click.echo()
            rows = [[x["name"], x["plugin"], x["description"]] for x in snap["extractors"]]
            click.echo(_table(rows, ["extractor", "plugin", "description"]))
        click.echo("\nparams: with no --preset (the preset zoo picks on this machine in brackets); each --preset "
                   "line: with that preset.\ncond.: the model can be class-conditional (--set "
                   "model.conditional=true; zoo sample --label).\n`zoo list MODEL` shows a model's settings and "
                   "sampling options.")
    for f in snap["failures"]:
        click.echo(f"warning: plugin '{f['plugin']}': {f['error']}", err=True)


def _default_params(m: dict) -> str:
    """A model's parameters with no --preset, naming the preset that applies then (``1.11M (cpu)``)."""
    preset = (m.get("params_preset") or {}).get("name")  # .get: a catalog cached before it was recorded
    return _params(m["params"]) + (f" ({preset})" if preset else "")


def _model_detail(snap: dict, name: str) -> str:
    from .errors import did_you_mean
    models = {m["name"]: m for m in snap["models"]}
    if name not in models:
        broken = sorted({f["plugin"] for f in snap["failures"]})
        hint = f"; plugins that failed to load: {', '.join(broken)}" if broken else ""
        raise ZooError(f"unknown model '{name}'{did_you_mean(name, models)} -- `zoo list` shows the "
                       f"{len(models)} available{hint}")
    m = models[name]
    chosen = m.get("params_preset") or {}
    at = (f"preset {chosen['name']} ({chosen['reason']})" if chosen.get("name") else
          "its defaults, no preset")
    out = [f"{name}: {m['description']}",
           f"family {m['family']}, plugin {m['plugin']}, {_params(m['params'])} parameters with no --preset: {at}",
           _conditional_line(snap, m), ""]
    if m["presets"]:
        out.append(f"presets (zoo train {name} --preset NAME):")
        out.append(_table([[p["name"], _params(p["params"]), p["help"]] for p in m["presets"]], None, "  "))
    else:
        out.append("presets: none")
    out.append("")
    if m["settings"]:
        out.append(f"settings (--set KEY=VALUE; default: before any preset -- `zoo show-config {name} -p PRESET` "
                   f"shows a preset's):")
        out.append(_table([[s["key"], _literal(s["default"]), s["valid"], s["help"]] for s in m["settings"]],
                          ["key", "default", "valid values", "help"], "  "))
    else:
        out.append("settings: none of its own (model.*)")
    if m["defaults"]:
        out.append("  it also sets: " + ", ".join(f"{k}={_literal(v)}" for k, v in m["defaults"].items()))
    out.append("")
    if m["sample_options"]:
        out.append("sampling options (zoo sample / eval / compare --option NAME=VALUE):")
        out.append(_table([[o["name"], _literal(o["default"]), o["valid"], o["help"]] for o in m["sample_options"]],
                          ["option", "default", "valid values", "help"], "  "))
    else:
        out.append("sampling options: none")
    if m.get("likelihood_options"):  # .get: a catalog cached before they were listed
        out.append("")
        out.append("likelihood options (zoo eval / compare --nll --nll-option NAME=VALUE):")
        out.append(_table([[o["name"], _literal(o["default"]), o["valid"], o["help"]] for o in m["likelihood_options"]],
                          ["option", "default", "valid values", "help"], "  "))
    return "\n".join(out)


def _conditional_line(snap: dict, m: dict) -> str:
    """Whether model ``m`` can be class-conditional, and how (or which models can)."""
    if m.get("can_condition"):
        unconditional = ", and unconditionally from a conditional run (--label -1)" if m.get("null_label") else ""
        return (f"conditional: yes -- --set model.conditional=true trains on the dataset's labels; zoo sample --label "
                f"draws a class{unconditional}")
    can = [x["name"] for x in snap["models"] if x.get("can_condition")]
    return f"conditional: no (models that can: {', '.join(can) or 'none installed'})"


@main.group("plugins", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (name, distribution, version, "
              "module, status, what it adds, failures with tracebacks).")
@click.option("--check", is_flag=True, help="Exit 1 when any plugin failed (for a plugin's CI).")
@click.option("--verbose", "-v", is_flag=True, help="Show each failure's stored traceback.")
@click.pass_context
def plugins_cmd(ctx, as_json, check, verbose):
    """Show the plugins (version, what they add) and those that failed, each once, with the reason.

    \b
    ZOO_PLUGINS=a,b loads only those entry points; ZOO_DISABLE_PLUGINS=c skips some.
    ZOO_STRICT_PLUGINS=1 makes a plugin failure an error in every command (with its traceback).
    `zoo plugins new NAME` writes a new plugin package; the guide is docs/plugins.md.
    """
    if ctx.invoked_subcommand is not None:
        return
    from . import __version__
    from .registry import API_VERSION, registry, strict
    report = registry(check=False).report()
    failed = [p for p in report if p["status"] == "failed"]
    verbose = verbose or strict()
    if as_json:
        import json
        click.echo(json.dumps({"zoo": __version__, "api_version": API_VERSION, "ok": not failed,
                               "plugins": report}, indent=2))
    else:
        def adds(p):
            a = p["adds"]
            return ", ".join(a["models"] + [f"dataset:{d}" for d in a["datasets"]] +
                             [f"extractor:{x}" for x in a["extractors"]] +
                             [f"metric:{m}" for m in a.get("metrics", [])])
        rows = [[p["name"], p["distribution"], p["version"], p["module"], adds(p) or "-"]
                for p in report if p["status"] == "ok"]
        click.echo(_table(rows, ["plugin", "package", "version", "module", "adds"]) if rows else "no plugins loaded")
        if failed:
            click.echo("\nfailed:")
        for p in failed:
            pad = " " * (len(p["name"]) + 2)
            for i, f in enumerate(p["failures"]):
                click.echo(f"  {p['name']}: {f['error']}" if i == 0 else f"  {pad}{f['error']}")
                if verbose and f["traceback"]:
                    click.echo("\n".join(f"  {pad}  {line}" for line in f["traceback"].rstrip().splitlines()))
            if adds(p):
                click.echo(f"  {pad}(still adds: {adds(p)})")
        if failed and not verbose:
            click.echo("\n(`zoo plugins -v` shows the tracebacks)")
    if failed and (check or strict()):
        ctx.exit(1)


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
    from .config_docs import annotated_yaml
    from .registry import check_config, model_config, model_schema
    sources: dict = {}
    cfg = model_config(model, preset=preset, file=config_file, sets=sets, sources=sources)
    check_config(cfg)
    click.echo(annotated_yaml(cfg, sources, model_schema(model) if explain else None), nl=False)


# Each family of commands lives in its own module (click only at import time: `zoo --help` stays fast).
from .cli_compare import compare_cmd, sample_cmd  # noqa: E402
from .cli_eval import eval_cmd, eval_net  # noqa: E402
from .cli_export import export_cmd  # noqa: E402
from .cli_train import train_cmd  # noqa: E402

for _command in (train_cmd, sample_cmd, eval_cmd, compare_cmd, eval_net, export_cmd):
    main.add_command(_command)


if __name__ == "__main__":  # pragma: no cover
    main()
