"""Training methods behind one registry, like timm's models: ``shc-train --method NAME``.

Each method is one module holding its head, its loss, any state it carries and its defaults (a
:class:`~shc.methods.base.Method` subclass); adding one is a new file and a line in ``REGISTRY``. Names are listed
without importing torch (``list_methods``); ``get_method`` imports the module.
"""
from __future__ import annotations

import importlib

# name -> "module:Class". The order is the seed's figure legend's.
REGISTRY = {
    "shc": "shc.methods.shc:SHC",
    "mds": "shc.methods.mds:MDS",
    "csq": "shc.methods.csq:CSQ",
    "vtdh": "shc.methods.vtdh:VTDH",
    "lth": "shc.methods.lth:LTH",
    "greedyhash": "shc.methods.greedyhash:GreedyHash",
    "orthohash": "shc.methods.orthohash:OrthoHash",
    "dtsh": "shc.methods.dtsh:DTSH",
    "hashnet": "shc.methods.hashnet:HashNet",
    "dpsh": "shc.methods.dpsh:DPSH",
    "idhn": "shc.methods.idhn:IDHN",
}
CENTER_METHODS = ("shc", "mds", "csq")  # stage 2 makes their hash centers


def list_methods() -> list[str]:
    return list(REGISTRY)


def check_method_name(name) -> str:
    if name not in REGISTRY:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(REGISTRY)}")
    return name


def get_method(name: str):
    """The Method subclass registered as ``name`` (ValueError listing the names otherwise)."""
    module, _, cls = REGISTRY[check_method_name(name)].partition(":")
    return getattr(importlib.import_module(module), cls)


def resolve_method_options(name: str, options: dict) -> dict:
    """Every option of method ``name``: its defaults with ``options`` over them, checked."""
    from shc.methods.base import resolve_options
    return resolve_options(get_method(name), options)


def create_method(name: str, ctx, options: dict | None = None):
    return get_method(name)(ctx, options)


def __getattr__(name):  # the base classes import torch: only once they are wanted
    if name in ("Method", "MethodContext"):
        from shc.methods import base
        return getattr(base, name)
    raise AttributeError(f"module 'shc.methods' has no attribute {name!r}")


def hashing_model(method, backbone):
    """``backbone`` (made with ``feature_map=method.feature_map``) + the method's head: the network stage 3
    trains and ``shc.load_run`` rebuilds."""
    from shc.models import HashNet
    return HashNet(backbone, method.ctx.bits, head=method.head(backbone.num_features))


__all__ = ["Method", "MethodContext", "REGISTRY", "CENTER_METHODS", "list_methods", "check_method_name", "get_method",
           "resolve_method_options", "create_method", "hashing_model"]
