"""scikit-learn estimators over bpfast networks: :class:`BPClassifier` and :class:`BPRegressor`.

They take the parameters of scikit-learn's ``MLPClassifier`` / ``MLPRegressor`` (the same names,
defaults and meaning where bpfast does the same thing) and train with the compiled core, so they
drop into ``Pipeline``, ``GridSearchCV``, ``cross_val_score``, ``clone``, pickle and joblib.

Unlike :meth:`bpfast.Network.fit`, which keeps the paper's summed gradient (E is a sum over
cases, and the learning rate multiplies the summed gradient, so it must shrink as batches grow),
the estimators average the gradient over each mini-batch as every modern library does, so one
learning rate suits any batch size.

Where they differ from scikit-learn's MLP:

- ``alpha`` (the L2 penalty) is applied as decoupled weight decay: after each update the weights
  (not the biases) shrink by ``learning_rate_init * alpha / batch_size``, which for plain SGD is
  the same first-order step as scikit-learn's penalty gradient; with Adam it is AdamW's decay.
  ``loss_curve_`` holds the data loss without the penalty term.
- ``solver="sgd"`` is the 1986 momentum rule (no Nesterov momentum); the learning rate is
  constant (no ``learning_rate`` schedules). ``solver="lbfgs"`` does not exist.
- The networks compute in float32 by default (``dtype="float64"`` for the exact mode).
  ``fit`` trains a float32 network on a float32 copy of float64 X (half X's size, made once:
  each epoch then reads half the bytes) when it runs more than one epoch and the copy takes at
  most a quarter of the memory available (1 GiB where that cannot be read); otherwise, and in
  ``partial_fit``, it reads float64 X as it is. The numbers are the same either way.
- The starting weights are Glorot's uniform ±sqrt(6 / (fan_in + fan_out)) for every activation;
  scikit-learn's MLP narrows that to ±sqrt(2 / (fan_in + fan_out)) for logistic units.
- ``learning_rate``, ``power_t``, ``nesterovs_momentum``, ``max_fun`` and MLPRegressor's
  ``loss`` (squared error only) are not parameters (Python's TypeError names them), and sparse X
  is refused (``X.toarray()`` first).
- BPRegressor's loss is ``½ Σ (y - d)²`` summed over the outputs and averaged over samples;
  MLPRegressor also averages over the outputs, so with several outputs its ``loss_curve_`` (and
  the scale ``tol`` compares against) is that many times smaller.

As in scikit-learn: ``loss_curve_`` is the loss per sample of each epoch (measured during it),
``n_iter_`` counts the epochs of the last call and ``t_`` every sample seen, a warm-started
``fit`` goes on from the weights with a fresh optimiser (and with the validation record of early
stopping: its scores, best score and best weights), and ``partial_fit`` keeps the optimiser's
state. After a divergence (FloatingPointError) they count the epochs whose weights the network
holds.

scikit-learn is an optional dependency (``pip install 'bpfast[sklearn]'``); nothing else in
bpfast imports this module.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.metrics import accuracy_score, r2_score
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import LabelBinarizer
    from sklearn.utils import check_random_state
    from sklearn.utils.multiclass import check_classification_targets
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError("bpfast.estimators needs scikit-learn (>= 1.6): "
                      "pip install 'bpfast[sklearn]'") from exc

from ._validation import as_matrix, available_memory, check_bool
from .network import Network, float_dtype_name
from .units import ACTIVATIONS

__all__ = ["BPClassifier", "BPRegressor"]

HIDDEN_ACTIVATIONS = tuple(name for name, a in ACTIVATIONS.items() if a.hidden)
SOLVERS = {"adam": "adam", "sgd": "momentum"}


def _training_inputs(X: np.ndarray, dtype: np.dtype, n_epochs: int) -> np.ndarray:
    """X as fit trains on it, checked whole (before any validation split, so that an error
    names the caller's row). Network.fit binds a float32 net's batches from float64 X as it is,
    rounding each row as it reads it: twice the bytes of a float32 copy, every epoch. For more
    than one epoch the copy, made once, is faster (100,000 x 100, batches of 200, 10 epochs:
    0.41 s against 0.45 s with the copy's 7 ms, Zen 5), at half X's size in memory while fit
    runs: made only while that is at most a quarter of the memory available. partial_fit (one
    epoch a call) reads X as it is."""
    keep = X.dtype == np.float64 and dtype == np.float32
    if keep and n_epochs > 1:
        available = available_memory()
        keep = X.size * dtype.itemsize > (available // 4 if available is not None else 2**30)
    return as_matrix("X", X, dtype, X.shape[1], "inputs", keep_float64=keep)


class _BPBase(BaseEstimator):
    """What the classifier and the regressor share: parameters, the training loop, predict."""

    network_: Network  # set by fit

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="adam",
                 alpha=0.0001, batch_size="auto", learning_rate_init=0.001, max_iter=200,
                 shuffle=True, random_state=None, tol=1e-4, verbose=False, warm_start=False,
                 momentum=0.9, early_stopping=False, validation_fraction=0.1, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8, n_iter_no_change=10, clip_norm=None,
                 dropout=0.0, n_threads=None, dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.clip_norm = clip_norm
        self.dropout = dropout
        self.n_threads = n_threads
        self.dtype = dtype

    # -- what the subclasses define -------------------------------------------------------------

    def _encode_targets(self, y, first: bool):  # pragma: no cover - abstract
        """(T for the network, y as the validation score wants it); sets the output spec."""
        raise NotImplementedError

    def _from_outputs(self, p: np.ndarray):  # pragma: no cover - abstract
        """Predictions from the network's outputs (float64, one row per sample)."""
        raise NotImplementedError

    def _divergence(self, error: FloatingPointError) -> FloatingPointError:
        """Network.fit's divergence error in this estimator's terms (X and y, not X and T;
        learning_rate_init, not lr), keeping its n_sweeps."""
        kept = getattr(error, "n_sweeps", 0)
        where = "in its first epoch" if kept == 0 else f"in epoch {kept + 1} of this fit"
        diverged = FloatingPointError(
            f"{type(self).__name__}: training diverged: the loss or a weight became NaN or "
            f"infinite {where}. Scale X (e.g. with sklearn.preprocessing.StandardScaler), or try "
            f"a smaller learning_rate_init (it is {self.learning_rate_init}), clip_norm, or "
            f"dtype='float64'. The estimator keeps the weights of its last finite epoch.")
        diverged.n_sweeps = kept  # type: ignore[attr-defined]
        return diverged

    def _validation_score(self, network, X, y, sample_weight) -> float:
        """`score` of `network` (the one being trained, not yet network_) on (X, y), each case
        counted by its weight as MLPClassifier counts it (scikit-learn >= 1.7)."""
        predicted = self._from_outputs(network.predict(X, n_threads=self.n_threads)
                                       .astype(np.float64))
        if isinstance(self, ClassifierMixin):
            return float(accuracy_score(y, predicted, sample_weight=sample_weight))
        return float(r2_score(y, predicted, sample_weight=sample_weight))

    # -- parameters -----------------------------------------------------------------------------

    def _check_architecture(self, network, incremental: bool) -> None:
        """A fit that goes on training a network (warm_start, partial_fit) must still be
        described by the parameters that built it; changed, they would be reported by
        get_params while another network predicts."""
        hidden = network.topology.layers[:-1]
        built = {"hidden_layer_sizes": [layer.size for layer in hidden],
                 "activation": hidden[0].activation if hidden else self.activation,
                 "dtype": network.dtype}
        asked = {"hidden_layer_sizes": self._hidden_sizes(), "activation": self.activation,
                 "dtype": np.dtype(self.dtype)}
        changed = [f"{name} (the network has {built[name]!s}, set to {asked[name]!s})"
                   for name in built if built[name] != asked[name]]
        if changed:
            how = "partial_fit" if incremental else "a fit with warm_start=True"
            raise ValueError(f"{how} goes on training the network fitted before, but "
                             f"{'; '.join(changed)} changed since; set them back, or fit with "
                             f"warm_start=False for a new network")

    def _hidden_sizes(self) -> list[int]:
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = [sizes]
        try:
            sizes = list(sizes)
        except TypeError:
            raise ValueError(f"hidden_layer_sizes must be an int or a sequence of ints, got "
                             f"{self.hidden_layer_sizes!r}") from None
        if not all(isinstance(s, numbers.Integral) and not isinstance(s, bool) and int(s) > 0
                   for s in sizes):
            raise ValueError(f"hidden_layer_sizes must be positive integers, got "
                             f"{self.hidden_layer_sizes!r}")
        return [int(s) for s in sizes]

    def _check_params(self) -> None:
        def number(name, low, high=None, low_open=False, high_open=False, integer=False):
            value = getattr(self, name)
            kind = numbers.Integral if integer else numbers.Real
            ok = isinstance(value, kind) and not isinstance(value, bool) and np.isfinite(value)
            ok = ok and (value > low if low_open else value >= low)
            if high is not None:
                ok = ok and (value < high if high_open else value <= high)
            if not ok:
                span = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'}" \
                       f"{')' if high_open or high is None else ']'}"
                raise ValueError(f"{name} must be {'an integer' if integer else 'a number'} in "
                                 f"{span}, got {value!r}")

        self._hidden_sizes()
        if not isinstance(self.activation, str) or self.activation not in HIDDEN_ACTIVATIONS:
            raise ValueError(f"activation must be one of {list(HIDDEN_ACTIVATIONS)}, got "
                             f"{self.activation!r}")
        if not isinstance(self.solver, str) or self.solver not in SOLVERS:
            raise ValueError(f"solver must be one of {list(SOLVERS)}, got {self.solver!r}")
        for name in ("shuffle", "early_stopping", "warm_start"):  # "False" is not silently on
            check_bool(name, getattr(self, name))
        if not (isinstance(self.verbose, (bool, np.bool_)) or
                (isinstance(self.verbose, numbers.Integral) and int(self.verbose) >= 0)):
            raise ValueError(f"verbose must be True, False or a non-negative int, got "
                             f"{self.verbose!r}")
        if not (self.batch_size == "auto" or (isinstance(self.batch_size, numbers.Integral)
                                              and not isinstance(self.batch_size, bool)
                                              and int(self.batch_size) >= 1)):
            raise ValueError(f"batch_size must be 'auto' or a positive integer, got "
                             f"{self.batch_size!r}")
        number("alpha", 0)
        number("learning_rate_init", 0, low_open=True)
        number("max_iter", 1, integer=True)
        number("tol", 0)
        number("momentum", 0, 1, high_open=True)
        number("validation_fraction", 0, 1, low_open=True, high_open=True)
        number("beta_1", 0, 1, high_open=True)
        number("beta_2", 0, 1, high_open=True)
        number("epsilon", 0, low_open=True)
        number("n_iter_no_change", 1, integer=True)
        if self.clip_norm is not None:
            number("clip_norm", 0, low_open=True)
        number("dropout", 0, 1, high_open=True)
        if float_dtype_name(self.dtype) is None:
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")

    def _batch(self, n_samples: int) -> int:
        return min(200, n_samples) if self.batch_size == "auto" else min(self.batch_size,
                                                                        n_samples)

    def _seed(self, random_state) -> int:
        """A seed for a new network from `random_state` (as scikit-learn accepts it, or a NumPy
        Generator)."""
        if isinstance(random_state, np.random.Generator):
            return int(random_state.integers(0, 2**63))
        return int(check_random_state(random_state).randint(0, 2**31 - 1))

    def _fit_options(self, batch_size: int, sample_weight) -> dict:
        # The decay per update stands for alpha * w / (the batch's weight): with case weights,
        # a batch weighs batch_size times the mean weight.
        mean_weight = 1.0 if sample_weight is None else float(np.mean(sample_weight))
        return {"lr": self.learning_rate_init, "batch_size": batch_size, "shuffle": self.shuffle,
                "loss": self._loss, "reduction": "mean", "optimizer": SOLVERS[self.solver],
                "momentum": self.beta_1 if self.solver == "adam" else self.momentum,
                "beta2": self.beta_2, "epsilon": self.epsilon, "clip_norm": self.clip_norm,
                "weight_decay": self.learning_rate_init * self.alpha / (batch_size * mean_weight),
                "dropout": self.dropout, "n_threads": self.n_threads}

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train the network on (X, y) for up to `max_iter` epochs; returns self."""
        self._check_params()
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental: bool, classes=None):
        if self.early_stopping and incremental:  # as MLPClassifier, before anything changes
            raise ValueError("partial_fit does not support early_stopping=True (one call's data "
                             "has no validation split); set early_stopping=False")
        # Until training begins, a refused input (X, y, sample_weight, alpha, ...) leaves the
        # estimator as it was: validate_data records the new X's width and feature names, and
        # _encode_targets the new classes, before the checks after them.
        before = dict(self.__dict__)
        try:
            first = not (incremental or self.warm_start) or not hasattr(self, "network_")
            # X's NaN and infinities are refused by _training_inputs, in the dtype the network
            # trains in (a float64 value beyond float32's range too): a second test of a large X by
            # scikit-learn cost 6 ms of a 0.3 s fit of 100,000 x 100.
            X, y = validate_data(self, X, y, reset=first, dtype=(np.float64, np.float32),
                                 multi_output=True, y_numeric=not isinstance(self, ClassifierMixin),
                                 ensure_all_finite=False)
            n_epochs = 1 if incremental else self.max_iter
            X = _training_inputs(X, np.dtype(float_dtype_name(self.dtype)) if first
                                 else self.network_.dtype, n_epochs)
            if sample_weight is not None:
                sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64)
            if first:
                # a first fit forgets the last one; the new network is kept once training began
                if hasattr(self, "network_"):
                    del self.network_
                self._declared_classes = classes  # every class y may hold (None: what y holds)
            T, y_score = self._encode_targets(y, first)
            if first:
                state = self.random_state
                if isinstance(state, np.random.Generator):  # clone() shares it: draw, never reset
                    self._random = state
                else:
                    self._random = check_random_state(state)
                network = Network([X.shape[1], *self._hidden_sizes(), self._n_outputs],
                                  activation=self.activation,
                                  output_activation=self._output_activation, init="glorot",
                                  seed=self._seed(self._random), dtype=self.dtype)
                self.t_ = 0
                self.loss_curve_: list[float] = []
                # as MLPClassifier: None with early stopping (the validation score decides)
                self.best_loss_ = None if self.early_stopping else np.inf
                self._no_improvement_count = 0
                # the validation record, kept across warm-started fits as MLPClassifier keeps it
                self.validation_scores_: list[float] | None = None
                self.best_validation_score_: float | None = None
                self._best_params: np.ndarray | None = None
            else:
                network = self.network_
                self._check_architecture(network, incremental)
            T = as_matrix("y", T, network.dtype, T.shape[1], "outputs", keep_float64=True)
            early_stopping = self.early_stopping
            X_val = y_val = weight_val = None
            if early_stopping:
                stratify = y_score if isinstance(self, ClassifierMixin) and y_score.ndim == 1 \
                    else None
                split = train_test_split(X, T, y_score, *([] if sample_weight is None
                                                          else [sample_weight]),
                                         random_state=self._seed(self._random),
                                         test_size=self.validation_fraction, stratify=stratify)
                X, X_val, T, _, _, y_val = split[:6]
                if sample_weight is not None:
                    sample_weight, weight_val = split[6:8]
                    if not (weight_val > 0).any():
                        raise ValueError("every case drawn for validation has sample_weight 0, so "
                                         "there is no score to stop on; use more weighted cases, a "
                                         "larger validation_fraction, or early_stopping=False")
                if X_val.shape[0] < 2:
                    raise ValueError(f"validation_fraction={self.validation_fraction} leaves "
                                     f"{X_val.shape[0]} case(s) for validation: too few; use more "
                                     f"data, a larger fraction, or early_stopping=False")
            if sample_weight is not None and not (sample_weight > 0).any():
                raise ValueError("sample_weight must have at least one positive value")
            batch_size = self._batch(X.shape[0])
            if self._fit_options(batch_size, sample_weight)["weight_decay"] >= 1:
                weighed = "" if sample_weight is None else \
                    f" (their weight: {batch_size} times the mean sample_weight)"
                raise ValueError(f"alpha={self.alpha} is too large for learning_rate_init="
                                 f"{self.learning_rate_init} and batches of {batch_size}: the "
                                 f"weights would shrink by lr * alpha / the batch's weight"
                                 f"{weighed} >= 1 per update; use a smaller alpha" +
                                 ("" if sample_weight is None else ", or larger sample weights"))
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(before)
            raise
        if not first and not incremental:  # as MLPClassifier: a warm start's fresh optimiser
            network.reset_velocity()
        self.n_iter_ = 0  # the epochs of this call (scikit-learn >= 1.3); t_ counts them all
        scores: list[float] = []
        # the last few best scores: (index in scores, score, params); a sweep the network goes
        # back from (divergence) takes its records with it, at most two of them
        bests: list[tuple[int, float, np.ndarray]] = []
        if early_stopping and getattr(self, "validation_scores_", None) is not None:  # goes on
            scores = list(self.validation_scores_ or [])
            if getattr(self, "_best_params", None) is not None:  # (a pickle of an older fit)
                bests.append((-1, float(self.best_validation_score_),  # type: ignore[arg-type]
                              self._best_params))
        recorded = 0  # epochs of this call recorded by after_epoch

        def after_epoch(_epoch: int, loss: float) -> bool:
            """Record the epoch; True stops training (no improvement for n_iter_no_change)."""
            nonlocal recorded
            recorded += 1
            self.n_iter_ += 1
            self.t_ += X.shape[0]  # samples seen, as MLPClassifier counts
            self.loss_curve_.append(float(loss))
            if early_stopping:
                best_score = bests[-1][1] if bests else -np.inf
                # weights that became NaN are undone right after this (FloatingPointError)
                score = self._validation_score(network, X_val, y_val, weight_val) \
                    if np.isfinite(network.params).all() else np.nan
                scores.append(score)
                improved = score >= best_score + self.tol
                if score > best_score:
                    bests[:] = bests[-2:] + [(len(scores) - 1, score, network.params.copy())]
            else:
                # (None after a warm-started fit's predecessor stopped early)
                best_loss = np.inf if self.best_loss_ is None else self.best_loss_
                improved = loss <= best_loss - self.tol
                self.best_loss_ = min(best_loss, loss)
            self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}" +
                      (f", validation score = {score:.6f}" if early_stopping else ""))
            return self._no_improvement_count > self.n_iter_no_change and not incremental

        try:
            result = network.fit(X, T, n_sweeps=n_epochs, sample_weight=sample_weight,
                                 callback=after_epoch, callback_every=1, evaluate=False,
                                 **self._fit_options(batch_size, sample_weight))
        except FloatingPointError as error:
            # the network went back to the start of a sweep the callback had recorded: forget
            # the sweeps it holds no weights of (Network.fit's error.n_sweeps: those it holds)
            dropped = recorded - getattr(error, "n_sweeps", recorded)
            if dropped > 0:
                self.n_iter_ -= dropped
                self.t_ -= dropped * X.shape[0]
                del self.loss_curve_[-dropped:]
                if early_stopping:
                    del scores[-dropped:]
                    bests[:] = [best for best in bests if best[0] < len(scores)]
            self._keep_validation(early_stopping, scores, bests)
            self.network_ = network  # restored to the last finite weights
            raise self._divergence(error) from error
        except KeyboardInterrupt:
            self._keep_validation(early_stopping, scores, bests)
            self.network_ = network  # trained up to the interrupt
            raise
        self.network_ = network
        self._keep_validation(early_stopping, scores, bests)
        if self._best_params is not None:
            network.assign_params(self._best_params)
        if not incremental:
            if result.stop_reason == "stopped":
                if self.verbose:
                    print(f"{'Validation score' if early_stopping else 'Training loss'} did not "
                          f"improve more than tol={self.tol} for {self.n_iter_no_change} "
                          f"consecutive epochs. Stopping.")
            else:
                warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                              f"reached and the optimization hasn't converged yet.",
                              ConvergenceWarning)
        return self

    def _keep_validation(self, early_stopping: bool, scores: list[float],
                         bests: list[tuple[int, float, np.ndarray]]) -> None:
        """The validation record as MLPClassifier keeps it: None without early stopping."""
        self.validation_scores_ = scores if early_stopping else None
        self.best_validation_score_ = (bests[-1][1] if bests else -np.inf) \
            if early_stopping else None
        self._best_params = bests[-1][2] if early_stopping and bests else None

    def _outputs(self, X) -> np.ndarray:
        check_is_fitted(self, "network_")
        # (Network.predict refuses NaN and infinities, as _fit's _training_inputs does)
        X = validate_data(self, X, reset=False, dtype=(np.float64, np.float32),
                          ensure_all_finite=False)
        # float64 X as it is: Network.predict rounds it a chunk at a time, without a copy
        return self.network_.predict(X, n_threads=self.n_threads).astype(np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class BPClassifier(ClassifierMixin, _BPBase):
    """A multilayer network classifier trained by back-propagation in bpfast's compiled core.

    The parameters are those of ``sklearn.neural_network.MLPClassifier`` (see this module's
    docstring for where they differ), plus:

    clip_norm : float, optional
        Scale each mini-batch's gradient down to this Euclidean norm if it is longer.
    dropout : float in [0, 1), default 0
        Dropout on the hidden units while training (see :meth:`bpfast.Network.fit`).
    n_threads : int, optional
        Threads for training and prediction (default: bpfast's choice, which keeps to the
        limits of threadpoolctl, OMP_NUM_THREADS and joblib's workers).
    dtype : {"float32", "float64"}, default "float32"

    Binary problems get one logistic output unit, multiclass ones softmax outputs, multilabel
    ones (y an indicator matrix) a logistic unit per label, all trained on cross-entropy with
    the gradient averaged over each mini-batch.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, n_outputs_, loss_curve_, best_loss_,
    validation_scores_, best_validation_score_, n_iter_, t_ : as in MLPClassifier.
    network_ : bpfast.Network
        The trained network (its ``weights(...)``, ``save``, Hinton diagrams and so on).
    """

    _loss = "cross_entropy"

    def _encode_targets(self, y, first):
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        multilabel = y.ndim == 2  # (check_classification_targets let only indicator matrices by)
        # y's classes and each case's, from one sort: LabelBinarizer.fit(y) sorted y again, and
        # each pass over 100,000 labels costs 2-5 ms (session 21)
        labels, index = (None, None) if multilabel else np.unique(y, return_inverse=True)
        if first:
            self._binarizer = LabelBinarizer()
            classes = self._declared_classes
            # fitted on the classes alone, a 1-D y's LabelBinarizer is the one y would give; an
            # indicator matrix's is fitted on y, whatever partial_fit's classes (as MLPClassifier)
            self._binarizer.fit(y if multilabel else classes if classes is not None else labels)
            if multilabel and classes is not None and not np.array_equal(
                    classes, self._binarizer.classes_):
                raise ValueError(f"y is a label indicator matrix of {y.shape[1]} labels, so "
                                 f"classes must be their indices "
                                 f"{self._binarizer.classes_.tolist()}, got {classes.tolist()}")
            self.classes_ = self._binarizer.classes_
            self._multilabel = multilabel
            if len(self.classes_) < 2:
                where = "partial_fit's classes name" if classes is not None else "the data has"
                raise ValueError(f"BPClassifier needs samples of at least 2 classes; {where} "
                                 f"1 class: {self.classes_[0]!r}")
            # LabelBinarizer's width (one column for two classes), without a transform to see it:
            # that took 0.7 ms, 2% of a fit on digits
            width = 1 if self._binarizer.y_type_ == "binary" else len(self.classes_)
            self.n_outputs_ = width
            self._n_outputs = width
            self._output_activation = "softmax" if width > 1 and not self._multilabel \
                else "logistic"
        elif multilabel != self._multilabel:
            kinds = ("one label a sample", "a label indicator matrix")
            raise ValueError(f"y is {kinds[multilabel]} but the classifier was fitted on "
                             f"{kinds[self._multilabel]}")
        if self._multilabel:
            return self._binarizer.transform(y).astype(np.float64), y
        unseen = np.setdiff1d(labels, self.classes_)
        if unseen.size:
            how = ("partial_fit's classes must name every class y will hold" if
                   self._declared_classes is not None else
                   "a warm-started fit or partial_fit trains on the classes of the first fit; "
                   "fit with warm_start=False for new classes")
            raise ValueError(f"y has classes {unseen.tolist()} that are not in classes_ "
                             f"{self.classes_.tolist()} ({how})")
        # LabelBinarizer's encoding, built directly (its sparse matrix made dense took 30 ms of
        # a fit on 100,000 cases): one column, 1 for classes_[1], for two classes; else one-hot
        position = np.searchsorted(self.classes_, labels)[index.ravel()]
        T = np.zeros((len(y), self._n_outputs))
        if self._n_outputs == 1:
            T[:, 0] = position == 1
        else:
            T[np.arange(len(y)), position] = 1
        return T, y

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), from the network so far; `classes` (every class y may ever
        hold) is required on the first call. Returns self."""
        self._check_params()
        first = not hasattr(self, "network_")
        if first and classes is None:
            raise ValueError("classes must be passed on the first call to partial_fit")
        if not first and classes is not None and not np.array_equal(
                np.unique(classes), self.classes_):
            raise ValueError(f"classes={classes!r} is not the same as on the first call "
                             f"({self.classes_.tolist()})")
        return self._fit(X, y, sample_weight, incremental=True,
                         classes=np.unique(classes) if first else None)

    def predict_proba(self, X):
        """Class probabilities, shape (n_samples, n_classes) (multilabel: (n_samples, n_labels),
        each label's probability)."""
        p = self._outputs(X)
        if p.shape[1] == 1 and not self._multilabel:
            return np.hstack([1 - p, p])
        return p

    def predict_log_proba(self, X):
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def predict(self, X):
        """The most probable class of each sample (multilabel: every label above 0.5)."""
        return self._from_outputs(self._outputs(X))

    def _from_outputs(self, p):
        if self._multilabel:
            return (p > 0.5).astype(int)
        if p.shape[1] == 1:
            return self.classes_[(p[:, 0] > 0.5).astype(int)]
        return self.classes_[np.argmax(p, axis=1)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class BPRegressor(RegressorMixin, _BPBase):
    """A multilayer network regressor trained by back-propagation in bpfast's compiled core:
    linear output units, the squared error ``½ Σ (y - d)²`` averaged over each mini-batch. The
    parameters and attributes are those of ``sklearn.neural_network.MLPRegressor`` and of
    :class:`BPClassifier` (see this module's docstring for where they differ)."""

    _loss = "sse"
    _output_activation = "identity"

    def _encode_targets(self, y, first):
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2 and y.shape[1] == 1:  # as MLPRegressor: one target, predicted as (n,)
            y = column_or_1d(y, warn=True)
        T = y.reshape(-1, 1) if y.ndim == 1 else y
        if first:
            self._one_column = y.ndim == 1
            self.n_outputs_ = self._n_outputs = T.shape[1]
        elif T.shape[1] != self.n_outputs_:
            raise ValueError(f"y has {T.shape[1]} outputs but the network was fitted with "
                             f"{self.n_outputs_}")
        return T, y

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), from the network so far. Returns self."""
        self._check_params()
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X):
        return self._from_outputs(self._outputs(X))

    def _from_outputs(self, p):
        return p[:, 0] if self._one_column else p

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
