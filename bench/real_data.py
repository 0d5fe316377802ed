"""bpfast's classifier against scikit-learn's MLPClassifier and PyTorch on real and synthetic data.

    python bench/real_data.py             # digits and a 100,000 x 100 synthetic task (minutes)
    python bench/real_data.py --smoke     # tiny sizes, seconds: checks the script and every tool

Every tool trains the same architecture (one hidden layer of 100 ReLU units, softmax outputs,
cross-entropy averaged over mini-batches of 200, shuffled every epoch) for the same number of
epochs with the same optimiser settings, on standardised features, and is scored on a held-out
test set. Tools: "bpfast", bpfast.estimators.BPClassifier; "mlp-adam" and "mlp-sgd",
sklearn.neural_network.MLPClassifier with solver="adam" (lr 0.001) and solver="sgd" (lr 0.1,
momentum 0.9, plain momentum as bpfast's rule); "torch-adam" and "torch-sgd", PyTorch eager
(nn.Linear, ReLU, CrossEntropyLoss, torch.optim.Adam / SGD). bpfast trains with Adam (its default)
and with its momentum rule ("bpfast-sgd"). Early stopping is off everywhere (tol = 0), so every
tool runs every epoch. Each time runs from the NumPy arrays to a trained model: the estimators'
fit checks and encodes the data (bpfast's copies float64 X to float32 once, in its time), and
PyTorch is timed from its tensors' conversion and label encoding on, as a user's script would run
them. Threads: at most 1 and at most 2, each tool choosing within the limit as it does by itself
(threadpoolctl's limit for scikit-learn's BLAS and for bpfast's default n_threads, which keeps
small batches on one thread and tries two on the rest, set_num_threads for PyTorch's intra-op
pool). bpfast with n_threads=2 forced: `--forced-threads`.

Verified before timing: each tool's first run must reach a test accuracy within 3 points of the
best tool's with the same optimiser (6 in --smoke mode), or it is reported as DISAGREES (and the
script exits 1). Then the runs are repeated
interleaved (tool A, B, C, A, B, C, ...) and reported as the median wall time of fit, with the
mean test accuracy and the ratio of each tool's time to bpfast's with the same optimiser (Adam
to "bpfast", SGD to "bpfast-sgd"). Last, GridSearchCV over
BPClassifier and MLPClassifier with n_jobs = 1 and 2: wall time, and the threads each joblib
worker trains bpfast on.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import warnings

import numpy as np

from bpfast import _core
from bpfast.estimators import BPClassifier
from compare import cpu_name  # bench/compare.py, beside this script

try:
    from sklearn.datasets import load_digits, make_classification
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler
except ImportError:  # pragma: no cover
    sys.exit("bench/real_data.py needs scikit-learn: pip install 'bpfast[sklearn]'")

HIDDEN, BATCH = 100, 200


def datasets(smoke: bool):
    """(name, X_train, X_test, y_train, y_test, epochs), standardised."""
    X, y = load_digits(return_X_y=True)
    out = [("digits (1,797 x 64, 10 classes)", X, y, 30 if smoke else 100)]
    n = 5_000 if smoke else 125_000
    X, y = make_classification(n_samples=n, n_features=100, n_informative=50, n_classes=10,
                               n_clusters_per_class=2, class_sep=2.0, random_state=0)
    out.append((f"synthetic ({int(n * 0.8):,} x 100, 10 classes)", X, y, 8 if smoke else 10))
    result = []
    for name, X, y, epochs in out:
        X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=0,
                                                            stratify=y)
        scaler = StandardScaler().fit(X_train)
        result.append((name, scaler.transform(X_train), scaler.transform(X_test), y_train,
                       y_test, epochs))
    return result


def limit_blas(n_threads):
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n_threads)


def common(epochs, seed):
    return dict(hidden_layer_sizes=(HIDDEN,), batch_size=BATCH, max_iter=epochs, tol=0.0,
                n_iter_no_change=epochs + 1, alpha=0.0, random_state=seed)


def fit_bpfast(solver, n_threads):
    """n_threads None: bpfast's default, within the threadpoolctl limit that run() sets."""
    def fit(X, y, X_test, epochs, seed):
        lr = 0.001 if solver == "adam" else 0.1
        clf = BPClassifier(solver=solver, learning_rate_init=lr, n_threads=n_threads,
                           **common(epochs, seed))
        start = time.perf_counter()
        clf.fit(X, y)
        elapsed = time.perf_counter() - start
        return elapsed, clf.predict(X_test)
    return fit


def fit_mlp(solver, n_threads):
    def fit(X, y, X_test, epochs, seed):
        kwargs = dict(solver=solver, **common(epochs, seed))
        if solver == "sgd":
            kwargs.update(learning_rate_init=0.1, momentum=0.9, nesterovs_momentum=False)
        clf = MLPClassifier(**kwargs)
        start = time.perf_counter()
        clf.fit(X, y)
        elapsed = time.perf_counter() - start
        return elapsed, clf.predict(X_test)
    return fit


def fit_torch(solver, n_threads):
    import torch

    def fit(X, y, X_test, epochs, seed):
        torch.set_num_threads(n_threads)
        torch.manual_seed(seed)
        start = time.perf_counter()  # from the NumPy arrays, as the estimators' fit
        Xt = torch.as_tensor(X, dtype=torch.float32)
        classes, yi = np.unique(y, return_inverse=True)
        yt = torch.as_tensor(yi, dtype=torch.long)
        model = torch.nn.Sequential(torch.nn.Linear(X.shape[1], HIDDEN), torch.nn.ReLU(),
                                    torch.nn.Linear(HIDDEN, len(classes)))
        if solver == "adam":
            opt = torch.optim.Adam(model.parameters(), lr=0.001)
        else:
            opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        for _ in range(epochs):
            order = torch.randperm(len(Xt))
            for i in range(0, len(Xt), BATCH):
                rows = order[i: i + BATCH]
                opt.zero_grad()
                loss_fn(model(Xt[rows]), yt[rows]).backward()
                opt.step()
        elapsed = time.perf_counter() - start
        with torch.no_grad():
            predicted = model(torch.as_tensor(X_test, dtype=torch.float32)).argmax(1).numpy()
        return elapsed, classes[predicted]
    return fit


def run(fit, n_threads, *args):
    """One tool's run with NumPy's BLAS limited to n_threads throughout (fit and predict), after
    a pause that lets the previous tool's spinning thread pools (OpenBLAS, PyTorch's OpenMP) go
    idle: on 2 cores one spinning thread halves what a two-thread run gets."""
    time.sleep(0.3)
    with limit_blas(n_threads):
        return fit(*args)


def tools(n_threads, forced):
    own = n_threads if forced else None
    found = {"bpfast": fit_bpfast("adam", own), "bpfast-sgd": fit_bpfast("sgd", own),
             "mlp-adam": fit_mlp("adam", n_threads), "mlp-sgd": fit_mlp("sgd", n_threads)}
    try:
        import torch  # noqa: F401
    except ImportError:
        print("(PyTorch is not installed: its columns are skipped)", file=sys.stderr)
    else:
        found["torch-adam"] = fit_torch("adam", n_threads)
        found["torch-sgd"] = fit_torch("sgd", n_threads)
    return found


def grid_search_block(smoke: bool) -> None:
    """GridSearchCV over BPClassifier with n_jobs 1 and 2 on digits: the wall time, and the
    threads bpfast's default gives each joblib worker (no oversubscription: cores // n_jobs)."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.utils.parallel import Parallel, delayed

    from bpfast import _threads

    X, y = load_digits(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    grid = {"hidden_layer_sizes": [(50,), (100,)], "alpha": [1e-4, 1e-2]}
    epochs = 10 if smoke else 50
    print(f"### GridSearchCV (4 candidates x 3 folds, {epochs} epochs), digits\n")
    print("Each n_jobs runs once untimed first, so that joblib's workers are started (about 2 s "
          "here, paid once per process).\n")
    print("| tool | n_jobs | bpfast threads per worker | wall time (s) |")
    print("|---|---|---|---|")
    for name, make in (("bpfast", BPClassifier), ("mlp-adam", MLPClassifier)):
        for n_jobs in (1, 2):
            # scikit-learn's Parallel, as GridSearchCV's: it sends the warning filters along, and
            # PyTorch's (imported here for its columns) name a class of torch, so unpickling them
            # imports torch in each worker (300 MB). Done in a worker's first task, that is in
            # the size loky measures it against; done later, loky took it for a memory leak and
            # restarted the worker inside a timed search ("A worker stopped while some jobs were
            # given to the executor", session 26)
            threads = Parallel(n_jobs=n_jobs)(
                delayed(_threads.default_threads)() for _ in range(n_jobs))
            times = []
            for _ in range(2):
                search = GridSearchCV(make(max_iter=epochs, random_state=0), grid, cv=3,
                                      n_jobs=n_jobs)
                start = time.perf_counter()
                search.fit(X, y)
                times.append(time.perf_counter() - start)
            print(f"| {name} | {n_jobs} | {sorted(set(threads))} | {times[-1]:.2f} |")
    print()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per tool (default 3)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="thread limits to run under (default 1 2)")
    parser.add_argument("--forced-threads", action="store_true",
                        help="bpfast with n_threads set to the limit instead of its default")
    args = parser.parse_args(argv)
    repeats = 1 if args.smoke else args.repeats
    # a few epochs on little data (smoke) leave more spread between tools than a full run
    tolerance = 0.06 if args.smoke else 0.03
    warnings.simplefilter("ignore", ConvergenceWarning)
    bpfast_threads = "with n_threads set to it" if args.forced_threads else "by its default"
    print(f"CPU: {cpu_name()}; bpfast kernels: {_core.build_facts()['simd']}; "
          f"median of {repeats} (seconds of fit), mean test accuracy; threads: at most the "
          f"row's, bpfast {bpfast_threads}\n")
    failed = False
    for name, X_train, X_test, y_train, y_test, epochs in datasets(args.smoke):
        print(f"### {name}, {epochs} epochs\n")
        print("| threads | tool | accuracy | fit time (s) | time / bpfast's, same optimiser |")
        print("|---|---|---|---|---|")
        for n_threads in args.threads:
            found = tools(n_threads, args.forced_threads)
            # verification: one run of each, accuracy within 3 points of the best
            accuracy = {}
            times = {key: [] for key in found}
            for key, fit in found.items():
                elapsed, predicted = run(fit, n_threads, X_train, y_train, X_test, epochs, 0)
                accuracy[key] = [float(np.mean(predicted == y_test))]
                if args.smoke:
                    times[key].append(elapsed)
            for key in found:  # against the best tool with the same optimiser
                peers = [k for k in found if k.endswith("sgd") == key.endswith("sgd")]
                best = max(accuracy[k][0] for k in peers)
                if accuracy[key][0] < best - tolerance:
                    failed = True
                    print(f"{key} DISAGREES: accuracy {accuracy[key][0]:.3f} against the best "
                          f"{best:.3f} with its optimiser", file=sys.stderr)
            for seed in range(1, repeats + 1 if not args.smoke else 1):
                for key, fit in found.items():  # interleaved
                    elapsed, predicted = run(fit, n_threads, X_train, y_train, X_test, epochs,
                                             seed)
                    times[key].append(elapsed)
                    accuracy[key].append(float(np.mean(predicted == y_test)))
            for key in found:  # against bpfast with the same optimiser
                base = statistics.median(times["bpfast-sgd" if key.endswith("sgd") else "bpfast"])
                median = statistics.median(times[key])
                print(f"| {n_threads} | {key} | {np.mean(accuracy[key]):.3f} | {median:.3f} | "
                      f"{median / base:.1f}× |")
        print()
    grid_search_block(args.smoke)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
