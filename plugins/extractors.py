"""Built-in feature extractors for `zoo eval` / `zoo compare`, registered like any plugin's.

``mnist``      zoo's small MNIST classifier (weights shipped in zoo/assets/mnist_cnn.pt, retrain with
               ``zoo eval-net train``): 128-d features for FID/KID/precision-recall, softmax for IS.
               Offline, fast on a CPU; the default for 28x28 grayscale data.
``inception``  torch-fidelity's ``inception-v3-compat``, the network behind published FID/IS numbers
               (weights from torch's hub cache, a download, or ``--inception-weights PATH``).

A factory takes keyword options (``weights``: a local weights file) and returns a
``torch_fidelity.FeatureExtractorBase``; see zoo/extractors.py for the attributes the harness reads.
zoo.extractors (torch-fidelity, hence torchvision) is imported when a factory is called, not when the
plugins load: loading them (`zoo plugins`, rebuilding the `zoo list` index) stays cheap.
"""
from zoo import hookimpl


def mnist_extractor(weights: str | None = None):
    """zoo.extractors.mnist_extractor, imported on first use."""
    from zoo.extractors import mnist_extractor as make
    return make(weights)


def inception_extractor(weights: str | None = None):
    """zoo.extractors.inception_extractor, imported on first use."""
    from zoo.extractors import inception_extractor as make
    return make(weights)


@hookimpl
def zoo_register_extractors(register):
    register("mnist", mnist_extractor,
             description="zoo's MNIST classifier (128-d features, softmax for IS); offline, fast on CPU")
    register("inception", inception_extractor,
             description="torch-fidelity inception-v3-compat (the FID/IS papers report); needs its weights file")
