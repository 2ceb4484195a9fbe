"""docs/plugins.md is the plugin author's reference: every hook, `register` callable and API function it
documents must be there with the exact signature the code has (as datasette's docs tests do)."""
import inspect
import re

import pytest
import torch

import zoo
import zoo.testing
from conftest import REPO
from zoo import hookspecs

GUIDE = (REPO / "docs" / "plugins.md").read_text()


class _Text(str):
    """An annotation string shown as written (``str | None``, not ``'str | None'``)."""

    def __repr__(self):
        return str(self)


def signature(fn, name: str) -> str:
    """``name(arg: type = default, ...) -> ret`` as Python's ``help()`` shows it, without the quotes that
    ``from __future__ import annotations`` puts around annotations, and without ``self``."""
    sig = inspect.signature(fn)
    params = [p.replace(annotation=_Text(p.annotation)) if p.annotation is not p.empty else p
              for p in sig.parameters.values() if p.name != "self"]
    ret = sig.return_annotation
    return f"{name}{sig.replace(parameters=params, return_annotation=_Text(ret) if ret is not sig.empty else ret)}"


def section(title: str) -> str:
    """The text under the heading ``title`` up to the next heading of the same or a higher level."""
    m = re.search(rf"^(#+) {re.escape(title)}$", GUIDE, re.M)
    assert m, f"docs/plugins.md has no section '{title}'"
    end = re.compile(rf"^#{{1,{len(m.group(1))}}} ", re.M).search(GUIDE, m.end())
    return GUIDE[m.end():end.start() if end else len(GUIDE)]


HOOKS = sorted(name for name, fn in vars(hookspecs).items() if getattr(fn, "zoo_spec", None))
REGISTER = {"zoo_register_models": hookspecs.RegisterModel, "zoo_register_datasets": hookspecs.RegisterDataset,
            "zoo_register_extractors": hookspecs.RegisterExtractor, "zoo_register_metrics": hookspecs.RegisterMetric}


def test_every_hookspec_is_known():
    assert sorted(hookspecs.HOOKS) == HOOKS == sorted(REGISTER)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_an_anchored_section_with_signatures_arguments_example_and_a_builtin(hook):
    assert f"[`{hook}`](#{hook})" in GUIDE  # linked from the overview, by its heading's anchor
    text = section(hook)
    assert signature(getattr(hookspecs, hook), hook) in text
    register = REGISTER[hook]
    assert signature(register.__call__, "register") in text
    for p in list(inspect.signature(register.__call__).parameters.values())[1:]:
        assert f"- `{p.name}` (`{p.annotation}`)" in text, (hook, p.name)  # each argument with its type
    assert "**When it is called:**" in text
    example = re.search(r"```python\n(.*?)```", text.split("**When it is called:**", 1)[1], re.S)
    assert example and "@hookimpl" in example.group(1) and f"def {hook}(register)" in example.group(1)
    builtins = re.findall(r"\]\(\.\./((?:plugins|examples)/[\w/.-]+\.py)\)", text)
    assert builtins, f"{hook}: no link to a plugin that uses it"
    for path in builtins:
        assert f"def {hook}(" in (REPO / path).read_text(), path


@pytest.mark.parametrize("fn, name", [
    (zoo.create_model, "zoo.create_model"),
    (zoo.model_config, "zoo.model_config"),
    (zoo.load_dataset, "zoo.load_dataset"),
    (zoo.testing.check_model_contract, "zoo.testing.check_model_contract"),
    (zoo.testing.check_dataset, "zoo.testing.check_dataset"),
    (zoo.testing.check_extractor, "zoo.testing.check_extractor"),
    (zoo.testing.registry_with, "zoo.testing.registry_with"),
])
def test_the_python_api_a_plugin_uses_is_documented_with_its_signature(fn, name):
    assert f"```python\n{signature(fn, name)}\n```" in GUIDE, signature(fn, name)


def test_table_of_contents_links_every_section():
    toc = set(re.findall(r"\]\(#([\w-]+)\)", GUIDE.split("\n## ", 1)[0]))
    for heading in re.findall(r"^## (.+)$", GUIDE, re.M) + ["How hooks are called", *HOOKS]:
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")  # GitHub's rule for heading anchors
        assert anchor in toc, heading


def test_the_class_conditional_example_keeps_the_contract_both_ways():
    """The guide's conditional VAE passes check_model_contract unconditionally and with model.conditional=true."""
    from conftest import MNIST_SETS
    source = re.search(r"```python\n(.*?)```", section("Class-conditional models"), re.S).group(1)
    namespace: dict = {}
    exec(compile(source, "docs/plugins.md", "exec"), namespace)  # our own documentation
    cls = namespace["CVAE"]
    assert cls.can_condition and "conditional" in cls.config["model"]

    class Plugin:
        @zoo.hookimpl
        def zoo_register_models(self, register):
            register(cls, name="my-cvae")
    with zoo.testing.registry_with("datasets", Plugin()):
        zoo.testing.check_model_contract("my-cvae", sets=MNIST_SETS)
        model = zoo.create_model("my-cvae", **{"model.conditional": True, "data.split": "test"})
        assert model.num_classes == 10 and model.sample(3, torch.Generator().manual_seed(0), labels=7).shape == \
            (3, 1, 28, 28)
