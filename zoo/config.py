"""Config: declared keys, nested dicts with attribute access, layered and checked.

Every setting is declared once as a :class:`Key` (default, one line of help, valid values): zoo's own in
:data:`BASE`, a model's ``model.*`` keys in its ``config``. The declarations validate every layer and
generate ``zoo show-config --explain`` and ``docs/config.md``.

Layers, later wins (:func:`resolve`)::

    base defaults < model defaults < user file < preset < -c file < overrides < --set

The user file is ``$ZOO_CONFIG``, else ``${XDG_CONFIG_HOME:-~/.config}/zoo/config.yaml``: settings for
this machine (``data.split``, ``data.holdout``, ``data.root``, ``trainer.device`` ...), written once. Its
``model.*`` settings go under ``models: {NAME: {...}}`` because they differ per model. An unknown key or a
value of the wrong type or out of range, in any layer, is a one-line :class:`ZooError` naming the key, the
value, the layer it came from and what is valid.

The code is split by concern; this module gathers the names the rest of zoo and plugins import:

* :mod:`zoo.config_keys` -- keys and validation: :class:`Key`, :data:`BASE`, declarations as trees;
* :mod:`zoo.config_layers` -- layers and merging: :class:`Config`, :func:`merge`, :func:`resolve`, the
  ``--set``/``--option``/YAML parsers and the user file;
* :mod:`zoo.config_docs` -- showing: ``show-config``'s annotated YAML and ``docs/config.md``.
"""
from __future__ import annotations

from .config_keys import BASE, RECORDED, Key, check_declarations, defaults, key_of, leaves, read_number, yaml_scalar
from .config_layers import (Config, base_config, load_yaml, merge, parse_options, parse_set, resolve,
                            user_config_path, user_layers)

__all__ = ["BASE", "RECORDED", "Config", "Key", "base_config", "check_declarations", "defaults",
           "key_of", "leaves", "load_yaml", "merge", "parse_options", "parse_set", "read_number", "resolve",
           "user_config_path", "user_layers", "yaml_scalar"]
