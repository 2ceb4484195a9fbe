"""`zoo export`: a trained run as a folder that travels (zoo/export.py does the work)."""
from __future__ import annotations

import click


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="last", show_default=True,
              help="best: the best checkpoint by periodic FID (where the run kept one); last: the final one.")
@click.option("--eval", "eval_now", is_flag=True, help="Measure the scores for the card now (default metrics, "
              "the run's training images as reference) instead of using the run's eval.json.")
@click.option("--eval-n", type=click.IntRange(2), default=10000, show_default=True, help="Samples for --eval.")
@click.option("--push", "push_to", metavar="ORG/NAME", help="Then upload OUT to this Hugging Face model repository "
              "(needs zoo[hub] and a token: `hf auth login` or HF_TOKEN).")
@click.option("--force", is_flag=True, help="Replace OUT when it is not empty.")
def export_cmd(run_dir, out, checkpoint, eval_now, eval_n, push_to, force):
    """Write RUN_DIR's model to OUT as model.safetensors + config.json + a model card (README.md, samples.png).

    \b
    OUT is accepted wherever a run is: zoo sample / eval / compare, zoo.load; on the Hub as hf://ORG/NAME:
      zoo export runs/ddpm exports/ddpm --checkpoint best --eval
      zoo sample exports/ddpm -n 64 --out grid.png
      zoo export runs/ddpm exports/ddpm --push me/zoo-ddpm-mnist
    Only tensors are stored (EMA weights where the run has them, and fitted buffers); their SHA-256
    is recorded in config.json and checked on every load.
    """
    from .export import export
    if push_to:
        from .hub import check_push
        check_push(push_to)  # before any work: the extra and a token are there
    export(run_dir, out, checkpoint=checkpoint, eval_n=eval_n if eval_now else None, force=force, hub_id=push_to,
           echo=lambda m: click.echo(m, err=True))
    click.echo(f"exported {run_dir} ({checkpoint} checkpoint) to {out}: model.safetensors, config.json, README.md, "
               f"samples.png")
    if push_to:
        from .hub import push
        click.echo(f"pushed to {push(out, push_to)}")
