"""What a star import of one of the book's network modules gives a script.

The book's network modules (``common/multi_layer_net.py``,
``ch07/simple_convnet.py`` ...) have no ``__all__``, so ``from
common.multi_layer_net import *`` hands a script every name of
``common.layers`` (layers, functions, ``im2col``, ``col2im``, ``np``) and the
modules they import: ``OrderedDict``, ``numerical_gradient``, ``os``, ``sys``
and, in chapters 7 and 8, ``pickle``. Each fastzero network module
star-imports this module and lists :data:`BOOK_NAMES` in its ``__all__``.
"""
import os  # noqa: F401
import pickle  # noqa: F401
import sys  # noqa: F401
from collections import OrderedDict  # noqa: F401

from fastzero.gradient import numerical_gradient  # noqa: F401
from fastzero.layers import *  # noqa: F401,F403
from fastzero.layers import __all__ as _layers_all

BOOK_NAMES: list[str] = [*_layers_all, "OrderedDict", "numerical_gradient", "os", "pickle", "sys"]
__all__ = BOOK_NAMES
