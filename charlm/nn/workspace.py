"""Scratch arrays kept from one training step to the next.

Every training step needs the same large arrays (a chunk's gate values, caches and gradients:
about 700 MB of allocations per step at 2 layers x 512, batch 64, 128 steps). Fresh memory from
the system costs a page fault and a zeroing pass per page each time it is touched; reusing the
arrays made a 2 x 512 LSTM step 15-20% faster (benchmarks/README.md). A Workspace hands out the
same array for the same name and shape every step. Scoring with several streams reuses one per
pass; the gradient checks use FRESH, which allocates as usual.

Names must be unique among arrays alive at the same time: the model scopes each layer's forward
cache by layer, and lets the layers share the arrays that die within a layer's turn.
"""

import numpy as np


class Workspace:
    """Named scratch arrays, reused while the name, shape and dtype stay the same."""

    def __init__(self, _prefix=(), _arrays=None):
        self._prefix = _prefix
        self._arrays = {} if _arrays is None else _arrays

    def empty(self, name, shape, dtype):
        """An uninitialised array, the same one as last time for this name and shape."""
        key = self._prefix + (name,)
        array = self._arrays.get(key)
        if array is None or array.shape != tuple(shape) or array.dtype != dtype:
            array = np.empty(shape, dtype)
            self._arrays[key] = array
        return array

    def scope(self, name):
        """A view of this workspace whose names are prefixed with name (e.g. a layer)."""
        return Workspace(self._prefix + (name,), self._arrays)

    def nbytes(self):
        return sum(a.nbytes for a in self._arrays.values())


class _Fresh:
    """The workspace interface without reuse: every call allocates."""

    def empty(self, name, shape, dtype):
        return np.empty(shape, dtype)

    def scope(self, name):
        return self


FRESH = _Fresh()
