"""Block-level latency regressors that serialise to JSON exactly (no pickle).

Two scikit-learn estimators over a numeric feature matrix (usually
:func:`hwnas.lut.features.feature_matrix` of block specs), in the spirit of nn-Meter's kernel
predictors (Zhang et al., MobiSys 2021, who use random forests per kernel type):

* :class:`RidgeLatencyRegressor`: ridge regression on standardised features, by default
  weighted by 1/y^2 so that it minimises *relative* error (latencies span orders of magnitude).
* :class:`BoostedLatencyRegressor`: scikit-learn gradient boosting on log latency, exported to
  plain arrays per tree (feature, threshold, children, leaf value) and evaluated in numpy.

Both follow scikit-learn's estimator contract (``fit`` returns self, fitted attributes end in
``_``, ``random_state``, ``get_params``/``set_params``; checked with ``check_estimator`` in the
tests) and predict from their exported form, so ``from_json(m.to_json())`` predicts exactly what
``m`` predicts. Targets must be positive (milliseconds); the estimators say so in their tags.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from hwnas.errors import UserError

REGRESSOR_KIND = "hwnas-regressor"
REGRESSOR_SCHEMA_VERSION = 1


class _JSONRegressor(RegressorMixin, BaseEstimator):
    """Shared parts: positive targets, JSON envelope, parameter round trip."""

    _fitted_names: tuple[str, ...] = ()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.positive_only = True
        return tags

    def _check_target(self, y: np.ndarray) -> None:
        if np.any(y <= 0):
            raise ValueError(f"{type(self).__name__} needs positive targets (latencies in ms)")

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict: class, hyperparameters and every fitted array as lists of floats."""
        check_is_fitted(self)
        fitted = {name: _to_list(getattr(self, name)) for name in self._fitted_names}
        return {
            "kind": REGRESSOR_KIND,
            "schema_version": REGRESSOR_SCHEMA_VERSION,
            "class": type(self).__name__,
            "params": self.get_params(),
            "fitted": fitted,
        }

    @classmethod
    def _from_fitted(cls, params: dict, fitted: dict) -> _JSONRegressor:
        model = cls(**params)
        for name in cls._fitted_names:
            if name not in fitted:
                raise UserError(f"{cls.__name__} JSON lacks fitted field {name!r}")
            setattr(model, name, _from_list(name, fitted[name]))
        return model


class RidgeLatencyRegressor(_JSONRegressor):
    """Ridge regression of latency on standardised features.

    Args:
        alpha: L2 penalty on the standardised coefficients.
        relative: weight rows by 1/y^2, i.e. minimise squared *relative* error.
        log_target: regress log(y) instead of y (predictions are exp of the linear model).
        random_state: accepted for a uniform interface; the closed-form solve is deterministic.
    """

    _fitted_names = ("mean_", "scale_", "coef_", "intercept_", "n_features_in_")

    def __init__(
        self,
        alpha: float = 1.0,
        relative: bool = True,
        log_target: bool = False,
        random_state: Optional[int] = None,
    ) -> None:
        self.alpha = alpha
        self.relative = relative
        self.log_target = log_target
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> RidgeLatencyRegressor:
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self._check_target(y)
        if self.alpha < 0:
            raise ValueError("alpha must be >= 0")
        rows = np.ones_like(y) if sample_weight is None else np.asarray(sample_weight, float)
        if rows.shape != y.shape or np.any(rows < 0) or rows.sum() <= 0:
            raise ValueError("sample weights must be >= 0, one per row, and not all zero")
        # Objective: sum_i w_i r_i^2 + alpha / sum(rows) * |coef|^2, w = rows (/ y^2) normalised.
        weights = rows / y**2 if self.relative else rows
        weights = weights / weights.sum()
        target = np.log(y) if self.log_target else y
        self.mean_ = weights @ X
        scale = np.sqrt(weights @ (X - self.mean_) ** 2)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        Z = (X - self.mean_) / self.scale_
        t_mean = float(weights @ target)
        Zw = Z * weights[:, None]
        gram = Z.T @ Zw + self.alpha / rows.sum() * np.eye(Z.shape[1])
        self.coef_ = np.linalg.lstsq(gram, Zw.T @ (target - t_mean), rcond=None)[0]
        self.intercept_ = t_mean
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        raw = ((X - self.mean_) / self.scale_) @ self.coef_ + self.intercept_
        return np.exp(raw) if self.log_target else raw

    @classmethod
    def from_json(cls, document: dict) -> RidgeLatencyRegressor:
        params, fitted = _unwrap(document, cls.__name__)
        return cls._from_fitted(params, fitted)  # type: ignore[return-value]


class BoostedLatencyRegressor(_JSONRegressor):
    """Gradient-boosted trees (scikit-learn) on log latency, exported to numpy-evaluated arrays.

    Args:
        n_estimators, learning_rate, max_depth, min_samples_leaf, subsample: as in
            ``sklearn.ensemble.GradientBoostingRegressor``.
        log_target: fit log(y) (default) rather than y.
        random_state: seed of the row subsampling.
    """

    _fitted_names = ("init_", "trees_", "n_features_in_")

    def __init__(
        self,
        n_estimators: int = 300,
        learning_rate: float = 0.05,
        max_depth: int = 3,
        min_samples_leaf: int = 2,
        subsample: float = 0.8,
        log_target: bool = True,
        random_state: Optional[int] = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.min_samples_leaf = min_samples_leaf
        self.subsample = subsample
        self.log_target = log_target
        self.random_state = random_state

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> BoostedLatencyRegressor:
        from sklearn.ensemble import GradientBoostingRegressor

        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self._check_target(y)
        if X.shape[0] < 2:
            raise ValueError(f"{type(self).__name__} needs more than 1 sample, got n_samples = 1")
        booster = GradientBoostingRegressor(
            loss="squared_error",
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=self.max_depth,
            min_samples_leaf=self.min_samples_leaf,
            subsample=self.subsample,
            random_state=self.random_state,
        )
        booster.fit(X, np.log(y) if self.log_target else y, sample_weight=sample_weight)
        self.init_ = float(booster.init_.predict(X[:1])[0])
        self.trees_ = [
            _export_tree(est.tree_, self.learning_rate) for est in booster.estimators_[:, 0]
        ]
        return self

    def predict(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        raw = np.full(X.shape[0], self.init_)
        x32 = X.astype(np.float32).astype(np.float64)  # sklearn trees split on float32 inputs
        for tree in self.trees_:
            raw += _eval_tree(tree, x32)
        return np.exp(raw) if self.log_target else raw

    @classmethod
    def from_json(cls, document: dict) -> BoostedLatencyRegressor:
        params, fitted = _unwrap(document, cls.__name__)
        model = cls._from_fitted(params, fitted)
        model.trees_ = [_tree_from_json(t) for t in fitted["trees_"]]
        model.init_ = float(model.init_)
        return model  # type: ignore[return-value]


REGRESSORS = {cls.__name__: cls for cls in (RidgeLatencyRegressor, BoostedLatencyRegressor)}


def regressor_from_json(document: dict) -> _JSONRegressor:
    """Rebuild any regressor of this module from :meth:`to_json` output."""
    cls = REGRESSORS.get(str(document.get("class")) if isinstance(document, dict) else "")
    if cls is None:
        raise UserError(f"unknown regressor class in JSON; known: {', '.join(REGRESSORS)}")
    return cls.from_json(document)  # type: ignore[attr-defined]


# -- tree export ----------------------------------------------------------------------------


def _export_tree(tree: Any, scale: float) -> dict[str, np.ndarray]:
    """Plain arrays of a fitted sklearn tree; leaf values pre-multiplied by the learning rate."""
    return {
        "feature": np.asarray(tree.feature, dtype=np.int64),
        "threshold": np.asarray(tree.threshold, dtype=np.float64),
        "left": np.asarray(tree.children_left, dtype=np.int64),
        "right": np.asarray(tree.children_right, dtype=np.int64),
        "value": scale * np.asarray(tree.value[:, 0, 0], dtype=np.float64),
    }


def _eval_tree(tree: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """Leaf value of every row of ``x``: follow ``x[f] <= threshold`` left, else right."""
    rows = np.arange(x.shape[0])
    node = np.zeros(x.shape[0], dtype=np.int64)
    left, right = tree["left"], tree["right"]
    for _ in range(len(left)):
        internal = left[node] >= 0
        if not internal.any():
            break
        go_left = x[rows, np.maximum(tree["feature"][node], 0)] <= tree["threshold"][node]
        node = np.where(internal, np.where(go_left, left[node], right[node]), node)
    return tree["value"][node]


def _tree_from_json(tree: Any) -> dict[str, np.ndarray]:
    if not isinstance(tree, dict):
        raise UserError("regressor JSON: a tree is not an object")
    ints, floats = ("feature", "left", "right"), ("threshold", "value")
    try:
        out = {k: np.asarray(tree[k], dtype=np.int64) for k in ints}
        out.update({k: np.asarray(tree[k], dtype=np.float64) for k in floats})
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"regressor JSON: malformed tree ({exc})") from None
    n = len(out["left"])
    if any(len(v) != n for v in out.values()) or n == 0:
        raise UserError("regressor JSON: tree arrays differ in length")
    if np.any(out["left"] >= n) or np.any(out["right"] >= n):
        raise UserError("regressor JSON: tree child index out of range")
    return out


def _unwrap(document: Any, name: str) -> tuple[dict, dict]:
    if not isinstance(document, dict) or document.get("kind") != REGRESSOR_KIND:
        raise UserError(f"not a {REGRESSOR_KIND} JSON document")
    if document.get("schema_version") != REGRESSOR_SCHEMA_VERSION:
        raise UserError(
            f"regressor JSON schema_version {document.get('schema_version')!r} unsupported"
        )
    if document.get("class") != name:
        raise UserError(f"regressor JSON holds a {document.get('class')!r}, not a {name}")
    params, fitted = document.get("params"), document.get("fitted")
    if not isinstance(params, dict) or not isinstance(fitted, dict):
        raise UserError("regressor JSON lacks 'params' or 'fitted'")
    return params, fitted


def _to_list(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, list):
        return [_to_list(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_list(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_list(name: str, value: Any) -> Any:
    if name in ("mean_", "scale_", "coef_"):
        return np.asarray(value, dtype=np.float64)
    if name == "n_features_in_":
        return int(value)
    return value
