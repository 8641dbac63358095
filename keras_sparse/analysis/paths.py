"""Loss along paths between two solutions: linear and Bézier (Evci et al. 2019).

A point on a path is a full set of weights; it is evaluated with the
model's own forward pass through `stateless_call`, so the model's variables
are never changed. Sparse layers are read unmasked: the point's weights are
used as they are (a sparse solution is exactly 0 at its inactive weights,
and a path through the dense space must not be cut back to the mask).
"""

import math

import keras
import numpy as np
import tensorflow as tf

from keras_sparse.analysis.path_points import datasets, evaluator

SUBSPACES = ("dense", "sparse")
ORDERS = (2, 3)


def default_alphas():
    """`linspace(-0.2, 1.2, 29)` as a list of floats (steps of 0.05)."""
    return [float(a) for a in np.round(np.linspace(-0.2, 1.2, 29), 10)]


def barrier(points):
    """The highest loss along a path minus the higher of its two end losses.

    Args:
        points: a list of dicts with a `"loss"` and either `"alpha"` (a
            linear path: the ends are alpha 0 and 1, the path the points
            with 0 <= alpha <= 1) or `"t"` (a curve: ends t = 0 and 1),
            or neither (the first and last points are the ends).

    Returns:
        A float >= 0; 0.0 when no point between the ends is higher than
        both ends. NaN if a loss on the path is NaN.

    Raises:
        ValueError: if `points` is empty or the ends (0 and 1) are missing.

    Example:

    >>> barrier([{"alpha": 0.0, "loss": 1.0}, {"alpha": 0.5, "loss": 2.5},
    ...          {"alpha": 1.0, "loss": 0.5}])
    1.5
    """
    if not isinstance(points, (list, tuple)) or not points:
        raise ValueError(f"`points` must be a non-empty list of dicts with a 'loss'; got {points!r}.")
    key = "alpha" if "alpha" in points[0] else "t" if "t" in points[0] else None
    if key is None:
        inside, ends = list(points), [points[0], points[-1]]
    else:
        inside = [p for p in points if -1e-9 <= p[key] <= 1 + 1e-9]
        ends = [min(points, key=lambda p: abs(p[key] - e)) for e in (0.0, 1.0)]
        if any(abs(p[key] - e) > 1e-9 for p, e in zip(ends, (0.0, 1.0))):
            raise ValueError(f"`points` must include {key}=0 and {key}=1 (the two ends); got "
                             f"{key} values {[p[key] for p in points]}.")
    losses = [float(p["loss"]) for p in inside]
    if any(math.isnan(v) for v in losses):
        return math.nan
    return float(max(losses) - max(float(ends[0]["loss"]), float(ends[1]["loss"])))


def linear_path(model, start, end, data, alphas=None, bn_data=None, loss=None):
    """Loss and accuracy along the straight line between two weight sets.

    Evaluates `theta(alpha) = (1 - alpha) * start + alpha * end` for every
    alpha, with the model's own layers (through `stateless_call`, so the
    model's variables are left as they are). Sparse layers use the weights
    as given, unmasked. When the model has BatchNormalization, its moving
    statistics at each point are recomputed on `bn_data` (other
    non-trainable weights, such as masks, come from `start`).

    Args:
        model: a built Keras model (plain or `ks.SparseModel`) whose weights
            `start` and `end` are; compiled, or pass `loss`.
        start: the weights at alpha 0, a list as from `model.get_weights()`.
        end: the weights at alpha 1, same shapes.
        data: where loss and accuracy are measured: a finite
            `tf.data.Dataset` of `(x, y)` batches or an `(x, y)` tuple of
            arrays (e.g. a fixed subset of the training set).
        alphas: the points; default `linspace(-0.2, 1.2, 29)`.
        bn_data: data for the BatchNorm statistics (default: `data`).
            interpretation: each batch runs in training mode and the
            statistics combine the batch means and variances exactly (the
            statistics of all of `bn_data` for a first BatchNorm layer; of
            every layer when `bn_data` is one batch).
        loss: the data loss; default: the model's compiled loss (without
            regularization terms).

    Returns:
        A list of `{"alpha", "loss", "accuracy"}` (floats), one per alpha.

    Raises:
        ValueError: `start` and `end` of different lengths or shapes, or
            empty `alphas`.
        TypeError: `start`/`end` not lists, or `data` of the wrong kind.

    Example:

    ```python
    points = ks.analysis.linear_path(model, init_weights, model.get_weights(),
                                     (x_train[:2000], y_train[:2000]))
    ks.analysis.barrier(points)
    ```
    """
    who = "linear_path"
    path = evaluator(model, who, loss)
    start, end = path.check_pair(start, end)
    alphas = default_alphas() if alphas is None else [float(a) for a in alphas]
    if not alphas:
        raise ValueError(f"{who}: `alphas` must hold at least one value; got {alphas!r}.")
    data, bn_data = datasets(data, bn_data, who)
    points = []
    for alpha in alphas:
        values = [(1.0 - alpha) * s + alpha * e if path.is_trainable[i] or i in path.bn else s
                  for i, (s, e) in enumerate(zip(start, end))]
        values = [v.astype(s.dtype) for v, s in zip(values, start)]
        loss_value, accuracy = path.evaluate(values, data, bn_data)
        points.append({"alpha": alpha, "loss": loss_value, "accuracy": accuracy})
    return points


def _bernstein(order, t):
    """Coefficients `C(n-1, j) t^j (1-t)^(n-1-j)` of the `order + 1` control points."""
    return [math.comb(order, j) * t ** j * (1.0 - t) ** (order - j) for j in range(order + 1)]


def _check_mask(path, mask, start, end, who):
    """`{weight index: bool array}` from `mask` (a dict by path or a list)."""
    by_path = {v.path: i for i, v in enumerate(path.weights)}
    if isinstance(mask, dict):
        unknown = sorted(set(mask) - set(by_path))
        if unknown:
            raise ValueError(f"{who}: `mask` names unknown weights {unknown}; weight paths: "
                             f"{sorted(by_path)} (e.g. pass sparse_model.get_masks()).")
        items = [(by_path[p], m) for p, m in mask.items()]
    elif isinstance(mask, (list, tuple)):
        if len(mask) != len(path.weights):
            raise ValueError(f"{who}: `mask` has {len(mask)} entries; the model has "
                             f"{len(path.weights)} weights (a list aligned with "
                             "model.get_weights(), None where unmasked, or a {path: mask} dict).")
        items = [(i, m) for i, m in enumerate(mask) if m is not None]
    else:
        raise TypeError(f"{who}: `mask` must be a {{weight path: array}} dict (as "
                        f"model.get_masks()) or a list aligned with model.get_weights(); "
                        f"got {type(mask).__name__}.")
    result = {}
    for i, m in items:
        variable = path.weights[i]
        m = np.asarray(m)
        if tuple(m.shape) != tuple(variable.shape):
            raise ValueError(f"{who}: `mask` for {variable.path!r} has shape {tuple(m.shape)}; "
                             f"the weight's is {tuple(variable.shape)}.")
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(f"{who}: `mask` for {variable.path!r} must hold only 0 and 1.")
        if not path.is_trainable[i]:
            raise ValueError(f"{who}: `mask` given for {variable.path!r}, which is not a "
                             "trainable weight.")
        for name, ends in (("start", start), ("end", end)):
            if np.any(ends[i][m == 0] != 0):
                raise ValueError(f"{who}: `{name}` has nonzero weights outside `mask` in "
                                 f"{variable.path!r}; `mask` must be the shared mask of both ends.")
        result[i] = m.astype(bool)
    if not result:
        raise ValueError(f"{who}: `mask` masks no weight.")
    return result


def bezier_path(model, start, end, data, order=2, subspace="dense", mask=None, epochs=5,
                optimizer=None, eval_data=None, bn_data=None, num_points=21, seed=0,
                loss=None, batch_size=128, verbose=0, checkpoints=None):
    """Trains a Bézier curve between two solutions and measures loss along it.

    `phi(t) = sum_j C(n, j) t^j (1 - t)^(n-j) theta_j` with `theta_0 =
    start` and `theta_n = end` fixed (n = `order`); the bends `theta_1..`
    start on the straight line (at j/n) and are trained to minimise
    `E_{t ~ U(0,1)} L(phi(t))` with one `t` drawn per batch (Garipov et al.
    2018, as used by Evci et al. 2019). Only trainable weights are curved;
    BatchNorm layers use batch statistics while training and, at each
    evaluated point, statistics recomputed on `bn_data`. The model's
    variables are left as they are.

    Dropout layers draw the same masks at every training step (the
    model's random state is read, not advanced).

    With `subspace="sparse"` every bend is exactly 0 outside `mask` (the
    shared mask of the two ends): bends start there at 0, their gradient and
    their value are masked by selection after every step. With
    `subspace="dense"` all of every trainable weight can move.

    Args:
        model: a built Keras model (plain or `ks.SparseModel`; sparse
            layers are read unmasked), compiled or with `loss`.
        start: weights at t = 0 (a list as from `model.get_weights()`).
        end: weights at t = 1, same shapes.
        data: training data for the bends: a `tf.data.Dataset` of `(x, y)`
            batches (shuffle it yourself) or an `(x, y)` tuple of arrays
            (shuffled each epoch, seeded).
        order: 2 (quadratic, one bend) or 3 (cubic, two bends).
        subspace: "dense" or "sparse".
        mask: for `subspace="sparse"`: `{weight path: 0/1 array}` (e.g.
            `sparse_model.get_masks()`) or a list aligned with
            `model.get_weights()` (None where unmasked); unmasked weights
            (biases, normalization) move freely.
        epochs: passes over `data`.
        optimizer: a Keras optimizer instance or name (default
            `keras.optimizers.Adam(1e-3)`); a fresh one per call is best.
        eval_data: where the points are measured (default: `data`); a
            finite dataset or `(x, y)` arrays, e.g. a fixed training subset.
        bn_data: data for the BatchNorm statistics (default: `eval_data`).
        num_points: points evaluated, `linspace(0, 1, num_points)`.
        seed: seeds the draws of `t` and the shuffling of arrays.
        loss: the data loss; default: the model's compiled loss.
        batch_size: batch size for arrays.
        verbose: 1 prints the mean training loss per epoch.
        checkpoints: optional list of epochs (each in 1..`epochs`) after
            which the curve is also measured, so one training run gives the
            barrier after several lengths of curve training (the training
            itself is the same as without checkpoints).

    Returns:
        `{"points": [{"t", "loss", "accuracy"}], "barrier": float,
        "control_points": [start, bend(s)..., end]}`, each control point a
        list of arrays aligned with `model.get_weights()`; with
        `checkpoints`, also `"checkpoints": [{"epoch", "points", "barrier"}]`
        in increasing epoch order (the entry at `epochs`, if asked for,
        equals the final points).

    Raises:
        ValueError: `start`/`end` of different shapes, `order` not 2 or 3,
            unknown `subspace`, `subspace="sparse"` without `mask`, a mask
            with `subspace="dense"`, a mask of the wrong shape or values,
            or ends that are not 0 outside the mask, or checkpoints outside
            1..`epochs`.

    Example:

    ```python
    curve = ks.analysis.bezier_path(model, w_a, w_b, train_ds, order=2,
                                    subspace="sparse", mask=model.get_masks(),
                                    epochs=10, eval_data=(x[:2000], y[:2000]),
                                    checkpoints=[2, 5, 10])
    curve["barrier"], [c["barrier"] for c in curve["checkpoints"]]
    ```
    """
    who = "bezier_path"
    if isinstance(order, bool) or order not in ORDERS:
        raise ValueError(f"{who}: `order` must be one of {ORDERS} (quadratic or cubic); "
                         f"got order={order!r}.")
    if subspace not in SUBSPACES:
        raise ValueError(f"{who}: `subspace` must be one of {SUBSPACES}; got subspace={subspace!r}.")
    if subspace == "sparse" and mask is None:
        raise ValueError(f"{who}: subspace='sparse' needs `mask`, the shared mask of the two "
                         "ends (e.g. mask=sparse_model.get_masks()).")
    if subspace == "dense" and mask is not None:
        raise ValueError(f"{who}: `mask` is only used with subspace='sparse'; got a mask "
                         "with subspace='dense'.")
    for name, value in (("epochs", epochs), ("num_points", num_points), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "num_points" else 1):
            raise ValueError(f"{who}: `{name}` must be an integer >= "
                             f"{2 if name == 'num_points' else 1}; got {name}={value!r}.")
    if checkpoints is not None:
        given = list(checkpoints) if isinstance(checkpoints, (list, tuple, range)) else None
        if (given is None or not given or any(
                isinstance(c, bool) or not isinstance(c, int) or not 1 <= c <= epochs
                for c in given)):
            raise ValueError(f"{who}: `checkpoints` must be a non-empty list of epochs in 1.."
                             f"{epochs} (epochs={epochs}); got checkpoints={checkpoints!r}.")
        checkpoints = sorted(set(given))
    path = evaluator(model, who, loss)
    start, end = path.check_pair(start, end)
    masks = _check_mask(path, mask, start, end, who) if subspace == "sparse" else {}
    if isinstance(data, tf.data.Dataset):
        train = data
    elif isinstance(data, (tuple, list)) and len(data) in (2, 3):
        n = len(data[0])
        train = tf.data.Dataset.from_tensor_slices(tuple(data)).shuffle(
            n, seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    else:
        raise TypeError(f"{who}: `data` must be a tf.data.Dataset of (x, y) batches or an "
                        f"(x, y) tuple of arrays; got {type(data).__name__}.")
    eval_data, bn_data = datasets(data if eval_data is None else eval_data, bn_data, who)
    optimizer = keras.optimizers.get(optimizer) if optimizer is not None else \
        keras.optimizers.Adam(1e-3)

    curved = [i for i in path.trainable if i is not None]
    bends = []  # bends[j][k]: bend j of trainable weight curved[k]
    for j in range(1, order):
        row = []
        for i in curved:
            value = start[i] + (j / order) * (end[i] - start[i])
            if i in masks:
                value = np.where(masks[i], value, 0.0)
            row.append(keras.Variable(value.astype(start[i].dtype), name=f"bend{j}_" + path.weights[i].name))
        bends.append(row)
    flat = [v for row in bends for v in row]
    optimizer.build(flat)
    keep = {k: tf.constant(masks[i]) for k, i in enumerate(curved) if i in masks}
    ends = [(tf.constant(start[i]), tf.constant(end[i])) for i in curved]
    _, non_trainable = path._split(start)
    in_trainable = {i: k for k, i in enumerate(curved)}
    slots = [in_trainable.get(i) for i in path.trainable]
    fixed = [v.value if i is None else None for i, v in zip(path.trainable, model.trainable_variables)]

    def weights_at(coeffs):
        values = []
        for slot, f in zip(slots, fixed):
            if slot is None:
                values.append(f)
                continue
            s, e = ends[slot]
            value = coeffs[0] * s + coeffs[-1] * e
            for j, row in enumerate(bends, start=1):
                value = value + coeffs[j] * row[slot]
            values.append(value)
        return values

    @tf.function(autograph=False)  # no tensor-dependent Python control flow
    def train_step(x, y, sample_weight, t):
        coeffs = _bernstein(order, t)
        with tf.GradientTape() as tape:
            y_pred, _ = path._forward(weights_at(coeffs), non_trainable, x, True)
            value = tf.cast(path.loss(y, y_pred, sample_weight), tf.float32)
        grads = tape.gradient(value, flat, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        n = len(curved)
        grads = [tf.where(keep[k % n], g, tf.zeros_like(g)) if (k % n) in keep else g
                 for k, g in enumerate(grads)]
        optimizer.apply(grads, flat)
        for k, variable in enumerate(flat):
            if (k % n) in keep:  # select, not multiply: no NaN * 0
                variable.assign(tf.where(keep[k % n], variable, tf.zeros_like(variable)))
        return value

    def control_points():
        control = [list(start)]
        for row in bends:
            point = list(start)
            for k, i in enumerate(curved):
                point[i] = np.asarray(keras.ops.convert_to_numpy(row[k]))
            control.append(point)
        control.append([e if path.is_trainable[i] else start[i] for i, e in enumerate(end)])
        return control

    def measure(control):
        points = []
        for t in np.linspace(0.0, 1.0, num_points):
            coeffs = _bernstein(order, float(t))
            values = []
            for i in range(len(start)):
                if path.is_trainable[i] or i in path.bn:
                    value = sum(c * cp[i] for c, cp in zip(coeffs, control)) \
                        if path.is_trainable[i] else (1 - t) * start[i] + t * end[i]
                    values.append(np.asarray(value).astype(start[i].dtype))
                else:
                    values.append(start[i])
            loss_value, accuracy = path.evaluate(values, eval_data, bn_data)
            points.append({"t": float(t), "loss": loss_value, "accuracy": accuracy})
        return points

    rng = np.random.default_rng(seed)
    measured = {}
    for epoch in range(epochs):
        losses = []
        for batch in train:
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
            t = tf.constant(rng.uniform(), tf.float32)  # one t per batch
            losses.append(float(train_step(x, y, sample_weight, t)))
        if not losses:
            raise ValueError(f"{who}: `data` holds no batches.")
        if verbose:
            print(f"bezier_path epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.4f}")
        if checkpoints and epoch + 1 in checkpoints and epoch + 1 < epochs:
            measured[epoch + 1] = measure(control_points())

    control = control_points()
    points = measure(control)
    result = {"points": points, "barrier": barrier(points), "control_points": control}
    if checkpoints:
        measured[epochs] = points
        result["checkpoints"] = [{"epoch": e, "points": measured[e],
                                  "barrier": barrier(measured[e])} for e in checkpoints]
    return result

