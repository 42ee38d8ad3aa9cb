"""Structures of a layer's weight: how a ``d_out x d_in`` matrix is parameterised by cores.

A structure is a small frozen object (``Dense()``, ``LowRank(rank)``, ``Kronecker()``,
``Monarch(blocks)``, ``BTT(rank)``, ``TT(cores, rank)``, ``Einsum(theta)``) that knows, for
given sizes ``d_in, d_out``:

* ``cores(d_in, d_out)``: the parameter arrays as :class:`Core` records (name, shape, and the
  core's own fan-in and fan-out, which set its initialisation and learning rate, :mod:`.mup`);
* ``operator(params, d_in, d_out)``: the weight as a linops operator of shape ``(d_out, d_in)``
  (torch's ``nn.Linear.weight`` layout), built from a mapping ``name -> array`` of any backend;
  a layer computes ``x @ W.T`` on row-major ``(batch, d_in)`` activations;
* ``project(W)``: the parameters of the structured matrix nearest a dense ``(d_out, d_in)`` weight
  (Frobenius norm), with the relative error.

Fan-in and fan-out of a core: the core tensor read as a matrix, its contracted indices as the
columns and all its other indices as the rows. The fan-in is the size contracted in the product
(what each output entry sums over), the fan-out the number of the remaining entries. A Monarch
factor ``R`` of ``k`` blocks ``q x p`` has fan-in ``p`` and fan-out ``k q``; a BTT core
``L[o2, o1, i1, a]`` contracts ``(i1, a)`` (fan-in ``n1 r``) and has fan-out ``m2 m1 = d_out``.
``docs/nn.md`` explains the choice: with it the muP init keeps a square dense, Monarch, BTT,
Kronecker or Einsum-point layer's output RMS equal to its input's, at every width.

The structures hold no arrays and no backend: the same object serves torch modules, Flax NNX
modules and plain functions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, NamedTuple

__all__ = [
    "Core", "Structure", "Dense", "LowRank", "Kronecker", "Monarch", "BTT", "TT", "Einsum", "as_structure",
]


class Core(NamedTuple):
    """One parameter array of a structured weight."""

    name: str
    shape: tuple[int, ...]
    fan_in: int
    fan_out: int


def _norm(xp, M):
    return xp.sqrt(xp.sum(xp.real(xp.conj(M) * M)))


def _rel_err(xp, M, W):
    n = _norm(xp, M)
    return float(_norm(xp, W - M) / (n if float(n) > 0 else 1.0))


def _check_sizes(name: str, d_in, d_out) -> None:
    for what, v in (("d_in", d_in), ("d_out", d_out)):
        if not (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"{name}: {what} must be a positive integer, got {v!r}")


@dataclass(frozen=True)
class Structure:
    """Base class of the weight structures (module docstring)."""

    name: ClassVar[str] = "structure"

    def cores(self, d_in: int, d_out: int) -> tuple[Core, ...]:
        raise NotImplementedError

    def operator(self, params: Mapping[str, Any], d_in: int, d_out: int):
        raise NotImplementedError

    def project(self, W) -> tuple[dict, float]:
        """``(params, relative Frobenius error)`` of the structured matrix nearest ``W`` (d_out, d_in)."""
        raise NotImplementedError

    def num_params(self, d_in: int, d_out: int) -> int:
        return sum(math.prod(c.shape) for c in self.cores(d_in, d_out))

    def flops(self, d_in: int, d_out: int) -> int:
        """Flops of one input vector (a multiply-add counted as 2); every core is used once per
        input here, so it is twice the parameter count unless a structure says otherwise."""
        return 2 * self.num_params(d_in, d_out)

    def label(self) -> str:
        return repr(self)


# ------------------------------------------------------------------------------ dense, low rank
@dataclass(frozen=True)
class Dense(Structure):
    """An unstructured weight, core ``weight`` (d_out, d_in)."""

    name: ClassVar[str] = "dense"

    def cores(self, d_in, d_out):
        _check_sizes("Dense", d_in, d_out)
        return (Core("weight", (d_out, d_in), d_in, d_out),)

    def operator(self, params, d_in, d_out):
        from ..operators import Dense as DenseOp

        return DenseOp(params["weight"])

    def project(self, W):
        return {"weight": W}, 0.0


@dataclass(frozen=True)
class LowRank(Structure):
    """``W = U V^T``, cores ``U`` (d_out, r) and ``V`` (d_in, r).

    ``rank``: an int, or a float in (0, 1] read as a fraction of ``min(d_in, d_out)`` (so the
    rank grows with the width and the layer stays comparable across widths).
    """

    rank: int | float = 0.25
    name: ClassVar[str] = "low_rank"

    def r(self, d_in, d_out) -> int:
        k = self.rank
        if isinstance(k, bool) or not isinstance(k, (int, float)) or k <= 0:
            raise ValueError(f"LowRank: rank must be a positive int or a fraction in (0, 1], got {k!r}")
        if isinstance(k, float):
            if k > 1:
                raise ValueError(f"LowRank: a float rank is a fraction of min(d_in, d_out) and must be <= 1, got {k}")
            return max(1, round(k * min(d_in, d_out)))
        return min(k, d_in, d_out)

    def cores(self, d_in, d_out):
        _check_sizes("LowRank", d_in, d_out)
        r = self.r(d_in, d_out)
        return (Core("U", (d_out, r), r, d_out), Core("V", (d_in, r), d_in, r))

    def operator(self, params, d_in, d_out):
        from ..operators import LowRank as LowRankOp

        return LowRankOp(params["U"], params["V"])

    def project(self, W):
        from ..backends import backend_of

        xp = backend_of(W)
        d_out, d_in = (int(v) for v in W.shape)
        r = self.r(d_in, d_out)
        U, s, Vh = xp.svd(W)
        root = xp.astype(xp.sqrt(s[:r]), W.dtype)
        params = {"U": U[:, :r] * root, "V": xp.conj(Vh[:r]).T * root}
        return params, _rel_err(xp, W, params["U"] @ xp.conj(params["V"]).T)


# ------------------------------------------------------------------------------ Kronecker
def _near_square(n: int) -> tuple[int, int]:
    """``(a, b)`` with ``a b = n`` and ``a <= b`` as close as possible."""
    a = math.isqrt(n)
    while n % a:
        a -= 1
    return a, n // a


@dataclass(frozen=True)
class Kronecker(Structure):
    """``W = A ⊗ B`` with ``A`` (m1, n1), ``B`` (m2, n2); ``d_in = n1 n2``, ``d_out = m1 m2``
    factored as near-square as the sizes allow (a prime size gives a trivial factor)."""

    name: ClassVar[str] = "kronecker"

    def grid(self, d_in, d_out):
        n1, n2 = _near_square(d_in)
        m1, m2 = _near_square(d_out)
        return (n1, n2), (m1, m2)

    def cores(self, d_in, d_out):
        _check_sizes("Kronecker", d_in, d_out)
        (n1, n2), (m1, m2) = self.grid(d_in, d_out)
        return (Core("A", (m1, n1), n1, m1), Core("B", (m2, n2), n2, m2))

    def operator(self, params, d_in, d_out):
        from ..operators import Dense as DenseOp
        from ..operators import Kronecker as KronOp

        return KronOp(DenseOp(params["A"]), DenseOp(params["B"]))

    def flops(self, d_in, d_out):
        (n1, n2), (m1, m2) = self.grid(d_in, d_out)
        return 2 * (n1 * m2 * n2 + m2 * m1 * n1)  # B on each of the n1 input slices, then A on each of m2

    def project(self, W):
        """Van Loan and Pitsianis: rearrange ``W`` so that ``A ⊗ B`` becomes the rank-1 matrix
        ``vec(A) vec(B)^T``; its best rank-1 approximation (SVD) is the nearest Kronecker product."""
        from ..backends import backend_of

        xp = backend_of(W)
        d_out, d_in = (int(v) for v in W.shape)
        (n1, n2), (m1, m2) = self.grid(d_in, d_out)
        T = xp.moveaxis(W.reshape(m1, m2, n1, n2), 2, 1).reshape(m1 * n1, m2 * n2)
        U, s, Vh = xp.svd(T)
        root = xp.astype(xp.sqrt(s[0]), W.dtype)
        A = (U[:, 0] * root).reshape(m1, n1)
        B = (Vh[0] * root).reshape(m2, n2)
        return {"A": A, "B": B}, _rel_err(xp, W, xp.kron(A, B))


# ------------------------------------------------------------------------------ Monarch, BTT
@dataclass(frozen=True)
class Monarch(Structure):
    """The Monarch matrix ``P2 L P1 R`` (:class:`linops.Monarch`), cores ``R`` (k, q, p) and
    ``L`` (l, s, r). ``blocks``: the number of blocks (default ``round(sqrt(min(d_in, d_out)))``)."""

    blocks: int | None = None
    name: ClassVar[str] = "monarch"

    def shapes(self, d_in, d_out):
        from ..operators import monarch_shapes

        k = self.blocks if self.blocks is not None else max(1, round(math.sqrt(min(d_in, d_out))))
        return monarch_shapes(d_in, d_out, k)

    def cores(self, d_in, d_out):
        _check_sizes("Monarch", d_in, d_out)
        (k, q, p), (l_, s, r) = self.shapes(d_in, d_out)
        return (Core("R", (k, q, p), p, k * q), Core("L", (l_, s, r), r, l_ * s))

    def operator(self, params, d_in, d_out):
        from ..operators import Monarch as MonarchOp

        return MonarchOp(params["R"], params["L"], d_in, d_out)

    def project(self, W):
        from ..operators import monarch_project

        d_out, d_in = (int(v) for v in W.shape)
        op, err = monarch_project(W, shapes=self.shapes(d_in, d_out))
        return {"R": op.R, "L": op.L}, float(err)


@dataclass(frozen=True)
class BTT(Structure):
    """The two-core Block Tensor-Train of rank ``rank`` (:class:`linops.BTT`), cores ``R``
    (n1, m2, r, n2) and ``L`` (m2, m1, n1, r); rank 1 is Monarch with sqrt(d) blocks."""

    rank: int = 1
    name: ClassVar[str] = "btt"

    def grid(self, d_in, d_out):
        from ..operators import btt_shapes

        if not (isinstance(self.rank, int) and self.rank >= 1):
            raise ValueError(f"BTT: rank must be a positive integer, got {self.rank!r}")
        return btt_shapes(d_in, d_out)

    def cores(self, d_in, d_out):
        _check_sizes("BTT", d_in, d_out)
        (n1, n2), (m1, m2) = self.grid(d_in, d_out)
        r = self.rank
        return (Core("R", (n1, m2, r, n2), n2, n1 * m2 * r), Core("L", (m2, m1, n1, r), n1 * r, m2 * m1))

    def operator(self, params, d_in, d_out):
        from ..operators import BTT as BTTOp

        return BTTOp(params["R"], params["L"], d_in, d_out)

    def project(self, W):
        from ..operators import btt_project

        d_out, d_in = (int(v) for v in W.shape)
        op, err = btt_project(W, self.rank, grid=self.grid(d_in, d_out))
        return {"R": op.R, "L": op.L}, float(err)


# ------------------------------------------------------------------------------ tensor train
@dataclass(frozen=True)
class TT(Structure):
    """A Tensor-Train matrix (:class:`linops.TensorTrain`) with ``ncores`` cores ``G0, G1, ...``
    of shapes (r_{k-1}, m_k, n_k, r_k) and interior ranks ``rank``."""

    ncores: int = 3
    rank: int = 4
    name: ClassVar[str] = "tt"

    def grid(self, d_in, d_out):
        from ..operators import tt_shapes

        for what, v in (("ncores", self.ncores), ("rank", self.rank)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"TT: {what} must be a positive integer, got {v!r}")
        return tt_shapes(d_in, d_out, self.ncores)

    def cores(self, d_in, d_out):
        _check_sizes("TT", d_in, d_out)
        ns, ms = self.grid(d_in, d_out)
        d = len(ns)
        ranks = [1] + [self.rank] * (d - 1) + [1]
        return tuple(
            Core(f"G{k}", (ranks[k], ms[k], ns[k], ranks[k + 1]), ranks[k] * ns[k], ms[k] * ranks[k + 1])
            for k in range(d)
        )

    def flops(self, d_in, d_out):
        from math import prod

        ns, ms = self.grid(d_in, d_out)
        cs = self.cores(d_in, d_out)
        return 2 * sum(c.shape[0] * c.shape[3] * ms[k] * ns[k] * prod(ms[:k]) * prod(ns[k + 1:]) for k, c in enumerate(cs))

    def operator(self, params, d_in, d_out):
        from ..operators import TensorTrain

        return TensorTrain([params[f"G{k}"] for k in range(self.ncores)], d_in, d_out)

    def project(self, W):
        from ..operators import tt_project

        d_out, d_in = (int(v) for v in W.shape)
        op, err = tt_project(W, rank=self.rank, grid=self.grid(d_in, d_out))
        params = {f"G{k}": G for k, G in enumerate(op.cores)}
        # TT-SVD may return lower ranks than asked (small unfoldings): pad with zeros to the layer's shapes
        from ..backends import backend_of

        xp = backend_of(W)
        for c in self.cores(d_in, d_out):
            G = params[c.name]
            if tuple(G.shape) != c.shape:
                pads = [(0, want - int(have)) for have, want in zip(G.shape, c.shape, strict=True)]
                Z = xp.zeros(c.shape, G.dtype, xp.device_of(G))
                params[c.name] = _embed(xp, Z, G, pads)
        return params, float(err)


def _embed(xp, Z, G, pads):
    """``Z`` with ``G`` written into its leading corner (functional, every backend)."""
    idx = tuple(slice(0, int(s)) for s in G.shape)
    if xp.name == "jax":
        return Z.at[idx].set(G)
    Z = Z.clone() if xp.name == "torch" else Z.copy()
    Z[idx] = G
    return Z


# ------------------------------------------------------------------------------ Einsum family
@dataclass(frozen=True)
class Einsum(Structure):
    """A point ``theta = (α, β, γ, δ, ε, φ, ρ)`` of the Einsum family (:class:`linops.Einsum`),
    cores ``A`` (f, d, r, g, a) and ``B`` (f, e, r, g, b). Named points: :func:`linops.einsum_points`."""

    theta: tuple = (0.5, 0.0, 0.5, 0.0, 0.5, 0.5, 0.0)
    name: ClassVar[str] = "einsum"

    def __post_init__(self):
        from ..operators import check_theta

        object.__setattr__(self, "theta", check_theta(self.theta))

    def sizes(self, d_in, d_out):
        from ..operators import einsum_sizes

        return einsum_sizes(self.theta, d_in, d_out)

    def cores(self, d_in, d_out):
        _check_sizes("Einsum", d_in, d_out)
        s = self.sizes(d_in, d_out)
        return (
            Core("A", (s.f, s.d, s.r, s.g, s.a), s.a, s.f * s.d * s.r * s.g),
            Core("B", (s.f, s.e, s.r, s.g, s.b), s.r * s.g * s.b, s.f * s.e),
        )

    def operator(self, params, d_in, d_out):
        from ..operators import Einsum as EinsumOp

        return EinsumOp(params["A"], params["B"], d_in, d_out, self.theta)

    def flops(self, d_in, d_out):
        from ..operators import einsum_counts

        return einsum_counts(self.sizes(d_in, d_out))[1]

    def project(self, W):
        from ..operators import einsum_project

        d_out, d_in = (int(v) for v in W.shape)
        op, err = einsum_project(W, self.sizes(d_in, d_out))
        return {"A": op.A, "B": op.B}, float(err)


_NAMED = {"dense": Dense, "low_rank": LowRank, "lowrank": LowRank, "kronecker": Kronecker, "monarch": Monarch,
          "btt": BTT, "tt": TT}


def as_structure(s) -> Structure:
    """A :class:`Structure` from itself or a name (``"dense"``, ``"low_rank"``, ``"kronecker"``,
    ``"monarch"``, ``"btt"``, ``"tt"``, ``"mlr"``, or an Einsum point name such as ``"einsum:monarch"``)."""
    if isinstance(s, Structure):
        return s
    if isinstance(s, str):
        key = s.lower()
        if key.startswith("einsum:"):
            from ..operators import einsum_points

            pts = einsum_points()
            if key[7:] not in pts:
                raise ValueError(f"unknown Einsum point {key[7:]!r}; named points: {sorted(pts)}")
            return Einsum(pts[key[7:]])
        if key == "mlr":  # its module builds on this one
            from .structures_mlr import MLR

            return MLR()
        if key in _NAMED:
            return _NAMED[key]()
        raise ValueError(f"unknown structure {s!r}; use one of {sorted([*_NAMED, 'mlr'])} or 'einsum:<point>', "
                         "or a structure object such as linops.nn.BTT(rank=2)")
    raise TypeError(f"structure must be a linops.nn structure or its name, got {type(s).__name__}")
