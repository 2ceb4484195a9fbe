"""The hooks a zoo plugin can implement.

A plugin is a module named by an entry point in the ``zoo.plugins`` group::

    [project.entry-points."zoo.plugins"]
    mymodel = "my_package.my_module"

and implements any of these hooks with ``@zoo.hookimpl``. Each hook gets a
``register`` callable; call it once per thing you add.
"""
import pluggy

hookspec = pluggy.HookspecMarker("zoo")
hookimpl = pluggy.HookimplMarker("zoo")


@hookspec
def zoo_register_models(register):
    """Add models: ``register(ModelClass, name=None, config=None, description=None)``.

    ``name`` defaults to the class's ``name`` attribute or its lower-cased class
    name; ``config`` is extra default overrides for a named variant (e.g.
    ``register(DDPM, name="ddpm-convnext", config={"model": {"unet": "convnext"}})``).
    """


@hookspec
def zoo_register_datasets(register):
    """Add datasets: ``register(name, loader, channels=..., image_size=..., description=...)``.

    ``loader(root: Path, split: str, download: bool) -> torch.Tensor`` returns
    uint8 images shaped ``(N, C, H, W)``; it raises :class:`zoo.ZooError` when
    the files are missing, naming them and how to point zoo at local copies.
    """


@hookspec
def zoo_register_extractors(register):
    """Add feature extractors for evaluation: ``register(name, factory, description=...)``.

    ``factory(**options)`` returns an object usable by torch-fidelity as a
    feature extractor (see ``zoo/evaluate.py``).
    """
