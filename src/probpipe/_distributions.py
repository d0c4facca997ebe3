"""NumPy distributions: the values workflow functions are broadcast over.

Every distribution has ``sample(n, rng)``, ``mean()``, ``var()`` and, where it
is defined, ``log_prob(x)``. Identity matters: the broadcast planner draws
each distribution *object* once per row, so passing the same object twice
gives the same draw, while two equal but distinct objects are independent.

Broadcast protocol (private, used by :mod:`probpipe._plan`):

``_root()``
    The distribution actually drawn. A co-sampled view such as ``boot["X"]``
    returns its parent, so every view of one parent shares one draw per row.
``_draw(n, rng) -> (shared, tokens)``
    Draw ``n`` rows. ``shared`` is what every row has in common (the dataset a
    bootstrap resamples) and travels to workers once; ``tokens[i]`` is row
    ``i``'s small private part (the resampled indices).
``_materializer()``
    A small picklable callable ``(shared, token) -> value`` that rebuilds
    this argument's value for one row on the worker.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._record import Record
from ._suggest import brief, shown

__all__ = [
    "Beta",
    "BootstrapReplicateDistribution",
    "Distribution",
    "EmpiricalDistribution",
    "Gamma",
    "MixtureDistribution",
    "MultivariateNormal",
    "Normal",
    "Uniform",
]


def _as_rng(rng: Any) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        return np.random.default_rng(rng)
    raise TypeError(
        f"rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
    )


def _check_n(n: Any) -> int:
    if isinstance(n, (bool, np.timedelta64)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"sample size n must be a non-negative int, got {shown(n)}")
    if n < 0:
        raise ValueError(f"sample size n must be a non-negative int, got {n}")
    return int(n)


# NumPy's ufuncs handle at most 32 dimensions (arrays may have 64).
_MAX_DIMS = 32


def _as_array(value: Any, what: str) -> np.ndarray:
    """``np.asarray(value)``, or a TypeError naming ``what`` when it is not an array."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError, OverflowError, RecursionError):
        raise TypeError(
            f"{what} must be an array, got {shown(value)}, which is not one "
            "(rows of different lengths, or nested too deep)"
        ) from None
    if arr.ndim > _MAX_DIMS:
        raise ValueError(f"{what} has {arr.ndim} dimensions; at most {_MAX_DIMS} are supported")
    return arr


def _param(name: str, value: Any, owner: str) -> np.ndarray:
    what = f"{owner}: parameter {name!r}"
    raw = _as_array(value, what)
    # Booleans, text, complex numbers and dates convert to float without a
    # word from NumPy; as a parameter they are a mistake.
    if raw.dtype.kind not in "iufO":
        raise TypeError(f"{what} must be real numbers, got {shown(value)} (dtype {raw.dtype})")
    try:
        arr = _as_float(raw)
    except (TypeError, ValueError, OverflowError):
        raise TypeError(f"{what} must be real numbers, got {shown(value)}") from None
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} must be finite, got {shown(value)}")
    return arr


def _as_float(arr: np.ndarray) -> np.ndarray:
    """``arr.astype(float)``, but a complex value is a TypeError, not a dropped imaginary part."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", np.exceptions.ComplexWarning)
        try:
            return arr.astype(float)
        except np.exceptions.ComplexWarning:
            raise TypeError("complex values are not real numbers") from None


def _event_shape(owner: str, **params: np.ndarray) -> tuple[int, ...]:
    """The shape parameters broadcast to; a ValueError naming them if they do not."""
    try:
        return np.broadcast_shapes(*(p.shape for p in params.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {p.shape}" for k, p in params.items())
        raise ValueError(f"{owner}: parameter shapes do not broadcast together: {shapes}") from None


def _require_positive(name: str, arr: np.ndarray, owner: str, value: Any) -> None:
    if np.any(arr <= 0):
        raise ValueError(f"{owner}: {name} must be > 0, got {shown(value)}")


def _squeeze(x: np.ndarray) -> Any:
    """Return 0-d results as numpy scalars, like numpy reductions do."""
    return x[()] if isinstance(x, np.ndarray) and x.ndim == 0 else x


def _identity(shared: Any, token: Any) -> Any:
    return token


class Distribution:
    """Base class of probpipe distributions.

    Subclasses implement :meth:`sample`, :meth:`mean`, :meth:`var` and, where
    defined, :meth:`log_prob`, plus :meth:`_params` (what identifies them in
    provenance). ``event_shape`` is the shape of one draw.
    """

    event_shape: tuple[int, ...] = ()

    def sample(self, n: int, rng: Any = None) -> np.ndarray:
        """Draw ``n`` values: an array of shape ``(n, *event_shape)``."""
        raise NotImplementedError

    def mean(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no mean()")

    def var(self) -> Any:
        raise NotImplementedError(f"{type(self).__name__} has no var()")

    def log_prob(self, x: Any) -> Any:
        raise NotImplementedError(
            f"{type(self).__name__} has no density, so log_prob is not defined"
        )

    def _params(self) -> dict[str, Any]:
        """The parameters that define this distribution (for fingerprints)."""
        return {}

    # -- broadcast protocol (see module docstring) --------------------------
    def _root(self) -> Distribution:
        return self

    def _draw(self, n: int, rng: np.random.Generator) -> tuple[Any, Sequence[Any]]:
        return None, self.sample(n, rng)

    def _materializer(self):
        return _identity

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={_short(v)}" for k, v in self._params().items())
        return f"{type(self).__name__}({params})"


def _short(value: Any) -> str:
    if isinstance(value, np.ndarray):
        if value.size <= 6:
            return np.array2string(value, precision=4, separator=", ")
        return f"<{value.dtype} array {value.shape}>"
    if isinstance(value, (list, tuple)) and len(value) > 6:
        return f"<{len(value)} items>"
    return repr(value)


# ---------------------------------------------------------------------------
# Parametric families
# ---------------------------------------------------------------------------


class Normal(Distribution):
    """Normal distribution with mean ``loc`` and standard deviation ``scale``."""

    def __init__(self, loc: Any = 0.0, scale: Any = 1.0):
        self.loc = _param("loc", loc, "Normal")
        self.scale = _param("scale", scale, "Normal")
        _require_positive("scale", self.scale, "Normal", scale)
        self.event_shape = _event_shape("Normal", loc=self.loc, scale=self.scale)

    def sample(self, n, rng=None):
        n = _check_n(n)
        return _as_rng(rng).normal(self.loc, self.scale, size=(n, *self.event_shape))

    def mean(self):
        return _squeeze(np.broadcast_to(self.loc, self.event_shape).copy())

    def var(self):
        return _squeeze(np.broadcast_to(self.scale**2, self.event_shape).copy())

    def log_prob(self, x):
        z = (np.asarray(x, dtype=float) - self.loc) / self.scale
        return _squeeze(-0.5 * z**2 - np.log(self.scale) - 0.5 * math.log(2 * math.pi))

    def _params(self):
        return {"loc": self.loc, "scale": self.scale}


class Uniform(Distribution):
    """Uniform distribution on ``[low, high)``."""

    def __init__(self, low: Any = 0.0, high: Any = 1.0):
        self.low = _param("low", low, "Uniform")
        self.high = _param("high", high, "Uniform")
        self.event_shape = _event_shape("Uniform", low=self.low, high=self.high)
        if np.any(self.high <= self.low):
            raise ValueError(
                f"Uniform: high must be > low, got low={shown(low)}, high={shown(high)}"
            )

    def sample(self, n, rng=None):
        n = _check_n(n)
        return _as_rng(rng).uniform(self.low, self.high, size=(n, *self.event_shape))

    def mean(self):
        return _squeeze(np.broadcast_to((self.low + self.high) / 2, self.event_shape).copy())

    def var(self):
        v = (self.high - self.low) ** 2 / 12
        return _squeeze(np.broadcast_to(v, self.event_shape).copy())

    def log_prob(self, x):
        x = np.asarray(x, dtype=float)
        inside = (x >= self.low) & (x < self.high)
        return _squeeze(np.where(inside, -np.log(self.high - self.low), -np.inf))

    def _params(self):
        return {"low": self.low, "high": self.high}


class Gamma(Distribution):
    """Gamma distribution with ``shape`` (k) and ``rate`` (1/scale)."""

    def __init__(self, shape: Any = 1.0, rate: Any = 1.0):
        self.shape = _param("shape", shape, "Gamma")
        self.rate = _param("rate", rate, "Gamma")
        _require_positive("shape", self.shape, "Gamma", shape)
        _require_positive("rate", self.rate, "Gamma", rate)
        self.event_shape = _event_shape("Gamma", shape=self.shape, rate=self.rate)

    def sample(self, n, rng=None):
        n = _check_n(n)
        return _as_rng(rng).gamma(self.shape, 1.0 / self.rate, size=(n, *self.event_shape))

    def mean(self):
        return _squeeze(np.broadcast_to(self.shape / self.rate, self.event_shape).copy())

    def var(self):
        return _squeeze(np.broadcast_to(self.shape / self.rate**2, self.event_shape).copy())

    def log_prob(self, x):
        x = np.asarray(x, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = (
                self.shape * np.log(self.rate)
                + (self.shape - 1) * np.log(x)
                - self.rate * x
                - np.vectorize(math.lgamma)(self.shape)
            )
        return _squeeze(np.where(x > 0, lp, -np.inf))

    def _params(self):
        return {"shape": self.shape, "rate": self.rate}


class Beta(Distribution):
    """Beta distribution on (0, 1) with concentrations ``a`` and ``b``."""

    def __init__(self, a: Any = 1.0, b: Any = 1.0):
        self.a = _param("a", a, "Beta")
        self.b = _param("b", b, "Beta")
        _require_positive("a", self.a, "Beta", a)
        _require_positive("b", self.b, "Beta", b)
        self.event_shape = _event_shape("Beta", a=self.a, b=self.b)

    def sample(self, n, rng=None):
        n = _check_n(n)
        return _as_rng(rng).beta(self.a, self.b, size=(n, *self.event_shape))

    def mean(self):
        return _squeeze(np.broadcast_to(self.a / (self.a + self.b), self.event_shape).copy())

    def var(self):
        s = self.a + self.b
        v = self.a * self.b / (s**2 * (s + 1))
        return _squeeze(np.broadcast_to(v, self.event_shape).copy())

    def log_prob(self, x):
        x = np.asarray(x, dtype=float)
        lgamma = np.vectorize(math.lgamma)
        log_norm = lgamma(self.a + self.b) - lgamma(self.a) - lgamma(self.b)
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = log_norm + (self.a - 1) * np.log(x) + (self.b - 1) * np.log1p(-x)
        return _squeeze(np.where((x > 0) & (x < 1), lp, -np.inf))

    def _params(self):
        return {"a": self.a, "b": self.b}


class MultivariateNormal(Distribution):
    """Multivariate normal with ``mean`` (d,) and positive semi-definite ``cov`` (d, d)."""

    def __init__(self, mean: Any, cov: Any):
        self.loc = _param("mean", mean, "MultivariateNormal")
        self.cov = _param("cov", cov, "MultivariateNormal")
        if self.loc.ndim != 1:
            raise ValueError(
                f"MultivariateNormal: mean must be a 1-d vector, got shape {self.loc.shape}"
            )
        d = self.loc.shape[0]
        if self.cov.shape != (d, d):
            raise ValueError(
                f"MultivariateNormal: cov must have shape ({d}, {d}) to match mean, "
                f"got {self.cov.shape}"
            )
        if not np.allclose(self.cov, self.cov.T, rtol=1e-10, atol=1e-12):
            raise ValueError("MultivariateNormal: cov must be symmetric")
        eigvals, eigvecs = np.linalg.eigh(self.cov)
        tol = 1e-10 * max(1.0, float(np.max(np.abs(eigvals))))
        if np.min(eigvals) < -tol:
            raise ValueError(
                "MultivariateNormal: cov must be positive semi-definite, but has "
                f"eigenvalue {np.min(eigvals):.3g}"
            )
        self._factor = eigvecs * np.sqrt(np.clip(eigvals, 0.0, None))
        self.event_shape = (d,)

    def sample(self, n, rng=None):
        n = _check_n(n)
        z = _as_rng(rng).standard_normal(size=(n, self.event_shape[0]))
        return self.loc + z @ self._factor.T

    def mean(self):
        return self.loc.copy()

    def var(self):
        return np.diag(self.cov).copy()

    def log_prob(self, x):
        x = np.asarray(x, dtype=float)
        try:
            chol = np.linalg.cholesky(self.cov)
        except np.linalg.LinAlgError:
            raise ValueError(
                "MultivariateNormal.log_prob needs a positive definite cov; this one is singular"
            ) from None
        d = self.event_shape[0]
        diff = x - self.loc
        sol = np.linalg.solve(chol, diff[..., None])[..., 0]
        maha = np.sum(sol**2, axis=-1)
        log_det = 2 * np.sum(np.log(np.diag(chol)))
        return _squeeze(-0.5 * (maha + log_det + d * math.log(2 * math.pi)))

    def _params(self):
        return {"mean": self.loc, "cov": self.cov}


# ---------------------------------------------------------------------------
# Empirical distributions and mixtures: what broadcasts return
# ---------------------------------------------------------------------------


def _normalized_weights(weights: Any, n: int, owner: str) -> np.ndarray | None:
    """Validated weights summing to 1, or None for uniform."""
    if weights is None:
        return None
    w = _param("weights", weights, owner)
    if w.shape != (n,):
        raise ValueError(f"{owner}: weights must have shape ({n},), got {w.shape}")
    if np.any(w < 0):
        raise ValueError(f"{owner}: weights must be non-negative")
    total = w.sum()
    if total <= 0:
        raise ValueError(f"{owner}: weights must not all be zero")
    if not np.isfinite(total):  # finite weights whose sum overflows: scale them first
        w = w / w.max()
        total = w.sum()
    return w / total


class EmpiricalDistribution(Distribution):
    """Weighted atoms: ``samples`` of shape ``(n, *event_shape)`` and ``weights`` (n,).

    Numeric broadcast results come back as an EmpiricalDistribution with one
    atom per row, in row order.
    """

    def __init__(self, samples: Any, weights: Any = None):
        samples = _as_array(samples, "EmpiricalDistribution: samples")
        if samples.ndim == 0:
            raise ValueError(
                "EmpiricalDistribution: samples must have a leading sample axis, got a scalar"
            )
        if samples.dtype != bool and not np.issubdtype(samples.dtype, np.number):
            raise TypeError(
                f"EmpiricalDistribution: samples must be numeric, got dtype {samples.dtype}"
            )
        self.samples = samples
        self._weights = _normalized_weights(weights, samples.shape[0], "EmpiricalDistribution")
        self.event_shape = samples.shape[1:]

    @property
    def n(self) -> int:
        """The number of atoms."""
        return self.samples.shape[0]

    @property
    def weights(self) -> np.ndarray:
        """Normalized weights (uniform when none were given)."""
        if self._weights is None:
            return np.full(self.n, 1.0 / self.n) if self.n else np.zeros(0)
        return self._weights

    def _require_atoms(self, what: str) -> None:
        if self.n == 0:
            raise ValueError(f"EmpiricalDistribution with no atoms has no {what}")

    def sample(self, n, rng=None):
        n = _check_n(n)
        self._require_atoms("samples")
        rng = _as_rng(rng)
        if self._weights is None:
            idx = rng.integers(0, self.n, size=n)
        else:
            idx = rng.choice(self.n, size=n, p=self._weights)
        return self.samples[idx]

    def mean(self):
        self._require_atoms("mean")
        return _squeeze(np.average(self.samples, axis=0, weights=self.weights))

    def var(self):
        self._require_atoms("var")
        mu = np.average(self.samples, axis=0, weights=self.weights)
        return _squeeze(np.average((self.samples - mu) ** 2, axis=0, weights=self.weights))

    def quantile(self, q: Any) -> Any:
        """Weighted quantile(s) of a scalar-valued empirical distribution."""
        self._require_atoms("quantiles")
        if self.event_shape != ():
            raise ValueError("quantile() is defined for scalar atoms only")
        order = np.argsort(self.samples, kind="stable")
        cdf = np.cumsum(self.weights[order])
        q = np.asarray(q, dtype=float)
        pos = np.searchsorted(cdf, q * cdf[-1], side="left")
        return _squeeze(self.samples[order][np.clip(pos, 0, self.n - 1)])

    def _params(self):
        return {"samples": self.samples, "weights": self._weights}

    def __repr__(self):
        return (
            f"EmpiricalDistribution(n={self.n}, event_shape={self.event_shape}"
            f"{'' if self._weights is None else ', weighted'})"
        )


class MixtureDistribution(Distribution):
    """A finite mixture of ``components`` with ``weights`` (uniform by default).

    Broadcast rows that are themselves distributions (one posterior per
    bootstrap replicate) come back as a MixtureDistribution: a bagged posterior.
    """

    def __init__(self, components: Sequence[Distribution], weights: Any = None):
        if (
            isinstance(components, Distribution)
            or not isinstance(components, Iterable)
            or getattr(components, "ndim", None) == 0  # a 0-d array claims to be iterable
        ):
            raise TypeError(
                "MixtureDistribution: components must be a list of probpipe distributions, "
                f"got {shown(components)}"
            )
        try:
            components = list(components)
        except (TypeError, ValueError) as exc:  # a broken __len__ or __iter__
            raise TypeError(
                f"MixtureDistribution: could not read the components {shown(components)}: "
                f"{type(exc).__name__}: {brief(str(exc), 100)}"
            ) from exc
        if not components:
            raise ValueError("MixtureDistribution needs at least one component")
        for i, comp in enumerate(components):
            if not isinstance(comp, Distribution):
                raise TypeError(
                    f"MixtureDistribution: component {i} is a {type(comp).__name__}, "
                    "not a probpipe Distribution"
                )
        shapes = {tuple(c.event_shape) for c in components}
        if len(shapes) > 1:
            raise ValueError(
                f"MixtureDistribution: components have different event shapes {sorted(shapes)}"
            )
        self.components = components
        self._weights = _normalized_weights(weights, len(components), "MixtureDistribution")
        self.event_shape = components[0].event_shape

    @property
    def weights(self) -> np.ndarray:
        k = len(self.components)
        return np.full(k, 1.0 / k) if self._weights is None else self._weights

    def sample(self, n, rng=None):
        n = _check_n(n)
        rng = _as_rng(rng)
        which = rng.choice(len(self.components), size=n, p=self.weights)
        out = np.empty((n, *self.event_shape))
        for k in np.unique(which):
            mask = which == k
            out[mask] = self.components[k].sample(int(mask.sum()), rng)
        return out

    def mean(self):
        means = np.stack([np.asarray(c.mean(), dtype=float) for c in self.components])
        return _squeeze(np.tensordot(self.weights, means, axes=1))

    def var(self):
        means = np.stack([np.asarray(c.mean(), dtype=float) for c in self.components])
        variances = np.stack([np.asarray(c.var(), dtype=float) for c in self.components])
        mu = np.tensordot(self.weights, means, axes=1)
        second = np.tensordot(self.weights, variances + means**2, axes=1)
        return _squeeze(second - mu**2)

    def log_prob(self, x):
        parts = np.stack([np.asarray(c.log_prob(x), dtype=float) for c in self.components])
        # log(0) = -inf is the right answer for a zero weight, and outside every
        # component's support; it is not worth a warning.
        with np.errstate(divide="ignore"):
            parts = parts + np.log(self.weights).reshape((-1,) + (1,) * (parts.ndim - 1))
            top = np.max(parts, axis=0)
            safe_top = np.where(np.isfinite(top), top, 0.0)
            return _squeeze(safe_top + np.log(np.sum(np.exp(parts - safe_top), axis=0)))

    def _params(self):
        return {"components": self.components, "weights": self._weights}

    def __repr__(self):
        return (
            f"MixtureDistribution({len(self.components)} components, "
            f"event_shape={self.event_shape})"
        )


# ---------------------------------------------------------------------------
# Bootstrap replicates
# ---------------------------------------------------------------------------


def _numeric(rows: Any, what: str) -> np.ndarray:
    """``rows`` as a numeric array, or a TypeError: text, dates and objects have no mean."""
    arr = np.asarray(rows)
    if arr.dtype.kind in "biufc":
        return arr
    if arr.dtype.kind == "O":  # Python numbers in an object array
        try:
            return _as_float(arr)
        except (TypeError, ValueError, OverflowError):
            pass
        try:
            return arr.astype(complex)
        except (TypeError, ValueError, OverflowError):
            pass
    raise TypeError(f"{what} is not numeric (dtype {arr.dtype}), so it has no mean or variance")


def _average(rows: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """The (weighted) mean over rows; np.average divides by zero on rows of no values."""
    if weights is None:
        return rows.mean(axis=0)
    return np.average(rows, axis=0, weights=weights)


def _take_rows(shared: Any, idx: np.ndarray) -> Any:
    source = shared
    if isinstance(source, Record):
        return source.take(idx)
    return source[idx]


class _TakeField:
    """Materializer of ``boot[field]``: the field's rows at the drawn indices."""

    def __init__(self, field: str):
        self.field = field

    def __call__(self, shared: Record, idx: np.ndarray) -> np.ndarray:
        return np.asarray(shared[self.field])[idx]


class BootstrapReplicateDistribution(Distribution):
    """Bootstrap replicates of a dataset: one draw resamples its rows with replacement.

    ``source`` is an array (rows along axis 0), a :class:`Record` of
    equal-length arrays, or an :class:`EmpiricalDistribution` (atoms resampled
    by weight). A draw has the same number of rows as the source. On a Record
    source, ``boot["X"]`` and ``boot["y"]`` are co-sampled views: in a
    broadcast they resample the same row indices.
    """

    def __init__(self, source: Any):
        if isinstance(source, Distribution) and not isinstance(source, EmpiricalDistribution):
            raise TypeError(
                "BootstrapReplicateDistribution: source must be an array, a Record or an "
                f"EmpiricalDistribution, got {type(source).__name__}"
            )
        self._probs = None
        if isinstance(source, Record):
            self.n_rows = source.n_rows()  # raises on unequal fields
            self.source = source
            self.event_shape = ()
        elif isinstance(source, EmpiricalDistribution):
            self.source = source.samples
            self._probs = source._weights
            self.n_rows = source.n
            self.event_shape = source.samples.shape
        else:
            what = "BootstrapReplicateDistribution: source"
            arr = None if isinstance(source, (str, bytes)) else _as_array(source, what)
            if arr is None or arr.ndim == 0:
                raise TypeError(
                    f"{what} must have rows to resample (an array, a Record or an "
                    f"EmpiricalDistribution), got {type(source).__name__} {shown(source)}"
                )
            self.source = arr
            self.n_rows = arr.shape[0]
            self.event_shape = arr.shape
        if self.n_rows == 0:
            raise ValueError("BootstrapReplicateDistribution: source has no rows")

    def _indices(self, n: int, rng: np.random.Generator) -> np.ndarray:
        dtype = np.int32 if self.n_rows < 2**31 else np.int64
        if self._probs is None:
            return rng.integers(0, self.n_rows, size=(n, self.n_rows), dtype=dtype)
        return rng.choice(self.n_rows, size=(n, self.n_rows), p=self._probs).astype(dtype)

    def __getitem__(self, field: str) -> BootstrapFieldView:
        if not isinstance(self.source, Record):
            raise TypeError("boot[field] needs a Record source; this bootstrap resamples an array")
        self.source[field]  # KeyError naming the fields if absent
        return BootstrapFieldView(self, field)

    def sample(self, n, rng=None):
        n = _check_n(n)
        idx = self._indices(n, _as_rng(rng))
        if isinstance(self.source, Record):
            out = np.empty(n, dtype=object)
            for i in range(n):
                out[i] = self.source.take(idx[i])
            return out
        return self.source[idx]

    def mean(self):
        if isinstance(self.source, Record):
            raise NotImplementedError("mean() of a Record bootstrap: use boot[field].mean()")
        rows = _numeric(self.source, "BootstrapReplicateDistribution.mean(): the source")
        row_mean = _average(rows, self._probs)
        return np.broadcast_to(row_mean, rows.shape).copy()

    def var(self):
        if isinstance(self.source, Record):
            raise NotImplementedError("var() of a Record bootstrap: use boot[field].var()")
        rows = _numeric(self.source, "BootstrapReplicateDistribution.var(): the source")
        mu = _average(rows, self._probs)
        row_var = _average((rows - mu) ** 2, self._probs)
        return np.broadcast_to(row_var, rows.shape).copy()

    def _params(self):
        return {"source": self.source, "weights": self._probs}

    def _draw(self, n, rng):
        return self.source, self._indices(n, rng)

    def _materializer(self):
        return _take_rows

    def __repr__(self):
        what = repr(self.source) if isinstance(self.source, Record) else _short(self.source)
        return f"BootstrapReplicateDistribution({what})"


class BootstrapFieldView(Distribution):
    """``boot[field]``: one field of a Record bootstrap, co-sampled with its siblings."""

    def __init__(self, parent: BootstrapReplicateDistribution, field: str):
        self.parent = parent
        self.field = field
        self.event_shape = np.shape(parent.source[field])

    def sample(self, n, rng=None):
        n = _check_n(n)
        idx = self.parent._indices(n, _as_rng(rng))
        return np.asarray(self.parent.source[self.field])[idx]

    def mean(self):
        col = _numeric(self.parent.source[self.field], f"boot[{self.field!r}].mean(): the field")
        return np.broadcast_to(col.mean(axis=0), col.shape).copy()

    def var(self):
        col = _numeric(self.parent.source[self.field], f"boot[{self.field!r}].var(): the field")
        return np.broadcast_to(col.var(axis=0), col.shape).copy()

    def _params(self):
        return {"parent": self.parent, "field": self.field}

    def _root(self):
        return self.parent

    def _materializer(self):
        return _TakeField(self.field)

    def __repr__(self):
        return f"{self.parent!r}[{self.field!r}]"
