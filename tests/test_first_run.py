"""The first `zoo train` on a fresh machine downloads its data, for real: a local HTTP server serves the
dataset files, torchvision's mirrors point at it (a sitecustomize.py on the subprocess's PYTHONPATH -- the
only thing patched), and `zoo train` runs as a subprocess with a fresh HOME, ZOO_DATA / ZOO_CONFIG /
ZOO_OFFLINE unset. A download that fails is one line that says why."""
import functools
import hashlib
import http.server
import io
import pickle
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from helpers import zoo_cli
import yaml
from conftest import FASHION_ROOT, MNIST_ROOT

TEST_FILES = ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
FAST = ["--preset", "tiny", "--set", "trainer.max_steps=2", "--set", "trainer.n_samples=4"]


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def cifar_archive(folder: Path) -> dict:
    """A cifar-10-python.tar.gz of 8 images per batch, in torchvision's format; the checksums to patch in."""
    rng = np.random.default_rng(0)
    files, members = {}, {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        members[name] = {"data": rng.integers(0, 256, (8, 3072), dtype=np.uint8), "labels": list(range(8))}
    members["batches.meta"] = {"label_names": [f"class{i}" for i in range(10)]}
    with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
        for name, obj in members.items():
            raw = pickle.dumps(obj)
            files[name] = hashlib.md5(raw).hexdigest()
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return files


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """http://127.0.0.1:PORT/ serving mnist/ (MNIST's test split and training labels: no training images),
    fashion/ (Fashion-MNIST's test split: Debian's files when installed, else MNIST's as stand-ins) and
    cifar/ (a tiny CIFAR-10 archive)."""
    if not (MNIST_ROOT / TEST_FILES[0]).is_file():
        pytest.fail(f"real MNIST test files not found in {MNIST_ROOT} (set ZOO_TEST_MNIST)")
    served = tmp_path_factory.mktemp("served")
    fashion_src = FASHION_ROOT if (FASHION_ROOT / TEST_FILES[0]).is_file() else MNIST_ROOT
    for sub, src in (("mnist", MNIST_ROOT), ("fashion", fashion_src)):
        (served / sub).mkdir()
        for f in src.glob("*.gz"):
            (served / sub / f.name).symlink_to(f)
    (served / "cifar").mkdir()
    cifar_md5 = cifar_archive(served / "cifar")
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(served)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    patch = f"""
import pathlib
import torchvision.datasets as d
import zoo_plugins.datasets
d.MNIST.mirrors = [{url + 'mnist/'!r}]
d.FashionMNIST.mirrors = [{url + 'fashion/'!r}]
zoo_plugins.datasets.DEBIAN_FASHION_MNIST = pathlib.Path('/nonexistent')  # a fresh machine: download
"""
    # the served files' checksums: MNIST's stand-ins, or Debian's files (recompressed: not upstream's MD5s)
    patch += f"d.FashionMNIST.resources = {[(f.name, md5(f)) for f in sorted(fashion_src.glob('*.gz'))]!r}\n"
    patch += f"""
d.CIFAR10.url = {url + 'cifar/cifar-10-python.tar.gz'!r}
d.CIFAR10.tgz_md5 = {md5(served / 'cifar' / 'cifar-10-python.tar.gz')!r}
d.CIFAR10.train_list = {[[f'data_batch_{i}', cifar_md5[f'data_batch_{i}']] for i in range(1, 6)]!r}
d.CIFAR10.test_list = {[['test_batch', cifar_md5['test_batch']]]!r}
d.CIFAR10.meta = {{'filename': 'batches.meta', 'key': 'label_names', 'md5': {cifar_md5['batches.meta']!r}}}
"""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(patch)
    yield {"url": url, "site": site, "fashion_src": fashion_src}
    httpd.shutdown()


def fresh_zoo(tmp_path, site, *args, xdg=False, **extra_env):
    """`zoo train ddpm --preset tiny ARGS` as on a fresh machine: empty HOME (and XDG_CACHE_HOME when
    ``xdg``), no ZOO_* settings; torchvision patched by ``site``/sitecustomize.py."""
    env = dict.fromkeys(("ZOO_DATA", "ZOO_CONFIG", "ZOO_OFFLINE", "XDG_CACHE_HOME", "XDG_CONFIG_HOME"))  # unset
    env.update(HOME=tmp_path / "home", XDG_CACHE_HOME=tmp_path / "xdg-cache" if xdg else None, **extra_env)
    (tmp_path / "home").mkdir(exist_ok=True)
    return zoo_cli("train", "ddpm", *FAST, *args, "--out", tmp_path / "run", site=site, cwd=tmp_path, env=env,
                   timeout=300)


def one_line_error(p) -> str:
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stderr, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, p.stderr
    assert "shared/data" not in errors[0]  # never a path of this repository's test set-up
    return errors[0]


def test_first_train_downloads_mnist_into_the_cache(tmp_path, server):
    import torchvision
    p = fresh_zoo(tmp_path, server["site"], "--set", "data.split=test", "--set", "data.holdout=1000")
    assert p.returncode == 0, p.stderr
    raw = tmp_path / "home" / ".cache" / "zoo" / "data" / "MNIST" / "raw"
    expected = dict(torchvision.datasets.MNIST.resources)
    for name in TEST_FILES:
        assert md5(raw / name) == expected[name] == md5(MNIST_ROOT / name)
        assert f"downloading {server['url']}mnist/{name}" in p.stderr  # torchvision's progress follows it
    assert sorted(f.name for f in raw.iterdir()) == sorted(TEST_FILES)  # that split only, no .part left
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    root = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["data"]["root"]
    assert root == str(raw.parents[1]) and Path(root).is_absolute()  # what --resume reads


def test_a_split_the_mirror_lacks_is_one_line_with_the_http_reason(tmp_path, server):
    p = fresh_zoo(tmp_path, server["site"])  # the training split: the server has no training images
    error = one_line_error(p)
    assert f"{server['url']}mnist/train-images-idx3-ubyte.gz: HTTP Error 404" in error
    assert "--set data.root=DIR or ZOO_DATA=DIR" in error and "--set data.split=test" in error
    raw = tmp_path / "home" / ".cache" / "zoo" / "data" / "MNIST" / "raw"
    assert not list(raw.glob("*"))  # nothing half-downloaded that could pass for data
    assert not (tmp_path / "run").exists()


def test_no_server_is_one_line_with_the_reason(tmp_path):
    with socket.socket() as s:  # a port nobody listens on: connection refused
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(f"import torchvision.datasets as d\nd.MNIST.mirrors = [{url!r}]\n")
    error = one_line_error(fresh_zoo(tmp_path, site, "--set", "data.split=test"))
    assert f"{url}t10k-images-idx3-ubyte.gz: no connection (Connection refused)" in error


def test_offline_never_downloads(tmp_path, server):
    error = one_line_error(fresh_zoo(tmp_path, server["site"], "--set", "data.split=test", ZOO_OFFLINE="1"))
    assert "download is off (ZOO_OFFLINE" in error
    assert not (tmp_path / "home" / ".cache" / "zoo" / "data").exists()


def test_an_explicit_root_that_does_not_exist_is_an_error(tmp_path, server):
    error = one_line_error(fresh_zoo(tmp_path, server["site"], "--set", f"data.root={tmp_path / 'nope'}"))
    assert f"data root '{tmp_path / 'nope'}' (from data.root) does not exist" in error
    assert not (tmp_path / "nope").exists() and "downloading" not in error


@pytest.mark.slow
def test_first_train_downloads_fashion_mnist(tmp_path, server):
    """Into $XDG_CACHE_HOME, and even where Debian's package would be used (a fresh machine has none)."""
    p = fresh_zoo(tmp_path, server["site"], "--set", "data.name=fashion-mnist", "--set", "data.split=test",
                  "--set", "data.holdout=1000", xdg=True)
    assert p.returncode == 0, p.stderr
    raw = tmp_path / "xdg-cache" / "zoo" / "data" / "FashionMNIST" / "raw"
    for name in TEST_FILES:
        assert md5(raw / name) == md5(server["fashion_src"] / name)
    assert not (tmp_path / "home" / ".cache").exists()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_first_train_downloads_cifar10(tmp_path, server):
    p = fresh_zoo(tmp_path, server["site"], "--set", "data.name=cifar10", "--set", "data.split=test",
                  "--set", "data.holdout=2", "--set", "trainer.batch_size=4")
    assert p.returncode == 0, p.stderr
    root = tmp_path / "home" / ".cache" / "zoo" / "data"
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert "6 images" in p.stdout  # the header (stdout when piped): the 8 served test images minus 2 held out
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_a_file_with_the_wrong_checksum_is_refused_and_removed(tmp_path, server):
    from zoo.data import DownloadError, fetch
    url = f"{server['url']}mnist/t10k-labels-idx1-ubyte.gz"
    with pytest.raises(DownloadError, match=r"MD5 checksum is not the expected 0+ \(corrupted"):
        fetch([url], tmp_path / "raw", "t10k-labels-idx1-ubyte.gz", "0" * 32)
    assert not list((tmp_path / "raw").iterdir())  # no file that could pass for data
    path = fetch([url], tmp_path / "raw", "t10k-labels-idx1-ubyte.gz", md5(MNIST_ROOT / "t10k-labels-idx1-ubyte.gz"))
    assert md5(path) == md5(MNIST_ROOT / "t10k-labels-idx1-ubyte.gz")
    assert [f.name for f in (tmp_path / "raw").iterdir()] == ["t10k-labels-idx1-ubyte.gz"]
