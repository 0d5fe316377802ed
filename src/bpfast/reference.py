"""The oracle: the same math as the compiled core, in plain NumPy float64, written to be read
beside the paper. Every function has the same name and signature as its twin in bpfast._core
(a test keeps them so); `n_threads` is accepted and ignored.

Notation (Rumelhart, Hinton & Williams 1986):
    x_j = Σ_i y_i w_ji + b_j          total input of unit j
    y_j = f(x_j)                      its output; f = logistic 1/(1+exp(-x)) in the paper
    E   = ½ Σ_cases Σ_outputs (y - d)²
    ∂E/∂y_j = y_j - d_j               at an output unit
    ∂E/∂x_j = ∂E/∂y_j · f'(x_j)       = ∂E/∂y_j · y_j (1 - y_j) for the logistic
    ∂E/∂w_ji = Σ_cases ∂E/∂x_j · y_i
    ∂E/∂y_i = Σ_j ∂E/∂x_j · w_ji      passed down to the layers below
    Δw(t) = -ε ∂E/∂w + α Δw(t-1);  w ← w + Δw(t);  w ← (1 - λ) w   (decay)
"""

from __future__ import annotations

import numpy as np

from .units import ACTIVATIONS, LOSSES

_MASK64 = (1 << 64) - 1


_ACTIVATION_LIST = list(ACTIVATIONS.values())  # by the core's numbers


def _f(x, activation):
    return _ACTIVATION_LIST[activation].f(x)


def _f_prime_from_output(y, activation):
    return _ACTIVATION_LIST[activation].derivative(y)


def _layer_edges(topology, l):
    """(source layer, weight matrix slice bounds) of every edge into layer l."""
    for e in range(topology.src_start[l], topology.src_start[l + 1]):
        src = int(topology.src_layer[e])
        shape = (int(topology.size[l]), int(topology.size[src]))
        start = int(topology.w_offset[e])
        yield src, slice(start, start + shape[0] * shape[1]), shape


def forward(topology, params, X, *, all_layers=False, n_threads=1):
    """Activations of every layer (a list, inputs first) or of the output layer only."""
    ys, _ = _forward(topology, params, X)
    return ys if all_layers else ys[-1]


def _dropout_keep(key, l, n_units, n_rows, dropout):
    """Which (case, unit) outputs of hidden layer l the masks of `key` keep: the same hash as
    csrc (bp_dropout_stream, then kernels.inc.c's dropout_keep for each case)."""
    golden = 0x9E3779B97F4A7C15
    streams = []
    for u in range(n_units):
        z = (key + golden * ((l << 32) + u + 1)) & _MASK64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        streams.append((z ^ (z >> 31)) & 0xFFFFFFFF)
    mask32 = np.uint64(0xFFFFFFFF)
    h = (np.array(streams, dtype=np.uint64)[None, :] +
         np.arange(n_rows, dtype=np.uint64)[:, None] * np.uint64(0x9E3779B9)) & mask32
    for shift, factor in ((16, 0x85EBCA6B), (13, 0xC2B2AE35)):
        h ^= h >> np.uint64(shift)
        h = (h * np.uint64(factor)) & mask32
    h ^= h >> np.uint64(16)
    return h >= np.uint64(int(dropout * 4294967296.0))


def _forward(topology, params, X, dropout=0.0, dropout_key=0):
    """(every layer's outputs, each hidden layer's (outputs before dropout, kept mask) or None).
    With dropout, hidden outputs are dropped to 0 or scaled by 1 / (1 - dropout). With ties,
    the layers compute with the dense arena (Topology.dense)."""
    params = topology.dense(params)
    X = np.asarray(X, dtype=np.float64)
    ys = [X[:, c: c + s] for c, s in zip(topology.input_col, topology.size[: topology.n_inputs])]
    dropped = [None] * topology.n_layers
    for l in range(topology.n_inputs, topology.n_layers):
        x = np.zeros((X.shape[0], int(topology.size[l])))
        if topology.bias_offset[l] >= 0:
            x += params[topology.bias_offset[l]: topology.bias_offset[l] + topology.size[l]]
        for src, block, shape in _layer_edges(topology, l):
            x += ys[src] @ params[block].reshape(shape).T
        y = _f(x, int(topology.activation[l]))
        if dropout > 0 and l < topology.n_layers - 1:
            keep = _dropout_keep(dropout_key, l, y.shape[1], y.shape[0], dropout)
            dropped[l] = (y, keep)
            y = np.where(keep, y * (1.0 / (1.0 - dropout)), 0.0)
        ys.append(y)
    return ys, dropped


def _output_error(topology, y, T, loss, dead_zone, reduction="sum", sample_weight=None):
    """dE/dx at the outputs (of E / the cases or their total weight for 'mean'), and E.
    Inside the dead zone, for cases of weight 0 and for NaN targets (no target: the masked
    steps of a recurrent net), the error is zero."""
    activation = list(ACTIVATIONS)[int(topology.activation[-1])]
    missing = np.isnan(T)
    terms, delta = LOSSES[loss].terms(y, np.where(missing, 0.0, T), activation, dead_zone)
    terms, delta = np.where(missing, 0.0, terms), np.where(missing, 0.0, delta)
    weights = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, np.float64)
    terms, delta = terms * weights[:, None], delta * weights[:, None]
    if reduction == "mean":
        total = weights.sum()
        delta = delta / total if total > 0 else 0 * delta
    return delta, float(np.sum(terms))


def loss_gradient(topology, params, X, T, *, loss="sse", dead_zone=(0.2, 0.8), reduction="sum",
                  sample_weight=None, dropout=0.0, dropout_key=0, n_threads=1):
    """(E, gradient) over all rows of X: E = sum over cases of the loss (times each case's
    weight), the gradient of E, or of E / (the cases, or their total weight) for 'mean'. With
    dropout > 0, of the net whose hidden units are dropped by the masks of `dropout_key`."""
    T = np.asarray(T, dtype=np.float64)
    ys, dropped = _forward(topology, params, X, dropout, dropout_key)
    params = topology.dense(params)
    grad = np.zeros(topology.n_dense)
    dE_dy = [None] * topology.n_layers
    out = topology.n_layers - 1
    dE_dx_out, error = _output_error(topology, ys[out], T, loss, dead_zone, reduction,
                                     sample_weight)
    for l in range(out, topology.n_inputs - 1, -1):
        if l == out:
            dE_dx = dE_dx_out
        elif dropped[l] is not None:  # through the mask and the scale, f' before dropout
            y_before, keep = dropped[l]
            dE_dx = np.where(keep, dE_dy[l] * (1.0 / (1.0 - dropout)) *
                             _f_prime_from_output(y_before, int(topology.activation[l])), 0.0)
        else:
            dE_dx = dE_dy[l] * _f_prime_from_output(ys[l], int(topology.activation[l]))
        if topology.bias_offset[l] >= 0:
            grad[topology.bias_offset[l]: topology.bias_offset[l] + topology.size[l]] = dE_dx.sum(0)
        for src, block, shape in _layer_edges(topology, l):
            grad[block] = (dE_dx.T @ ys[src]).ravel()
            if src >= topology.n_inputs:
                down = dE_dx @ params[block].reshape(shape)
                dE_dy[src] = down if dE_dy[src] is None else dE_dy[src] + down
    return error, topology.gather(grad)


def _within(y, T, stop_tol, sample_weight):
    if stop_tol is None:
        return False
    close = (np.abs(y - T) < stop_tol) | np.isnan(T)
    if sample_weight is not None:
        close |= (np.asarray(sample_weight) == 0)[:, None]
    return bool(np.all(close))


def evaluate(topology, params, X, T, *, loss="sse", dead_zone=(0.2, 0.8), stop_tol=None,
             sample_weight=None, n_threads=1):
    """(E, all_within) of the weights over every row of X, without gradients: E the summed loss
    (times each case's weight), all_within whether every output of a case of non-zero weight is
    within stop_tol of its target."""
    y = forward(topology, params, X)
    T = np.asarray(T, dtype=np.float64)
    _, error = _output_error(topology, y, T, loss, dead_zone, "sum", sample_weight)
    return error, _within(y, T, stop_tol, sample_weight)


def update(params, state, grad, *, lr, momentum, weight_decay=0.0, n_decayed=0, rule="momentum",
           beta2=0.999, epsilon=1e-8, clip_norm=0.0, n_threads=1):
    """One update in place, of the rule's state: momentum (state = the velocity v):
    v = momentum v - lr g; w += v. Adam (state = [m | v | t]): see csrc/kernels.inc.c. Then
    w *= 1 - weight_decay for w[:n_decayed]. g is the gradient, scaled down to the norm clip_norm
    if it is longer (clip_norm > 0). Returns whether a weight became NaN or infinite."""
    g = np.asarray(grad, dtype=np.float64)
    norm = float(np.sqrt(np.sum(g * g)))
    if clip_norm > 0 and norm > clip_norm:
        g = g * (clip_norm / norm)
    n = len(params)
    if rule == "adam":
        m, v = state[:n], state[n: 2 * n]
        t = state[2 * n] + 1
        m[...] = momentum * m + (1 - momentum) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        params -= lr * np.sqrt(1 - beta2 ** t) / (1 - momentum ** t) * m / (np.sqrt(v) + epsilon)
        state[2 * n] = t
    else:
        state[...] = momentum * state - lr * g
        params += state
    if weight_decay:
        params[:n_decayed] *= 1.0 - weight_decay
    return not np.isfinite(params).all()


def _splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & _MASK64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return state, z ^ (z >> 31)


def _shuffled_order(n, state):
    """Fisher-Yates from the identity, drawing from splitmix64: the same order as the C core."""
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        state, r = _splitmix64(state)
        j = r % (i + 1)
        order[i], order[j] = order[j], order[i]
    return np.array(order), state


def _all_within(topology, params, X, T, stop_tol, sample_weight):
    if stop_tol is None:
        return False
    return _within(forward(topology, params, X), T, stop_tol, sample_weight)


def train(topology, params, velocity, X, T, phases, *, batch_size, shuffle=True, loss="sse",
          dead_zone=(0.2, 0.8), reduction="sum", sample_weight=None, dropout=0.0, stop_tol=None,
          rng_state=0, callback=None, callback_every=0, n_threads=1):
    """Run every phase of a schedule; return (errors, n_sweeps, status, final_error, all_within,
    rng_state). Same semantics as bpfast._core.train, one sweep at a time; `rng_state` may be a
    1-element uint64 array, which then receives the final state even if training is interrupted."""
    holder = rng_state if isinstance(rng_state, np.ndarray) else None
    box = [int(holder[0]) if holder is not None else rng_state]  # the state as it advances
    options = {"loss": loss, "dead_zone": dead_zone, "reduction": reduction, "dropout": dropout}
    try:
        return _train(topology, params, velocity, X, T, phases, batch_size, shuffle, options,
                      sample_weight, stop_tol, box, callback, callback_every)
    finally:
        if holder is not None:
            holder[0] = box[0]


def _train(topology, params, velocity, X, T, phases, batch_size, shuffle, options, sample_weight,
           stop_tol, box, callback, callback_every):
    X = np.asarray(X, dtype=np.float64)
    T = np.asarray(T, dtype=np.float64)
    w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    dropout = options["dropout"]
    n = X.shape[0]
    batch_size = min(batch_size, n)
    full_batch = batch_size >= n
    errors, status, state = [], "max_sweeps", box[0]
    # The states at the start of the last two sweeps, to go back to if the numbers blow up.
    starts = [(params.copy(), velocity.copy(), state)] * 2
    for n_sweeps, lr, momentum, weight_decay, n_decayed, *rule in phases:
        rule_options = dict(zip(("rule", "beta2", "epsilon", "clip_norm"), rule))
        step = dict(lr=lr, momentum=momentum, weight_decay=weight_decay, n_decayed=n_decayed,
                    **rule_options)
        for _ in range(n_sweeps):
            starts = [starts[1], (params.copy(), velocity.copy(), state)]
            if full_batch:
                if dropout and _all_within(topology, params, X, T, stop_tol, w):
                    status = "solved"  # under dropout, tested before the key is drawn
                    break
                key = 0
                if dropout:
                    state, key = _splitmix64(state)
                    box[0] = state
                error, grad = loss_gradient(topology, params, X, T, sample_weight=w,
                                            dropout_key=key, **options)
                if not np.isfinite(error):
                    status = "non_finite"
                elif not dropout and _all_within(topology, params, X, T, stop_tol, w):
                    status = "solved"
                if status != "max_sweeps":
                    break
                errors.append(error)
                update(params, velocity, grad, **step)
            else:
                if _all_within(topology, params, X, T, stop_tol, w):
                    status = "solved"
                    break
                if shuffle:
                    order, state = _shuffled_order(n, state)
                    box[0] = state
                else:
                    order = np.arange(n)
                sweep_error = 0.0
                for start in range(0, n, batch_size):
                    rows = order[start: start + batch_size]
                    if w is not None and not w[rows].any():
                        continue  # cases of weight 0 are not data: no step, no dropout key
                    key = 0
                    if dropout:
                        state, key = _splitmix64(state)
                        box[0] = state
                    error, grad = loss_gradient(topology, params, X[rows], T[rows],
                                                sample_weight=None if w is None else w[rows],
                                                dropout_key=key, **options)
                    sweep_error += error
                    if not np.isfinite(error):
                        status = "non_finite"
                        break
                    update(params, velocity, grad, **step)
                if status != "max_sweeps":
                    break
                errors.append(sweep_error)
            if callback is not None and callback_every and len(errors) % callback_every == 0:
                if callback(len(errors), errors[-1]):
                    status = "stopped"
                    break
        if status != "max_sweeps":
            break
    if status == "non_finite":
        # Back to the start of the last sweep whose error was finite.
        params[...], velocity[...], state = starts[0] if errors else starts[1]
        box[0] = state
        errors = errors[:-1]
    final_error, within = evaluate(topology, params, X, T, loss=options["loss"],
                                   dead_zone=options["dead_zone"], stop_tol=stop_tol,
                                   sample_weight=w)
    return np.array(errors), len(errors), status, final_error, within, state


def recurrent_loss_gradient(matrices, X, T, *, activation="logistic",
                            output_activation="logistic", loss="sse", dead_zone=(0.2, 0.8),
                            gradient="sum"):
    """(E, gradients by name, hidden states) of a recurrent net in its recurrent form: a loop
    over time steps with stored activations, then back-propagation through time (the paper's
    §"recurrent nets"), written independently of the unrolled layered net bpfast trains.

    matrices: RecurrentNetwork.matrices() ("input", "recurrent", "output", optionally
    "feedback", "hidden_bias", "output_bias"); X (n, T, n_inputs); T (n, T, n_outputs), NaN where
    there is no target. Each gradient is the sum over the steps that use the weight, or with
    gradient="mean" the average over them (the paper's rule)."""
    W = {k: np.asarray(v, dtype=np.float64) for k, v in matrices.items()}
    X, T = np.asarray(X, dtype=np.float64), np.asarray(T, dtype=np.float64)
    n, steps = X.shape[0], X.shape[1]
    H, O = W["input"].shape[0], W["output"].shape[0]
    f = ACTIVATIONS[activation]
    g = ACTIVATIONS[output_activation]
    feedback = "feedback" in W
    hs, ys = [np.zeros((n, H))], [np.zeros((n, O))]  # h_0 = 0, y_0 = 0
    for t in range(steps):
        a = X[:, t] @ W["input"].T + hs[-1] @ W["recurrent"].T + W.get("hidden_bias", 0)
        if feedback:
            a = a + ys[-1] @ W["feedback"].T
        hs.append(f.f(a))
        ys.append(g.f(hs[-1] @ W["output"].T + W.get("output_bias", 0)))
    grads = {k: np.zeros_like(v) for k, v in W.items()}
    error = 0.0
    dh_next = np.zeros((n, H))  # dE/dh_t from step t + 1
    dy_next = np.zeros((n, O))  # dE/dy_t from step t + 1 (feedback)
    for t in range(steps, 0, -1):
        dx_out, e = _output_error_of(ys[t], T[:, t - 1], output_activation, loss, dead_zone)
        error += e
        # y_t feeds step t + 1 too (feedback): that gradient goes through g' as well
        dx_out = dx_out + dy_next * g.derivative(ys[t])
        grads["output"] += dx_out.T @ hs[t]
        if "output_bias" in grads:
            grads["output_bias"] += dx_out.sum(0)
        dh = dx_out @ W["output"] + dh_next
        da = dh * f.derivative(hs[t])
        grads["input"] += da.T @ X[:, t - 1]
        grads["recurrent"] += da.T @ hs[t - 1]
        if "hidden_bias" in grads:
            grads["hidden_bias"] += da.sum(0)
        dh_next = da @ W["recurrent"]
        if feedback:
            grads["feedback"] += da.T @ ys[t - 1]
            dy_next = da @ W["feedback"]
    if gradient == "mean":  # each weight's copies: the steps that use it
        for k in grads:
            grads[k] /= steps - 1 if k in ("recurrent", "feedback") else steps
    return error, grads, np.stack(hs[1:], axis=1)


def _output_error_of(y, T, activation, loss, dead_zone):
    """dE/dx and E of output units of `activation` against targets T (NaN: none)."""
    missing = np.isnan(T)
    terms, delta = LOSSES[loss].terms(y, np.where(missing, 0.0, T), activation, dead_zone)
    return np.where(missing, 0.0, delta), float(np.sum(np.where(missing, 0.0, terms)))
