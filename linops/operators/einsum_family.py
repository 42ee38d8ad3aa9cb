"""The Einsum family of structured matrices (Potapczynski et al., NeurIPS 2024).

A point ``θ = (α, β, γ, δ, ε, φ, ρ) ∈ [0, 1]^7`` with ``α + β + γ = δ + ε + φ = 1`` names a
``d_out x d_in`` operator. The input size is split into three axes ``a ≈ d_in^α``,
``b ≈ d_in^β``, ``g ≈ d_in^γ`` and the output size into ``d ≈ d_out^δ``, ``e ≈ d_out^ε``,
``f ≈ d_out^φ``; the rank axis has ``r ≈ min(d_in, d_out)^ρ``. With cores ``A[f, d, r, g, a]``
and ``B[f, e, r, g, b]``, the matrix is (exact index formula)::

    W[(f, e, d), (g, b, a)] = Σ_r A[f, d, r, g, a] B[f, e, r, g, b]

    y[f, e, d] = Σ_{r, g, b} (Σ_a A[f, d, r, g, a] x[g, b, a]) B[f, e, r, g, b]

Conventions (docs/einsum_family.md derives the counts and the exponents):

* input index ``i = (g b_size + b) a_size + a`` (``x[g, b, a]`` row-major), zero-padded from
  ``d_in`` to ``a b g``; output index ``o = (f e_size + e) d_size + d`` (``y[f, e, d]``
  row-major), cut to the first ``d_out``.
* "d" is ``d_in`` for the input axes and ``d_out`` for the output axes (:func:`einsum_sizes`).
* axes of size 1 are dropped; the product is two pairwise contractions in the order that
  ``opt_einsum.contract_path`` picks for the shapes (cheapest of x·A, x·B, A·B first), cached
  per shape. Without opt_einsum the same count picks the order, ties going to x·A, x·B, A·B.
  Each contraction runs as one batched matrix product on the backend.

Named points (:func:`einsum_points`): dense ``α = δ = 1``; low rank ``α = ε = 1, ρ > 0``;
Kronecker ``(½, ½, 0, ½, ½, 0, 0)`` and tensor train ``(½, ½, 0, ½, ½, 0, ρ)``; Monarch
``(½, 0, ½, 0, ½, ½, 0)`` and BTT ``(½, 0, ½, 0, ½, ½, ρ)``.
"""

from __future__ import annotations

import functools
import math
from math import prod
from typing import NamedTuple

import numpy as np

from ..backends import backend_named
from ..errors import ShapeError
from .base import LinearOperator, combine
from .dense import Dense

__all__ = [
    "Einsum", "EinsumSizes", "einsum_points", "einsum_sizes", "einsum_exponents", "einsum_rank", "einsum_counts", "check_theta",
    "einsum_project",
]

THETA_NAMES = ("alpha", "beta", "gamma", "delta", "epsilon", "phi", "rho")
_SUM_TOL = 1e-9  # α+β+γ and δ+ε+φ must be 1 to this absolute tolerance


class EinsumSizes(NamedTuple):
    """Axis sizes: input ``a, b, g``, output ``d, e, f``, rank ``r`` (cores A (f,d,r,g,a), B (f,e,r,g,b))."""

    a: int
    b: int
    g: int
    d: int
    e: int
    f: int
    r: int

    @property
    def n_in(self) -> int:
        return self.a * self.b * self.g

    @property
    def n_out(self) -> int:
        return self.d * self.e * self.f


def einsum_points(rho: float = 0.25) -> dict[str, tuple[float, ...]]:
    """The paper's named points ``name -> θ``; ``rho`` is the rank exponent of low rank, TT and BTT."""
    h = 0.5
    return {
        "dense": (1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0),
        "low_rank": (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, rho),
        "kronecker": (h, h, 0.0, h, h, 0.0, 0.0),
        "tt": (h, h, 0.0, h, h, 0.0, rho),
        "monarch": (h, 0.0, h, 0.0, h, h, 0.0),
        "btt": (h, 0.0, h, 0.0, h, h, rho),
    }


def check_theta(theta) -> tuple[float, ...]:
    """``θ`` as 7 floats, or ValueError saying what is wrong. A name of :func:`einsum_points` is
    accepted for its point (rank exponent 1/4 where it has one)."""
    if isinstance(theta, str):
        points = einsum_points()
        if theta not in points:
            raise ValueError(f"Einsum: unknown named point {theta!r}; known: {', '.join(points)}")
        theta = points[theta]
    try:
        vals = tuple(float(t) for t in theta)
    except (TypeError, ValueError):
        raise ValueError(f"Einsum: θ must be a sequence of 7 numbers {THETA_NAMES}, got {theta!r}") from None
    if len(vals) != 7:
        raise ValueError(f"Einsum: θ needs 7 entries {THETA_NAMES}, got {len(vals)}: {theta!r}")
    for name, v in zip(THETA_NAMES, vals, strict=True):
        if not (0.0 <= v <= 1.0):  # also catches NaN
            raise ValueError(f"Einsum: θ's {name} = {v} lies outside [0, 1]")
    s_in, s_out = sum(vals[:3]), sum(vals[3:6])
    if abs(s_in - 1) > _SUM_TOL:
        raise ValueError(f"Einsum: alpha + beta + gamma must be 1 (they split d_in), got {s_in:.12g} for θ = {vals}")
    if abs(s_out - 1) > _SUM_TOL:
        raise ValueError(f"Einsum: delta + epsilon + phi must be 1 (they split d_out), got {s_out:.12g} for θ = {vals}")
    return vals


def _round(x: float) -> int:
    return max(1, math.floor(x + 0.5))


def _split(n: int, exps) -> list[int]:
    """Sizes ``≈ n^e`` with product ``>= n``: zero exponents give 1, every nonzero one but the last
    ``floor(n^e + 1/2)`` (at least 1), the last ``ceil(n / product of the others)``."""
    nz = [i for i, e in enumerate(exps) if e > 0]
    sizes = [1] * len(exps)
    for i in nz[:-1]:
        sizes[i] = _round(n ** exps[i])
    sizes[nz[-1]] = -(-n // prod(sizes))
    return sizes


def einsum_sizes(theta, d_in: int, d_out: int | None = None) -> EinsumSizes:
    """Integer axis sizes for ``θ`` (rule in :func:`_split`; exact when every ``n^e`` is an integer).

    ``a, b, g`` split ``d_in``, ``d, e, f`` split ``d_out``, ``r = floor(min(d_in, d_out)^ρ + 1/2)``.
    """
    th = check_theta(theta)
    d_out = d_in if d_out is None else d_out
    for name, v in (("d_in", d_in), ("d_out", d_out)):
        if not (isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1):
            raise ValueError(f"einsum_sizes: {name} must be a positive integer, got {v!r}")
    a, b, g = _split(int(d_in), th[0:3])
    d, e, f = _split(int(d_out), th[3:6])
    r = _round(min(d_in, d_out) ** th[6])
    return EinsumSizes(a, b, g, d, e, f, r)


def einsum_exponents(theta) -> tuple[float, float, float]:
    """``(ν, ω, ψ)`` of ``θ`` for square ``d_in = d_out = d`` (derivation: docs/einsum_family.md).

    * FLOPs per input vector ``~ d^(1+ν)``, ``ν = ρ + min(max(φ+δ, β+γ), max(φ+ε, α+γ))``
      (the cheaper of contracting x with A or with B first);
    * parameters ``~ d^(1+ν-ω)``, i.e. ``ω = 1 + ν - ρ - max(α+γ+δ+φ, β+γ+ε+φ)``;
    * rank ``~ d^ψ``, ``ψ = min(φ + min(δ+ε, γ+κ), γ + min(α+β, φ+κ))`` with the per-block rank
      ``κ = min(δ+ε, α+β, ρ + min(α, δ) + min(β, ε))``.
    """
    al, be, ga, de, ep, ph, rh = check_theta(theta)
    nu = rh + min(max(ph + de, be + ga), max(ph + ep, al + ga))
    params = rh + max(al + ga + de + ph, be + ga + ep + ph)
    kappa = min(de + ep, al + be, rh + min(al, de) + min(be, ep))
    psi = min(ph + min(de + ep, ga + kappa), ga + min(al + be, ph + kappa))
    return nu, 1 + nu - params, psi


def einsum_rank(sizes: EinsumSizes) -> int:
    """Rank of an unpadded Einsum matrix with generic cores: each of the ``f x g`` blocks is a sum
    of ``r`` Kronecker products, of rank ``k = min(d e, a b, r min(a, d) min(b, e))``, and
    ``rank W = min(f min(d e, g k), g min(a b, f k))``."""
    a, b, g, d, e, f, r = sizes
    k = min(d * e, a * b, r * min(a, d) * min(b, e))
    return min(f * min(d * e, g * k), g * min(a * b, f * k))


# ------------------------------------------------------------------ contraction plans
_FWD = (("fdrga", "fergb", "gbac"), "fedc")  # y[f,e,d,c] from A, B and x[g,b,a,c]
_RWD = (("fdrga", "fergb", "cfed"), "cgba")  # (X @ W)[c,g,b,a] from A, B and X[c,f,e,d]
_ORDERS = ((0, 2), (1, 2), (0, 1))  # fallback preference on ties: x·A, x·B, A·B


class Plan(NamedTuple):
    """Two pairwise contractions: ``first`` (operand indices), their equations and flop counts."""

    first: tuple[int, int]
    equations: tuple[str, str]
    costs: tuple[int, int]
    terms: tuple[str, str, str]
    out: str
    chosen_by: str

    @property
    def flops(self) -> int:
        return sum(self.costs)


def _step_cost(letters: set, removed: set, size: dict) -> int:
    """opt_einsum's count for a pairwise contraction: the product of all index sizes, doubled
    when an index is summed (a multiply and an add), single for a pure outer/elementwise product."""
    return prod(size[c] for c in letters) * (2 if removed else 1)


def _steps(terms, out, size, pair):
    i, j = pair
    (k,) = {0, 1, 2} - {i, j}
    si, sj, sk = terms[i], terms[j], terms[k]
    inter = "".join(c for c in dict.fromkeys(si + sj) if c in sk or c in out)
    c1 = _step_cost(set(si + sj), set(si + sj) - set(inter), size)
    c2 = _step_cost(set(inter + sk), set(inter + sk) - set(out), size)
    return (f"{si},{sj}->{inter}", f"{inter},{sk}->{out}"), (c1, c2)


@functools.lru_cache(maxsize=512)
def _plan(which: str, size_items: tuple) -> Plan:
    full_terms, full_out = _FWD if which == "fwd" else _RWD
    size = dict(size_items)
    keep = {c for c, n in size.items() if n > 1}
    terms = tuple("".join(c for c in t if c in keep) for t in full_terms)
    out = "".join(c for c in full_out if c in keep)
    try:
        import opt_einsum
    except ImportError:
        opt_einsum = None
    if opt_einsum is not None:
        shapes = [tuple(size[c] for c in t) for t in terms]
        path, _ = opt_einsum.contract_path(f"{','.join(terms)}->{out}", *shapes, shapes=True, optimize="optimal")
        first = tuple(sorted(path[0]))
        eqs, costs = _steps(terms, out, size, first)
        return Plan(first, eqs, costs, terms, out, "opt_einsum")
    best = min(_ORDERS, key=lambda p: (sum(_steps(terms, out, size, p)[1]), _ORDERS.index(p)))
    eqs, costs = _steps(terms, out, size, best)
    return Plan(best, eqs, costs, terms, out, "fallback")


def _permute(xp, t, src: str, dst: str):
    """Axes labelled ``src`` reordered to ``dst`` (one moveaxis call: a view where the backend has them)."""
    if src == dst:
        return t
    return xp.moveaxis(t, tuple(range(len(src))), tuple(dst.index(c) for c in src))


def _pair(xp, eq: str, x, y, size: dict):
    """One pairwise einsum ``eq`` as a batched matrix product (batch, free-left, summed, free-right)."""
    lhs, so = eq.split("->")
    sx, sy = lhs.split(",")
    lone_x = "".join(c for c in sx if c not in sy and c not in so)
    lone_y = "".join(c for c in sy if c not in sx and c not in so)
    if lone_x:  # an index of one operand only, summed away (never occurs for the Einsum family)
        sx2 = "".join(c for c in sx if c not in lone_x)
        x, sx = xp.einsum(f"{sx}->{sx2}", x), sx2
    if lone_y:
        sy2 = "".join(c for c in sy if c not in lone_y)
        y, sy = xp.einsum(f"{sy}->{sy2}", y), sy2
    bat = "".join(c for c in so if c in sx and c in sy)
    left = "".join(c for c in so if c in sx and c not in sy)
    right = "".join(c for c in so if c in sy and c not in sx)
    summed = "".join(c for c in sx if c in sy and c not in so)
    n = lambda s: prod(size[c] for c in s)  # noqa: E731
    xm = _permute(xp, x, sx, bat + left + summed).reshape(n(bat), n(left), n(summed))
    ym = _permute(xp, y, sy, bat + summed + right).reshape(n(bat), n(summed), n(right))
    z = (xm @ ym).reshape(tuple(size[c] for c in bat + left + right))
    return _permute(xp, z, bat + left + right, so)


def _items(s: EinsumSizes, columns: int) -> tuple:
    return (("a", s.a), ("b", s.b), ("g", s.g), ("d", s.d), ("e", s.e), ("f", s.f), ("r", s.r), ("c", int(columns)))


def einsum_counts(sizes: EinsumSizes, columns: int = 1) -> tuple[int, int]:
    """``(parameters, flops)`` of an Einsum operator with these sizes, without building it: flops
    of a product with ``columns`` columns by the plan the operator runs (:meth:`Einsum.plan`)."""
    s = sizes
    return s.f * s.r * s.g * (s.d * s.a + s.e * s.b), _plan("fwd", _items(s, columns)).flops


class Einsum(LinearOperator):
    """The Einsum-family matrix of cores ``A`` (f, d, r, g, a) and ``B`` (f, e, r, g, b) (module
    docstring), ``d_out x d_in`` with ``d_in <= a b g`` (zero-padded input) and ``d_out <= d e f``
    (cut output), defaulting to the full sizes. ``Einsum.from_theta`` builds one from ``θ``.

    Parameters ``f r g (d a + e b)``; a product with ``c`` columns costs ``self.flops(c)``
    (the opt_einsum count of the two contractions it runs, ``self.plan(c)``).
    """

    _leaves = ("A", "B")

    def __init__(self, A, B, d_in: int | None = None, d_out: int | None = None, theta=None, annotations=()):
        if getattr(A, "ndim", None) != 5 or getattr(B, "ndim", None) != 5:
            raise ShapeError(
                "Einsum: cores must be 5-D, A (f, d, r, g, a) and B (f, e, r, g, b) (use size 1 for absent axes); "
                f"got shapes {tuple(getattr(A, 'shape', ()))} and {tuple(getattr(B, 'shape', ()))}"
            )
        f, d, r, g, a = (int(v) for v in A.shape)
        fb, e, rb, gb, b = (int(v) for v in B.shape)
        if (fb, rb, gb) != (f, r, g):
            raise ShapeError(f"Einsum: A of shape {tuple(A.shape)} needs B of shape ({f}, e, {r}, {g}, b), got {tuple(B.shape)}")
        n_in, n_out = g * b * a, f * e * d
        d_in = n_in if d_in is None else int(d_in)
        d_out = n_out if d_out is None else int(d_out)
        if not 1 <= d_in <= n_in:
            raise ShapeError(f"Einsum: d_in = {d_in} cannot be padded to the input grid g x b x a = {g}x{b}x{a} = {n_in}")
        if not 1 <= d_out <= n_out:
            raise ShapeError(f"Einsum: d_out = {d_out} cannot be cut from the output grid f x e x d = {f}x{e}x{d} = {n_out}")
        if theta is not None:
            theta = check_theta(theta)
        _, xp, dtype, device = combine((Dense(A.reshape(f * d, r * g * a)), Dense(B.reshape(f * e, r * g * b))), "Einsum cores")
        self.A, self.B = xp.astype(A, dtype), xp.astype(B, dtype)
        self.d_in, self.d_out, self.theta = d_in, d_out, theta
        super().__init__((d_out, d_in), dtype, xp, device, annotations)

    @classmethod
    def from_theta(cls, theta, d_in: int, d_out: int | None = None, *, seed: int = 0, dtype="float64",
                   backend: str = "numpy", device=None) -> Einsum:
        """A random Einsum operator at ``θ`` with sizes :func:`einsum_sizes`.

        Initialisation: independent Gaussians, ``A ~ N(0, 1/(a r))`` and ``B ~ N(0, 1/(g b))``, so
        every entry of ``W`` has variance ``1/(a b g)`` (LeCun-normal on the padded input, as a
        dense layer); complex dtypes draw real and imaginary parts with half the variance each.
        """
        d_out = d_in if d_out is None else d_out
        s = einsum_sizes(theta, d_in, d_out)
        xp = backend_named(backend)
        dt = xp.as_dtype(dtype)
        rng = np.random.default_rng(seed)

        def draw(shape, var):
            z = rng.standard_normal(shape)
            if xp.is_complex(dt):
                z = (z + 1j * rng.standard_normal(shape)) / math.sqrt(2)
            return xp.asarray(z * math.sqrt(var), dtype=dt, device=device)

        A = draw((s.f, s.d, s.r, s.g, s.a), 1 / (s.a * s.r))
        B = draw((s.f, s.e, s.r, s.g, s.b), 1 / (s.g * s.b))
        return cls(A, B, d_in, d_out, theta)

    # ---------------------------------------------------------------- sizes
    @property
    def sizes(self) -> EinsumSizes:
        f, d, r, g, a = (int(v) for v in self.A.shape)
        e, b = int(self.B.shape[1]), int(self.B.shape[4])
        return EinsumSizes(a, b, g, d, e, f, r)

    @property
    def num_params(self) -> int:
        return einsum_counts(self.sizes)[0]

    def _size_items(self, columns: int) -> tuple:
        return _items(self.sizes, columns)

    def plan(self, columns: int = 1, transposed: bool = False) -> Plan:
        """The contraction order and flop counts of ``self @ X`` (``X @ self`` if ``transposed``)."""
        return _plan("rwd" if transposed else "fwd", self._size_items(columns))

    def flops(self, columns: int = 1) -> int:
        """Flops of ``self @ X`` for ``X`` with ``columns`` columns (opt_einsum's count of the plan run)."""
        return self.plan(columns).flops

    # ------------------------------------------------------------- products
    def _run(self, plan: Plan, operands, size: dict):
        xp = self.xp
        i, j = plan.first
        (k,) = {0, 1, 2} - {i, j}
        t = _pair(xp, plan.equations[0], operands[i], operands[j], size)
        return _pair(xp, plan.equations[1], t, operands[k], size)

    def _kept(self, t, letters: str, size: dict):
        return t.reshape(tuple(size[c] for c in letters))

    def _matmat(self, X):
        xp = self.xp
        s = self.sizes
        c = X.shape[1]
        if self.d_in < s.n_in:
            X = xp.concat([X, xp.zeros((s.n_in - self.d_in, c), X.dtype, xp.device_of(X))], 0)
        items = self._size_items(c)
        plan, size = _plan("fwd", items), dict(items)
        ops = [self._kept(t, lt, size) for t, lt in zip((self.A, self.B, X), plan.terms, strict=True)]
        Y = self._run(plan, ops, size).reshape(s.n_out, c)
        return Y[: self.d_out]

    def _rmatmat(self, X):  # X @ W for X (c, d_out)
        xp = self.xp
        s = self.sizes
        c = X.shape[0]
        if self.d_out < s.n_out:
            X = xp.concat([X, xp.zeros((c, s.n_out - self.d_out), X.dtype, xp.device_of(X))], 1)
        items = self._size_items(c)
        plan, size = _plan("rwd", items), dict(items)
        ops = [self._kept(t, lt, size) for t, lt in zip((self.A, self.B, X), plan.terms, strict=True)]
        Y = self._run(plan, ops, size).reshape(c, s.n_in)
        return Y[:, : self.d_in]

    def _matmat_rows(self, X):
        """``X @ W^T`` for X (c, d_in): the row product of the transposed Einsum, whose cores are
        permuted copies of A and B (O(parameters), no copy of the activations)."""
        return self._transpose()._rmatmat(X)

    def to_dense(self):
        return self._matmat(self.xp.eye(self.d_in, self.dtype, self.device))

    # ------------------------------------------------------------- algebra
    def _swapped(self, A, B):
        th = self.theta
        th = None if th is None else (*th[3:6], *th[0:3], th[6])
        return Einsum(A, B, self.d_out, self.d_in, th)

    def _transpose(self):
        """``W^T`` is the Einsum with input and output roles swapped: ``θ -> (δ, ε, φ, α, β, γ, ρ)``,
        ``A'[g, a, r, f, d] = A[f, d, r, g, a]`` and ``B'[g, b, r, f, e] = B[f, e, r, g, b]``."""
        xp = self.xp
        return self._swapped(_permute(xp, self.A, "fdrga", "garfd"), _permute(xp, self.B, "fergb", "gbrfe"))

    def _adjoint(self):
        xp = self.xp
        return self._swapped(_permute(xp, xp.conj(self.A), "fdrga", "garfd"), _permute(xp, xp.conj(self.B), "fergb", "gbrfe"))

    def _scale(self, c):
        return Einsum(c * self.A, self.B, self.d_in, self.d_out, self.theta)

    # ------------------------------------------------- the named special points
    def _need(self, what: str, **one):
        s = self.sizes._asdict()
        bad = [k for k in one if s[k] != 1]
        if bad:
            raise ShapeError(f"{self._label()} is not a {what}: it needs axes {', '.join(sorted(one))} of size 1, "
                             f"but {', '.join(f'{k} = {s[k]}' for k in bad)}")

    def _cut(self, op):
        s = self.sizes
        if (self.d_out, self.d_in) == (s.n_out, s.n_in):
            return op
        return op[: self.d_out, : self.d_in]

    def output_shuffle(self) -> np.ndarray:
        """``perm`` with ``y_einsum = y_btt[perm]`` for the Monarch/BTT points: the Einsum's output
        is ``y[f, e]`` (f slow) while Monarch/BTT emit ``(e, f)`` (f fast): ``perm[f E + e] = e F + f``."""
        s = self.sizes
        return np.arange(s.e * s.f).reshape(s.e, s.f).T.reshape(-1)

    def as_lowrank(self):
        """``U V^H`` with ``U = B[0, :, :, 0, 0]`` (e, r) and ``V = conj(A[0, 0, :, 0, :])^T`` (a, r),
        for the low-rank points (``b = d = f = g = 1``)."""
        from .lowrank import LowRank

        self._need("low-rank point", b=1, d=1, f=1, g=1)
        xp = self.xp
        U = self.B[0, :, :, 0, 0][: self.d_out]
        V = xp.conj(self.A[0, 0, :, 0, :]).T[: self.d_in]
        return LowRank(U, V)

    def tt_cores(self):
        """``(G1, G2)`` of the two-core tensor train ``W[(o1, o2), (i1, i2)] = Σ_r G1[o1, i1, r] G2[r, o2, i2]``
        at the TT points (``f = g = 1``): ``G1[e, b, r] = B[0, e, r, 0, b]``, ``G2[r, d, a] = A[0, d, r, 0, a]``
        (output ``(e, d)`` and input ``(b, a)`` grids, both row-major: no permutation)."""
        self._need("tensor-train point", f=1, g=1)
        xp = self.xp
        return _permute(xp, self.B[0, :, :, 0, :], "erb", "ebr"), _permute(xp, self.A[0, :, :, 0, :], "dra", "rda")

    def as_tensor_train(self):
        """``TensorTrain([G1[None], G2[..., None]], d_in, d_out)`` from :meth:`tt_cores` at the TT points
        (cores ``(1, e, b, r)`` and ``(r, d, a, 1)``; same grids and orderings, padding included)."""
        from .tensor_train import TensorTrain

        G1, G2 = self.tt_cores()
        return TensorTrain([G1[None], G2[..., None]], self.d_in, self.d_out)

    def as_kronecker(self):
        """``Kronecker(Dense(B[0, :, 0, 0, :]), Dense(A[0, :, 0, 0, :]))`` at the Kronecker points
        (``f = g = r = 1``): ``W[(e, d), (b, a)] = B[e, b] A[d, a]`` is numpy's ``kron(B, A)``."""
        from .kronecker import Kronecker

        self._need("Kronecker point", f=1, g=1, r=1)
        return self._cut(Kronecker(Dense(self.B[0, :, 0, 0, :]), Dense(self.A[0, :, 0, 0, :])))

    def btt_cores(self):
        """``(R, L)`` of :class:`~linops.BTT` at the BTT points (``b = d = 1``): input grid ``(g, a)``,
        output grid ``(e, f)``; ``R[g, f, r, a] = A[f, 0, r, g, a]``, ``L[f, e, g, r] = B[f, e, r, g, 0]``."""
        self._need("BTT point", b=1, d=1)
        xp = self.xp
        return _permute(xp, self.A[:, 0], "frga", "gfra"), _permute(xp, self.B[..., 0], "ferg", "fegr")

    def as_btt(self):
        """``P @ BTT(R, L)`` (``P`` the :meth:`output_shuffle` permutation, then the output cut)."""
        from .btt import BTT

        R, L = self.btt_cores()
        return self._shuffled(BTT(R, L, self.d_in))

    def as_monarch(self):
        """``P @ Monarch(R, L)`` at the Monarch points (``b = d = r = 1``): ``g`` input blocks
        ``R[g] = A[:, 0, 0, g, :]`` (f x a) and ``f`` output blocks ``L[f] = B[f, :, 0, :, 0]``
        (e x g); ``P`` as in :meth:`as_btt`. With ``r > 1`` it is ``BTT.as_monarch()`` (inner width f r)."""
        from .btt import BTT
        from .monarch import Monarch

        self._need("Monarch (or BTT) point", b=1, d=1)
        if self.sizes.r > 1:
            R, L = self.btt_cores()
            return self._shuffled(BTT(R, L, self.d_in).as_monarch())
        xp = self.xp
        R = _permute(xp, self.A[:, 0, 0], "fga", "gfa")
        L = self.B[:, :, 0, :, 0]
        return self._shuffled(Monarch(R, L, self.d_in))

    def _shuffled(self, op):
        from .permutation import Permutation

        P = Permutation(self.output_shuffle().tolist())
        out = P @ op
        return out if self.d_out == op.shape[0] else out[: self.d_out, :]

    def __repr__(self) -> str:
        s = self.sizes
        th = "" if self.theta is None else "θ=(" + ", ".join(f"{t:.3g}" for t in self.theta) + "), "
        return (f"{self._label()[:-1]}; {th}in g,b,a={s.g},{s.b},{s.a} out f,e,d={s.f},{s.e},{s.d} r={s.r}, "
                f"{self.num_params} parameters, {self.flops(1)} flops/vector)")


def einsum_project(M, sizes: EinsumSizes, theta=None):
    """The Einsum operator with these ``sizes`` nearest ``M`` (d_out, d_in), and the relative error.

    For each pair ``(f, g)`` the entries ``W[(f, e, d), (g, b, a)]`` form the matrix
    ``T_fg[(d, a), (e, b)] = Σ_r A[f, d, r, g, a] B[f, e, r, g, b]`` of rank at most ``r``, and
    no parameter is shared between pairs: so the best fit is the rank-``r`` truncated SVD of
    each rearranged block (Eckart-Young), one batched SVD. Optimal in the Frobenius norm when the
    sizes factor ``d_in`` and ``d_out`` exactly; with padding it fits the zero-padded ``M``.
    At the Monarch point this is the Monarch projection, at the low-rank point the truncated SVD,
    at the Kronecker point Van Loan's nearest Kronecker product. Returns ``(Einsum, error)``.
    """
    from ..backends import backend_of

    xp = backend_of(M)
    if xp is None or getattr(M, "ndim", None) != 2:
        raise ShapeError(f"einsum_project needs a 2-D array, got {type(M).__name__}")
    s = sizes
    d_out, d_in = (int(v) for v in M.shape)
    if d_in > s.n_in or d_out > s.n_out:
        raise ShapeError(f"einsum_project: M of shape {(d_out, d_in)} does not fit the grid {(s.n_out, s.n_in)} of {s}")
    T, dev = M, xp.device_of(M)
    if d_in < s.n_in:
        T = xp.concat([T, xp.zeros((d_out, s.n_in - d_in), M.dtype, dev)], 1)
    if d_out < s.n_out:
        T = xp.concat([T, xp.zeros((s.n_out - d_out, s.n_in), M.dtype, dev)], 0)
    T = _permute(xp, T.reshape(s.f, s.e, s.d, s.g, s.b, s.a), "fedgba", "fgdaeb").reshape(s.f * s.g, s.d * s.a, s.e * s.b)
    U, sv, Vh = xp.svd(T)
    r = min(s.r, int(sv.shape[-1]))
    root = xp.astype(xp.sqrt(sv[:, :r]), M.dtype)
    A = (U[:, :, :r] * root[:, None, :]).reshape(s.f, s.g, s.d, s.a, r)  # [f, g, d, a, r]
    B = (Vh[:, :r, :] * root[:, :, None]).reshape(s.f, s.g, r, s.e, s.b)  # [f, g, r, e, b]
    A, B = _permute(xp, A, "fgdar", "fdrga"), _permute(xp, B, "fgreb", "fergb")
    if r < s.r:  # fewer singular values than the rank: the extra rank slices are zero
        A = xp.concat([A, xp.zeros((s.f, s.d, s.r - r, s.g, s.a), M.dtype, dev)], 2)
        B = xp.concat([B, xp.zeros((s.f, s.e, s.r - r, s.g, s.b), M.dtype, dev)], 2)
    W = Einsum(A, B, d_in, d_out, theta)
    diff = W.to_dense() - M
    norm = xp.sqrt(xp.sum(xp.real(xp.conj(M) * M)))
    err = xp.sqrt(xp.sum(xp.real(xp.conj(diff) * diff))) / xp.where(norm > 0, norm, 1 + 0 * norm)
    return W, err
