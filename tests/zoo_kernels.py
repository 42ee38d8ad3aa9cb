"""Zoo cases for kernel-matrix operators, sparse operators, Jacobian and Hessian operators.

Each case is registered with ``@case(...)`` from :mod:`tests.zoo` and returns ``(operator,
dense numpy twin)``; the twin is built independently with numpy, never with ``to_dense``.
"""

from __future__ import annotations

import numpy as np

import linops as lo

from .zoo import case  # noqa: F401
