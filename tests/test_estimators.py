"""bpfast.estimators against scikit-learn's own checks, in its tools, and on real data."""

import re

import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from bpfast.estimators import BPClassifier, BPRegressor  # noqa: E402

FLOAT32_ROUNDING = (
    "float32: a case of weight 2 and the same case twice are the same sums taken in another "
    "order, which round differently in float32 (measured: up to 7e-4 relative in the probabilities, against "
    "the check's rtol of 1e-7); the float64 estimators pass this check")


def expected_failures(estimator):
    """The checks expected to fail for `estimator`, each with why."""
    if estimator.dtype == "float32":
        return {"check_sample_weight_equivalence_on_dense_data": FLOAT32_ROUNDING}
    return {}


# sklearn skips two checks itself: the array-API input check (the estimators compute with NumPy
# through bpfast's C core, which is not array-API code; the check runs only with
# SCIPY_ARRAY_API=1 and an array-API library) and the decision_function checks (the classifier,
# like MLPClassifier, has none).
@parametrize_with_checks([BPClassifier(random_state=0), BPRegressor(random_state=0),
                          BPClassifier(random_state=0, dtype="float64"),
                          BPRegressor(random_state=0, dtype="float64")],
                         expected_failed_checks=expected_failures)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


# -- in scikit-learn's tools ---------------------------------------------------------------------

import pickle  # noqa: E402
import warnings  # noqa: E402

import joblib  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.datasets import (load_digits, make_classification,  # noqa: E402
                              make_multilabel_classification, make_regression)
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.metrics import accuracy_score  # noqa: E402
from sklearn.model_selection import (GridSearchCV, cross_val_score,  # noqa: E402
                                     train_test_split)
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import bpfast  # noqa: E402
from bpfast import _threads  # noqa: E402
from bpfast.network import float_dtype_name  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, random_state=0)


def test_default_settings_classify_digits_as_well_as_mlpclassifier(digits):
    """The issue's bar: >= 0.97 test accuracy on digits with every setting left at its default.
    Over random_state 0..9 on this split, measured: MLPClassifier 0.972 on average (0.958 to
    0.982), BPClassifier 0.972 (0.962 to 0.980). One seed can miss 0.97 for either, so the bar
    is on the mean of the ten, and the worst seed must stay within MLPClassifier's spread."""
    X_train, X_test, y_train, y_test = digits
    scores = []
    for seed in range(10):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf = BPClassifier(random_state=seed).fit(X_train, y_train)
        scores.append(clf.score(X_test, y_test))
        assert clf.n_iter_ == len(clf.loss_curve_) >= 1
        assert clf.loss_curve_[-1] < 0.1 * clf.loss_curve_[0]
    assert np.mean(scores) >= 0.97
    assert min(scores) >= 0.955


def test_pipeline_grid_search_cross_validation_clone_pickle_and_joblib(digits, tmp_path):
    X_train, X_test, y_train, y_test = digits
    pipe = make_pipeline(StandardScaler(), BPClassifier(max_iter=30, random_state=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search = GridSearchCV(pipe, {"bpclassifier__hidden_layer_sizes": [(20,), (40,)],
                                     "bpclassifier__alpha": [1e-4, 1e-2]}, cv=3, n_jobs=2)
        search.fit(X_train, y_train)
        scores = cross_val_score(clone(pipe), X_train, y_train, cv=3)
    assert search.best_score_ > 0.9 and scores.min() > 0.9
    best = search.best_estimator_
    expected = best.predict_proba(X_test)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(best)).predict_proba(X_test),
                                  expected)
    joblib.dump(best, tmp_path / "model.joblib")
    np.testing.assert_array_equal(joblib.load(tmp_path / "model.joblib").predict_proba(X_test),
                                  expected)
    fresh = clone(best)
    assert not hasattr(fresh[-1], "network_")
    assert fresh.get_params()["bpclassifier__hidden_layer_sizes"] == \
        best.get_params()["bpclassifier__hidden_layer_sizes"]


def test_joblib_workers_train_on_one_thread_each():
    """No oversubscription in GridSearchCV(n_jobs=2): joblib limits each worker's OpenMP pool
    (cores // n_jobs), and bpfast's default keeps to that limit."""
    in_workers = joblib.Parallel(n_jobs=2)(joblib.delayed(_threads.default_threads)()
                                           for _ in range(4))
    assert in_workers == [max(1, _threads.default_threads() // 2)] * 4


def test_float64_x_trains_as_its_float32_copy_in_fit_and_partial_fit():
    """fit copies float64 X to float32 once, partial_fit reads it as it is (estimators.py): the
    same numbers either way, and the caller's X is left as it was."""
    import numpy as np
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 12))
    y = X[:, :3].argmax(1)
    X_before = X.copy()
    for method in ("fit", "partial_fit"):
        runs = []
        for data in (X, X.astype(np.float32)):
            clf = BPClassifier(max_iter=4, random_state=0)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if method == "fit":
                    clf.fit(data, y)
                else:
                    clf.partial_fit(data, y, classes=np.unique(y))
            runs.append(clf)
        assert np.array_equal(runs[0].network_.params, runs[1].network_.params)
        assert runs[0].loss_curve_ == runs[1].loss_curve_
    assert np.array_equal(X, X_before) and X.dtype == np.float64


def test_the_float32_copy_is_made_only_for_several_epochs_and_within_memory(monkeypatch):
    import numpy as np
    from bpfast import estimators
    X = np.ones((1000, 10))
    f32 = np.dtype(np.float32)
    assert estimators._training_inputs(X, f32, 10).dtype == np.float32
    assert estimators._training_inputs(X, f32, 1) is X  # partial_fit: as it is
    assert estimators._training_inputs(X, np.dtype(np.float64), 10) is X
    # the copy (40,000 bytes) would take more than a quarter of what is available
    monkeypatch.setattr(estimators, "available_memory", lambda: 150_000)
    assert estimators._training_inputs(X, f32, 10) is X
    monkeypatch.setattr(estimators, "available_memory", lambda: 170_000)
    assert estimators._training_inputs(X, f32, 10).dtype == np.float32


@pytest.mark.parametrize("early_stopping", [False, True])
def test_x_beyond_float32_is_refused_by_the_callers_value_and_row(early_stopping):
    """Checked whole before the validation split and before the float32 copy: no NumPy overflow
    warning, the value as given, its row in the caller's X (the split's row, once), and no
    epoch trained first (the validation part was found bad only by the first epoch's score)."""
    import numpy as np
    from bpfast._validation import NonFiniteError
    X = np.random.default_rng(0).normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    X[3, 1] = 1e39
    for seed in range(6):  # the bad row falls in the training part or in the validation part
        clf = BPClassifier((4,), max_iter=3, early_stopping=early_stopping, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            with pytest.raises(NonFiniteError, match=r"row 3, column 1: np.float64\(1e\+39\)"):
                clf.fit(X, y)
        assert not hasattr(clf, "n_iter_") or clf.n_iter_ == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_a_refit_on_x_with_nan_or_inf_keeps_the_trained_network(bad):
    """X's non-finite values are refused by bpfast's own test (scikit-learn's is off: it tested
    a large X twice) before a refit changes anything, with the value and its row; predict refuses
    them too."""
    import numpy as np
    from bpfast._validation import NonFiniteError
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] > 0).astype(int)
    clf = BPClassifier((4,), max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    network, params = clf.network_, clf.network_.params.copy()
    X_bad = X.copy()
    X_bad[7, 2] = bad
    wider = np.hstack([X_bad, X[:, :2]])  # a new width, which validate_data records first
    for refit, X_refit in ((clf.fit, X_bad), (clf.partial_fit, X_bad), (clf.fit, wider)):
        with pytest.raises(NonFiniteError, match=rf"NaN or infinite .*row 7, column 2: "
                                                 rf"np.float64\({bad!r}\)"):
            refit(X_refit, y)
        assert clf.network_ is network and clf.n_features_in_ == 3
        np.testing.assert_array_equal(clf.network_.params, params)
    assert clf.predict(X).shape == (60,)
    with pytest.raises(ValueError, match="NaN or infinite"):
        clf.predict(X_bad)


def _fitted_state(est):
    state = {k: v for k, v in vars(est).items() if k.endswith("_") and k != "network_"}
    return state, est.network_, est.network_.params.copy(), est.network_.velocity.copy()


def _assert_same_state(est, before):
    import numpy as np
    state, network, params, velocity = before
    after = {k: v for k, v in vars(est).items() if k.endswith("_") and k != "network_"}
    assert after.keys() == state.keys()
    for k in state:
        assert after[k] is state[k] or np.array_equal(after[k], state[k]), k
    assert est.network_ is network
    np.testing.assert_array_equal(est.network_.params, params)
    np.testing.assert_array_equal(est.network_.velocity, velocity)


@pytest.mark.parametrize("warm_start", [False, True])
def test_a_refit_refused_before_training_leaves_the_estimator_as_it_was(warm_start):
    """y of one class, continuous y, a NaN sample weight, an alpha too large: refused before the
    first epoch, after validate_data and the label encoding have run, with nothing changed
    (a refused refit used to delete network_ and keep the new classes_)."""
    import numpy as np
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3))
    y = np.where(X[:, 0] > 0, "yes", "no")
    clf = BPClassifier((4,), max_iter=3, random_state=0, solver="sgd", warm_start=warm_start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    before = _fitted_state(clf)
    X_wide = np.hstack([X, X])
    refused = [
        (lambda: clf.fit(X_wide, np.full(60, "yes")), ValueError),
        (lambda: clf.fit(X, rng.normal(size=60)), ValueError),
        (lambda: clf.fit(X, y, sample_weight=np.full(60, np.nan)), ValueError),
        (lambda: clf.set_params(alpha=1e6).fit(X, y), ValueError),
    ]
    for call, error in refused:
        with pytest.raises(error):
            call()
        clf.set_params(alpha=0.0001)
        _assert_same_state(clf, before)


def test_y_beyond_float32_is_refused_as_y():
    import numpy as np
    from bpfast._validation import NonFiniteError
    X = np.random.default_rng(0).normal(size=(50, 3))
    y = X[:, 0].copy()
    y[5] = 1e39
    with pytest.raises(NonFiniteError, match=r"^y contains .* row 5"):
        BPRegressor((4,), max_iter=2).fit(X, y)


def test_a_fortran_ordered_x_is_copied_once():
    import numpy as np
    from bpfast import estimators
    X = np.asfortranarray(np.random.default_rng(0).normal(size=(100, 7)))
    copy = estimators._training_inputs(X, np.dtype(np.float32), 10)
    assert copy.dtype == np.float32 and copy.flags.c_contiguous  # Network.fit copies no more


def test_warm_started_early_stopping_keeps_the_validation_record_as_mlpclassifier():
    """validation_scores_ grows with loss_curve_ over warm-started fits, and the best score and
    its weights carry over (MLPClassifier's _best_coefs); n_iter_ counts the last call only
    (scikit-learn >= 1.3), t_ every sample seen."""
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.neural_network import MLPClassifier
    X, y = make_classification(300, 6, random_state=0)
    settings = dict(hidden_layer_sizes=(8,), max_iter=5, random_state=0, warm_start=True,
                    early_stopping=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = BPClassifier(**settings).fit(X, y)
        first_best = ours.best_validation_score_
        ours.fit(X, y)
        mlp = MLPClassifier(**settings).fit(X, y).fit(X, y)
    for clf in (ours, mlp):
        assert len(clf.validation_scores_) == len(clf.loss_curve_) == 10
        assert clf.n_iter_ == 5 and clf.t_ == 10 * 270
        assert clf.best_validation_score_ == max(clf.validation_scores_)
    assert ours.best_validation_score_ >= first_best
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inc = BPClassifier((4,), random_state=0)
        for _ in range(3):
            inc.partial_fit(X, y, classes=np.unique(y))
    assert inc.n_iter_ == 1 and inc.t_ == 3 * 300 and len(inc.loss_curve_) == 3


def test_a_divergence_forgets_the_sweeps_the_network_went_back_from():
    import numpy as np
    X = np.random.RandomState(0).randn(100, 3)
    y = X @ [1e3, 1e3, 1e3]
    clf = BPRegressor((8,), max_iter=50, learning_rate_init=5, solver="sgd", random_state=0)
    with pytest.raises(FloatingPointError) as error:
        clf.fit(X, y)
    kept = error.value.n_sweeps  # Network.fit's: the sweeps whose weights the network holds
    assert clf.n_iter_ == kept == len(clf.loss_curve_) and clf.t_ == 100 * kept
    assert np.isfinite(clf.network_.params).all()
    # in the estimator's terms: X and learning_rate_init, not Network.fit's T and lr
    message = str(error.value)
    assert message.startswith("BPRegressor: training diverged") and "learning_rate_init" in message
    assert not re.search(r"\bT\b", message) and "lr =" not in message
    assert isinstance(error.value.__cause__, FloatingPointError)  # Network.fit's, with its details


def test_a_loss_that_overflows_at_once_says_to_scale_x():
    import numpy as np
    X = np.random.RandomState(0).randn(50, 3) * 1e30
    with pytest.raises(FloatingPointError, match="first epoch.*Scale X") as error:
        BPRegressor((4,), max_iter=3, random_state=0).fit(X, X[:, 0])
    assert error.value.n_sweeps == 0


@pytest.mark.parametrize("name, value", [("early_stopping", "False"), ("warm_start", "no"),
                                         ("shuffle", 1), ("verbose", []),
                                         ("early_stopping", float("nan")), ("solver", []),
                                         ("activation", ["relu"])])
def test_parameters_of_the_wrong_kind_are_refused_not_taken_as_true(name, value):
    import numpy as np
    X = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises((TypeError, ValueError), match=name):
        BPClassifier((3,), max_iter=2, **{name: value}).fit(X, X[:, 0] > 0)


@pytest.mark.parametrize("dtype", ["float32", np.float32, "f8"])
def test_dtype_names_that_numpy_reads(dtype):
    assert float_dtype_name(dtype) in ("float32", "float64")


@pytest.mark.parametrize("dtype", [None, np.float64(7.0), np.float32(float("nan")), "f2", 3])
def test_numpy_scalars_and_other_values_are_not_dtypes(dtype):
    """np.dtype(np.float64(7.0)) is float64: a value, not a type, was taken as one."""
    assert float_dtype_name(dtype) is None


def test_random_state_as_scikit_learn_accepts_it():
    X, y = make_classification(n_samples=80, n_features=5, random_state=0)
    fit = dict(X=X, y=y)

    def probs(state):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return BPClassifier(hidden_layer_sizes=(5,), max_iter=5,
                                random_state=state).fit(**fit).predict_proba(X)

    np.testing.assert_array_equal(probs(3), probs(3))
    np.testing.assert_array_equal(probs(np.random.RandomState(3)),
                                  probs(np.random.RandomState(3)))
    np.testing.assert_array_equal(probs(np.random.default_rng(3)),
                                  probs(np.random.default_rng(3)))
    assert not np.array_equal(probs(3), probs(4))
    assert probs(None).shape == (80, 2)


def test_binary_multiclass_and_multilabel_targets():
    X, y = make_classification(n_samples=200, n_features=8, n_informative=5, n_classes=3,
                               random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = np.array(["cat", "dog", "eel"])[y]
        clf = BPClassifier(random_state=0, learning_rate_init=0.01).fit(X, labels)
        assert list(clf.classes_) == ["cat", "dog", "eel"]
        assert clf.network_.topology.layers[-1].activation == "softmax"
        np.testing.assert_allclose(clf.predict_proba(X).sum(axis=1), 1, rtol=1e-6)
        assert clf.score(X, labels) > 0.9

        binary = BPClassifier(random_state=0, learning_rate_init=0.01).fit(X, y == 1)
        assert binary.network_.topology.n_outputs == 1 and binary.predict_proba(X).shape == (200, 2)
        assert binary.score(X, y == 1) > 0.9

        Y = np.stack([y == 0, y == 1, (X[:, 0] > 0)], axis=1).astype(int)
        multi = BPClassifier(random_state=0, learning_rate_init=0.01).fit(X, Y)
        assert multi.predict(X).shape == (200, 3) and set(np.unique(multi.predict(X))) <= {0, 1}
        assert multi.network_.topology.layers[-1].activation == "logistic"
        assert (multi.predict(X) == Y).mean() > 0.85


@pytest.mark.parametrize("labels, classes", [
    (np.array([3.0, -1.0, 3.0, 3.0, -1.0, 3.0]), None),                # binary, floats
    (np.array(["eel", "cat", "dog", "cat", "eel", "dog"]), None),       # multiclass, strings
    (np.array(["b", "a", "b", "a", "a", "b"], dtype=object), None),      # objects
    (np.array([0, 0, 1, 0, 1, 1]), [0, 1, 2, 3]),                        # declared, some unseen
    (np.array([[1, 0], [0, 1], [1, 1], [0, 0], [1, 0], [0, 1]]), None),  # multilabel
])
def test_targets_are_encoded_as_label_binarizer_encodes_them(labels, classes):
    from sklearn.preprocessing import LabelBinarizer
    X = np.random.default_rng(0).normal(size=(len(labels), 3))
    clf = BPClassifier(max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if classes is None:
            clf.fit(X, labels)
        else:
            clf.partial_fit(X, labels, classes=classes)
    T, _ = clf._encode_targets(labels, first=False)
    expected = LabelBinarizer().fit(labels if classes is None else classes).transform(labels)
    assert T.dtype == np.float64
    np.testing.assert_array_equal(T, expected)
    assert clf.n_outputs_ == expected.shape[1]


def test_sample_weights_steer_the_fit():
    """Weight 0 on one class: the classifier never learns to predict it."""
    X, y = make_classification(n_samples=300, n_features=6, n_classes=3, n_informative=4,
                               random_state=2)
    w = (y != 2).astype(float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = BPClassifier(random_state=0, learning_rate_init=0.01).fit(X, y, sample_weight=w)
    assert (clf.predict(X) != 2).all()


@pytest.mark.parametrize("change", [dict(hidden_layer_sizes=(7, 3)), dict(activation="tanh"),
                                    dict(dtype="float64")])
@pytest.mark.parametrize("how", ["warm_start", "partial_fit"])
def test_going_on_training_refuses_a_changed_architecture_and_keeps_the_network(change, how):
    X, y = make_classification(n_samples=200, n_features=6, n_classes=3, n_informative=4,
                               random_state=2)
    clf = BPClassifier(hidden_layer_sizes=(5,), max_iter=2, warm_start=True, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    before = clf.network_.params.copy()
    clf.set_params(**change)
    with pytest.raises(ValueError, match=f"{next(iter(change))} .*changed since"):
        if how == "warm_start":
            clf.fit(X, y)
        else:
            clf.partial_fit(X, y)
    assert np.array_equal(clf.network_.params, before)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.set_params(warm_start=False).fit(X, y)  # a new network, as asked
    assert clf.network_.params.dtype == np.dtype(clf.dtype)


def test_partial_fit_warm_start_and_early_stopping():
    X, y = make_classification(n_samples=400, n_features=10, random_state=3)
    clf = BPClassifier(hidden_layer_sizes=(16,), random_state=0, learning_rate_init=0.01)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    for _ in range(5):
        clf.partial_fit(X, y, classes=[0, 1])
    # n_iter_: the last call's epochs, as scikit-learn >= 1.3 counts them; loss_curve_: all
    assert clf.n_iter_ == 1 and len(clf.loss_curve_) == 5
    with pytest.raises(ValueError, match="not the same as on the first call"):
        clf.partial_fit(X, y, classes=[0, 1, 2])

    with warnings.catch_warnings():  # a full fit after partial_fit starts over, classes too
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.set_params(max_iter=2).fit(X, y + 5)
    assert list(clf.classes_) == [5, 6] and clf.n_iter_ == 2

    warm = BPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=3, warm_start=True,
                        learning_rate_init=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warm.fit(X, y)
        first = warm.network_.params.copy()
        warm.fit(X, y)
    assert warm.n_iter_ == 3 and len(warm.loss_curve_) == 6
    assert not np.array_equal(first, warm.network_.params)

    early = BPClassifier(hidden_layer_sizes=(16,), random_state=0, early_stopping=True,
                         n_iter_no_change=3, max_iter=500, learning_rate_init=0.05)
    early.fit(X, y)
    assert early.n_iter_ < 500 and len(early.validation_scores_) == early.n_iter_
    assert early.best_validation_score_ == max(early.validation_scores_)


def test_convergence_warning_and_verbose_output(capsys):
    X, y = make_regression(n_samples=60, n_features=4, random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        BPRegressor(max_iter=2, verbose=True, random_state=0).fit(X, y)
    assert "Iteration 2, loss = " in capsys.readouterr().out


def test_regressor_single_and_multiple_outputs():
    X, y = make_regression(n_samples=300, n_features=6, n_targets=2, noise=1, random_state=4)
    X = StandardScaler().fit_transform(X)
    y = y / y.std()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        two = BPRegressor(random_state=0, learning_rate_init=0.01).fit(X, y)
        one = BPRegressor(random_state=0, learning_rate_init=0.01).fit(X, y[:, 0])
    assert two.predict(X).shape == (300, 2) and one.predict(X).shape == (300,)
    assert two.score(X, y) > 0.95 and one.score(X, y[:, 0]) > 0.95


@pytest.mark.parametrize("params,match", [
    ({"hidden_layer_sizes": (10, 0)}, "positive integers"),
    ({"activation": "softmax"}, "activation must be one of"),
    ({"solver": "lbfgs"}, "solver must be one of"),
    ({"batch_size": 0}, "batch_size"),
    ({"learning_rate_init": 0}, "learning_rate_init"),
    ({"momentum": 1.5}, "momentum"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
    ({"max_iter": 0}, "max_iter"),
])
def test_bad_parameters_are_refused_at_fit_naming_the_parameter(params, match):
    with pytest.raises(ValueError, match=match):
        BPClassifier(**params).fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_the_core_never_imports_scikit_learn():
    import subprocess
    import sys
    code = ("import sys, bpfast, bpfast.__main__; "
            "assert not any(m == 'sklearn' or m.startswith('sklearn.') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert bpfast.estimators.BPClassifier is BPClassifier


def test_loss_curve_and_t_are_on_mlpclassifiers_scale(digits):
    """t_ counts samples seen and loss_curve_ is the loss per sample, as MLPClassifier's."""
    from sklearn.neural_network import MLPClassifier
    X_train, _, y_train, _ = digits
    X_train = StandardScaler().fit_transform(X_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = BPClassifier(max_iter=3, random_state=0).fit(X_train, y_train)
        theirs = MLPClassifier(max_iter=3, random_state=0).fit(X_train, y_train)
    assert ours.t_ == theirs.t_ == 3 * len(X_train)
    # per sample: near ln 10 = 2.3 at the start (a sum would be 1,347 times that), both tools
    assert 0.05 < ours.loss_curve_[0] < 3 and 0.05 < theirs.loss_curve_[0] < 3


def test_a_first_partial_fit_refuses_labels_outside_its_classes_and_stays_unfitted():
    from sklearn.exceptions import NotFittedError
    X, y = make_classification(n_samples=60, n_features=4, n_classes=3, n_informative=3,
                               n_redundant=0, random_state=5)
    clf = BPClassifier(hidden_layer_sizes=(4,))
    with pytest.raises(ValueError, match="not in classes_"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(NotFittedError):
        clf.predict(X)
    clf.partial_fit(X, y, classes=[0, 1, 2])
    assert clf.predict(X).shape == (60,)


def test_partial_fit_refuses_the_other_kind_of_target_and_keeps_the_network():
    # one label a sample after label indicators, and the other way round: before session 21 an
    # indicator matrix given to a multiclass fit raised NumPy's IndexError from the encoding
    X, y = make_classification(n_samples=60, n_features=4, n_classes=3, n_informative=3,
                               n_redundant=0, random_state=5)
    indicators = np.eye(3, dtype=int)[y]
    for first, then in ((y, indicators), (indicators, y)):
        clf = BPClassifier(hidden_layer_sizes=(4,), max_iter=2, random_state=0).fit(X, first)
        params = clf.network_.params.copy()
        with pytest.raises(ValueError, match="fitted on"):
            clf.partial_fit(X, then)
        np.testing.assert_array_equal(clf.network_.params, params)


def test_alpha_too_large_for_the_learning_rate_is_refused_naming_alpha():
    with pytest.raises(ValueError, match="alpha=100"):
        BPClassifier(alpha=100, learning_rate_init=0.1, batch_size=2).fit(
            np.zeros((4, 2)), [0, 1, 0, 1])
    # small case weights make a batch light: its decay, alpha / the batch's weight, grows too
    # large, and the estimator says so in its own terms (an internal Phase's check did)
    with pytest.raises(ValueError, match="alpha=1.0 .*larger sample weights"):
        BPClassifier(alpha=1.0, learning_rate_init=0.01, solver="sgd", batch_size=2).fit(
            np.zeros((4, 2)), [0, 1, 0, 1], sample_weight=np.full(4, 1e-5))


def test_early_stopping_scores_the_validation_cases_by_their_weight(monkeypatch):
    """As MLPClassifier (scikit-learn >= 1.7): a validation case of weight 0 does not count."""
    from bpfast import estimators
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 5))
    y = (X[:, 0] > 0).astype(int)
    w = np.ones(400)
    noisy = rng.random(400) < 0.5
    y[noisy] = rng.integers(0, 2, noisy.sum())
    w[noisy] = 0.0
    drawn = {}

    def spy(*arrays, **options):
        split = train_test_split(*arrays, **options)
        drawn.update(X=split[1], y=split[5], w=split[7])
        return split

    monkeypatch.setattr(estimators, "train_test_split", spy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = BPClassifier(max_iter=1, early_stopping=True, random_state=0).fit(
            X, y, sample_weight=w)
    predicted = clf.predict(drawn["X"])
    weighted = accuracy_score(drawn["y"], predicted, sample_weight=drawn["w"])
    assert weighted != accuracy_score(drawn["y"], predicted)  # the data make the two differ
    assert clf.validation_scores_ == [pytest.approx(weighted)]
    assert clf.best_loss_ is None  # as MLPClassifier with early stopping

    w_zero_val = np.zeros(400)
    w_zero_val[:2] = 1  # at most two weighted cases: a validation split may draw none
    with pytest.raises(ValueError, match="sample_weight 0"):
        for seed in range(20):
            BPClassifier(max_iter=1, early_stopping=True, random_state=seed).fit(
                X, y, sample_weight=w_zero_val)


def test_partial_fit_takes_a_label_indicator_matrix():
    X, Y = make_multilabel_classification(n_samples=200, n_features=8, n_classes=4,
                                          random_state=0)
    clf = BPClassifier(hidden_layer_sizes=(16,), random_state=0)
    with pytest.raises(ValueError, match="classes must be their indices"):
        clf.partial_fit(X, Y, classes=[0, 1])  # the label values, not the labels: refused
    for _ in range(3):
        clf.partial_fit(X, Y, classes=range(4))  # as MLPClassifier takes them
    whole = BPClassifier(hidden_layer_sizes=(16,), random_state=0, max_iter=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        whole.fit(X, Y)
    assert clf.predict(X).shape == Y.shape and list(clf.classes_) == list(whole.classes_)
    np.testing.assert_array_equal(clf.predict_proba(X) > 0.5, clf.predict(X) == 1)


def test_partial_fit_refuses_early_stopping_and_changes_nothing():
    X, y = make_classification(n_samples=100, n_features=5, random_state=0)
    clf = BPClassifier(early_stopping=True)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        clf.partial_fit(X, y, classes=[0, 1])
    assert not hasattr(clf, "network_") and not hasattr(clf, "classes_")


def test_a_warm_start_after_an_early_stopped_fit_tracks_its_loss():
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    clf = BPClassifier(early_stopping=True, warm_start=True, max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
        assert clf.best_loss_ is None
        clf.set_params(early_stopping=False).fit(X, y)
    assert clf.best_loss_ == min(clf.loss_curve_[3:])


def test_a_regressor_fitted_on_one_column_predicts_one_dimension_as_mlpregressor():
    from sklearn.exceptions import DataConversionWarning
    X, y = make_regression(n_samples=50, n_features=3, random_state=0)
    with pytest.warns(DataConversionWarning):
        reg = BPRegressor(max_iter=5, random_state=0).fit(X, y.reshape(-1, 1))
    assert reg.predict(X).shape == (50,)


def test_a_bad_dtype_set_after_fitting_is_refused_by_name():
    X, y = make_classification(n_samples=60, n_features=4, random_state=0)
    clf = BPClassifier(max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    for bad in ("foo", "int32", 3):
        with pytest.raises(ValueError, match="dtype must be 'float32' or 'float64'"):
            clf.set_params(dtype=bad).partial_fit(X, y)
