"""The importable API behind the CLI: train, resume, load a run, sample."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from . import checkpoint
from .config import Config, load_yaml, merge, parse_set
from .errors import ZooError


def default_out_dir(model_name: str) -> Path:
    return Path("runs") / f"{model_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_config(out_dir: str | Path, sets=()) -> Config:
    """A run's own resolved config (config.yaml), with ``--set`` overrides applied."""
    path = Path(out_dir) / "config.yaml"
    if not path.is_file():
        raise ZooError(f"'{out_dir}' is not a zoo run directory (no config.yaml)")
    cfg = load_yaml(path)
    return Config(merge(cfg, parse_set(sets), source="--set"))


def train(model: str | None = None, *, preset: str | None = None, config_file=None, sets=(), out=None,
          resume: bool = False, force: bool = False, quiet: bool | None = True, overrides=None):
    """Train ``model`` (or resume the run in ``out``); returns a ``RunResult``.

    >>> zoo.train("vae", preset="tiny", sets=["trainer.max_steps=100"], out="runs/vae")
    """
    from .registry import model_config
    from .trainer import fit
    if resume:
        if out is None:
            raise ZooError("--resume needs --out DIR: the run directory to continue")
        cfg = run_config(out, sets)
        if model is not None and model != cfg.model_name:
            raise ZooError(f"run '{out}' trains '{cfg.model_name}', not '{model}' (drop the model name to resume)")
    else:
        if model is None:
            raise ZooError("name a model to train (`zoo list` shows them), or pass --resume --out DIR")
        cfg = model_config(model, preset=preset, file=config_file, sets=sets, overrides=overrides)
    out = Path(out) if out is not None else default_out_dir(cfg.model_name)
    return fit(cfg, out, resume=resume, force=force, quiet=quiet)


def load_run(run_dir: str | Path, *, ema: bool = True, checkpoint_name: str = "last.pt", device="cpu"):
    """The model of a run, ready to sample: EMA weights when the run has them.

    >>> model = zoo.load_run("runs/ddpm")
    >>> images = model.sample(16, torch.Generator().manual_seed(0))   # (16, C, H, W) in [0, 1]
    """
    from .data import complete_data_config
    from .registry import registry
    run_dir = Path(run_dir)
    path = run_dir / "checkpoints" / checkpoint_name
    if not path.is_file():
        if not (run_dir / "config.yaml").is_file():
            raise ZooError(f"'{run_dir}' is not a zoo run directory (no config.yaml, no checkpoints/)")
        raise ZooError(f"run '{run_dir}' has no checkpoints/{checkpoint_name} yet (train it first)")
    ckpt = checkpoint.load(path)
    cfg = Config(ckpt["config"])
    entry = registry().model(cfg.model_name)
    complete_data_config(cfg)
    model = entry.cls(cfg)
    weights = ckpt["ema"]["model"] if ema and ckpt.get("ema") else ckpt["model"]
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise ZooError(f"checkpoint '{path}' does not match model '{cfg.model_name}': "
                       f"{str(e).strip().splitlines()[0][:200]}") from None
    model.step = int(ckpt["step"])
    return model.to(device).eval()


def pick_device(name: str = "auto") -> torch.device:
    from .trainer import resolve_device
    return resolve_device(name)


def sample_images(model, n: int, seed: int = 0, batch_size: int = 500, progress: bool = False,
                  **options) -> torch.Tensor:
    """``n`` images in [0, 1] from ``model`` in batches, on the model's device; same seed, same images."""
    from tqdm.auto import tqdm
    from .trainer import autocast, resolve_precision
    device = model.device
    g = torch.Generator(device=device).manual_seed(int(seed))
    amp = resolve_precision("auto", device)
    out = []
    with torch.no_grad(), tqdm(total=n, desc="sampling", unit="img", disable=not progress) as bar:
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            with autocast(device, amp):
                x = model.sample(b, g, **options)
            out.append(x.float().clamp(0, 1).cpu())
            bar.update(b)
    return torch.cat(out)


def write_images(images: torch.Tensor, out: str | Path) -> Path:
    """Save [0, 1] images: a grid for ``*.png``, a uint8 ``(N, H, W, C)`` array
    (key ``images``) for ``*.npz``, else one PNG per image in the folder ``out``."""
    from torchvision.utils import save_image
    from .data import to_uint8
    from .trainer import save_grid
    out = Path(out)
    if out.suffix.lower() == ".png":
        save_grid(images, out)
    elif out.suffix.lower() == ".npz":
        import numpy as np
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out, images=to_uint8(images).permute(0, 2, 3, 1).numpy())
    elif out.suffix:
        raise ZooError(f"--out '{out}': use a .png (grid), a .npz (uint8 array) or a folder (one PNG per image)")
    else:
        out.mkdir(parents=True, exist_ok=True)
        for i, img in enumerate(images):
            save_image(img, out / f"{i:06d}.png")
    return out
