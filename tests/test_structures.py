"""ks.structures: N:M and block masks, kept by every method, saved, refused when impossible."""

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_sparse as ks
from keras_sparse.structures import NM, Block, Unstructured

to_np = keras.ops.convert_to_numpy

STRUCTURES = [NM(2, 4), Block((2, 4))]
# The sparsity each structure is asked for: N:M's own, and one of whole blocks.
SPARSITY = {NM(2, 4): 0.5, Block((2, 4)): 0.7}


def _model(seed=0):
    """Conv2D and Dense kernels whose input/output dims fit both structures."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((6, 6, 4)),
        keras.layers.Conv2D(8, 3, name="conv"),
        keras.layers.Flatten(),
        keras.layers.Dense(8, activation="relu", name="fc1"),
        keras.layers.Dense(4, name="fc2"),
    ], name="net")


def _data(n=32):
    rng = np.random.RandomState(0)
    return rng.rand(n, 6, 6, 4).astype("float32"), (np.arange(n) % 4).astype("int64")


def _holds(model, structure):
    return [bool(structure.validate(mw.mask)) for mw in model.masked_weights]


class InvariantCheck(keras.callbacks.Callback):
    """Listed after the rule: every mask change it made holds the structure."""

    def __init__(self, structure):
        super().__init__()
        self.structure, self.seen, self.masks = structure, [], None

    def on_train_begin(self, logs=None):
        self.masks = [to_np(mw.mask).copy() for mw in self.model.masked_weights]
        if not all(m.all() for m in self.masks):  # the dense start is not a change
            self.seen.append(_holds(self.model, self.structure))

    def _check(self):
        masks = [to_np(mw.mask).copy() for mw in self.model.masked_weights]
        if any((a != b).any() for a, b in zip(masks, self.masks)):
            self.seen.append(_holds(self.model, self.structure))
        self.masks = masks

    def on_train_batch_end(self, batch, logs=None):
        self._check()

    def on_epoch_end(self, epoch, logs=None):
        self._check()


# -- the structures themselves ----------------------------------------------------


def test_nm_groups_run_along_the_input_dimension():
    # Dense [in, out]: groups are 4 consecutive rows of one column.
    scores = tf.constant(np.arange(16, dtype="float32").reshape(8, 2))
    mask = to_np(NM(1, 4).mask(scores, 4))
    np.testing.assert_array_equal(mask[:, 0], [0, 0, 0, 1, 0, 0, 0, 1])
    # Conv [h, w, in, out]: groups along the input channels.
    kernel = tf.random.stateless_uniform((3, 3, 8, 5), seed=(1, 2))
    mask = to_np(NM(2, 4).mask(kernel, None))
    assert (mask.reshape(3, 3, 2, 4, 5).sum(axis=3) == 2).all()
    assert bool(NM(2, 4).validate(mask))
    assert not bool(NM(2, 4).validate(np.ones((3, 3, 8, 5))))
    # The dense count (sparsity 0) keeps everything.
    assert to_np(NM(2, 4).mask(kernel, 3 * 3 * 8 * 5)).all()


def test_blocks_are_kept_or_dropped_whole_by_summed_score():
    scores = np.zeros((4, 8), "float32")
    scores[2:4, 4:8] = 1.0           # one (2, 4) block with the largest sum
    scores[0, 0] = 3.0               # one large weight does not beat a 8-weight sum 8
    mask = to_np(Block((2, 4)).mask(tf.constant(scores), 8))
    expected = np.zeros((4, 8))
    expected[2:4, 4:8] = 1
    np.testing.assert_array_equal(mask, expected)
    assert bool(Block((2, 4)).validate(mask))
    broken = expected.copy()
    broken[2, 4] = 0
    assert not bool(Block((2, 4)).validate(broken))
    kernel = tf.random.stateless_uniform((3, 3, 4, 8), seed=(3, 4))
    mask = to_np(Block((2, 4)).mask(kernel, 3 * 3 * 8 * 4 // 2))
    assert bool(Block((2, 4)).validate(mask)) and mask.mean() == 0.5
    tiles = mask.reshape(3, 3, 2, 2, 2, 4)
    assert ((tiles.min(axis=(3, 5)) == tiles.max(axis=(3, 5)))).all()


def test_get_and_serialize():
    assert ks.structures.get(None) == Unstructured()
    assert ks.structures.get("2:4") == NM(2, 4)
    assert ks.structures.get({"n": 1, "m": 4}) == NM(1, 4)
    assert ks.structures.get({"block_size": [1, 4]}) == Block((1, 4))
    for structure in [NM(2, 4), Block((1, 4))]:
        config = ks.structures.serialize(structure)
        assert ks.structures.get(config) == structure
        assert keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(structure)) == structure
    assert ks.structures.serialize(Unstructured()) is None
    with pytest.raises(ValueError, match="`structure` must be None, 'unstructured', 'n:m'"):
        ks.structures.get("two of four")
    with pytest.raises(TypeError, match="`structure` must be None"):
        ks.structures.get(2)


@pytest.mark.parametrize("make, error, message", [
    (lambda: NM(4, 4), ValueError, r"`n` must be an integer in \[1, 3\] \(n < m=4\); got 4"),
    (lambda: NM(0, 4), ValueError, r"`n` must be an integer in \[1, 3\].*got 0"),
    (lambda: NM(1, 1), ValueError, r"`m` must be an integer >= 2; got 1"),
    (lambda: Block((0, 4)), ValueError, r"`block_size` must be an integer >= 1; got 0"),
    (lambda: Block(4), TypeError, r"`block_size` must be a pair"),
])
def test_bad_structure_arguments(make, error, message):
    with pytest.raises(error, match=message):
        make()


# -- bad input through sparsify and the layers: clear error, nothing changed ------------


def _weights(model):
    return [to_np(w).copy() for w in model.weights]


@pytest.mark.parametrize("structure, sparsity, message", [
    (NM(2, 8), 0.75, r"NM\(2, 8\): `m`=8 must divide the input dimension.*layer 'conv'.*"
                     r"shape \(3, 3, 4, 8\) \(input dimension 4\)"),
    (NM(2, 4), 0.3, r"`sparsity`=0.3 is not reachable with NM\(2, 4\) for weight "
                    r"net/conv/kernel of shape \(3, 3, 4, 8\).*its sparsity is 0.5"),
    (Block((16, 4)), 0.5, r"Block\(\(16, 4\)\): `block_size`=\(16, 4\) is larger than the "
                          r"kernel \(input x output 4 x 8\).*layer 'conv'.*shape \(3, 3, 4, 8\)"),
    (Block((1, 3)), 0.5, r"must divide the kernel's input x output dimensions 4 x 8.*"
                         r"layer 'conv'.*shape \(3, 3, 4, 8\)"),
    (Block((4, 4)), 0.95, r"`sparsity`=0.95 is not reachable with Block\(\(4, 4\)\) for "
                          r"weight net/fc2/kernel of shape \(8, 4\): its 2 blocks would all be"),
])
def test_sparsify_refuses_what_a_layer_cannot_hold(structure, sparsity, message):
    model = _model()
    before = _weights(model)
    with pytest.raises(ValueError, match=message):
        ks.sparsify(model, sparsity, structure=structure, distribution="uniform")
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)


def test_dense_layers_leave_an_unfit_layer_dense():
    model = ks.sparsify(_model(), 0.75, structure=NM(2, 8), dense_layers=["conv"])
    assert [mw.structure for mw in model.masked_weights] == [Unstructured(), NM(2, 8), NM(2, 8)]
    assert to_np(model.masked_weights[0].mask).all()
    assert _holds(model, NM(2, 8))[1:] == [True, True]


def test_layer_kinds_that_cannot_hold_a_structure():
    with pytest.raises(ValueError, match=r"SparseDepthwiseConv2D 'dw': `structure`=NM\(2, 4\) "
                                         r"cannot be held by this layer kind"):
        ks.layers.SparseDepthwiseConv2D(3, name="dw", structure=NM(2, 4))
    with pytest.raises(ValueError, match=r"cannot be held by this layer kind"):
        ks.layers.SparseEinsumDense("ab,bc->ac", output_shape=8, structure="2:4")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 4)), keras.layers.DepthwiseConv2D(3, name="dw"),
                              keras.layers.Flatten(), keras.layers.Dense(4, name="fc")])
    before = _weights(model)
    with pytest.raises(ValueError, match=r"layer 'dw' \(DepthwiseConv2D, kernel shape "
                                         r"\(3, 3, 4, 1\)\) cannot hold"):
        ks.sparsify(model, 0.5, structure=NM(2, 4))
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)
    sparse = ks.sparsify(model, 0.5, structure=NM(2, 4), dense_layers=["dw"])
    assert _holds(sparse, NM(2, 4)) == [False, True]  # the depthwise kernel stays dense


def test_a_rule_refuses_another_structure_and_changes_nothing():
    model = ks.sparsify(_model(), 0.5, structure=NM(2, 4))
    masks = [to_np(m).copy() for m in model.get_masks().values()]
    x, y = _data(8)
    with pytest.raises(ValueError, match=r"ks.pruning.magnitude: `structure`=Block\(\(1, 4\)\), "
                                         r"but the model's weights hold \['NM\(2, 4\)'\]"):
        ks.pruning.magnitude(model, 0.5, structure=Block((1, 4)))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    with pytest.raises(ValueError, match=r"RigL: `structure`=NM\(1, 4\)"):
        model.fit(x, y, verbose=0, callbacks=[ks.callbacks.RigL(structure=NM(1, 4))])
    with pytest.raises(ValueError, match=r"KStarts\(mode='union'\).*not N:M"):
        model.fit(x, y, verbose=0, callbacks=[ks.callbacks.KStarts(0.5, k=2, mode="union")])
    for old, new in zip(masks, model.get_masks().values()):
        np.testing.assert_array_equal(old, to_np(new))
    # The same structure is accepted.
    ks.pruning.magnitude(model, 0.5, structure="2:4", distribution="uniform")
    assert _holds(model, NM(2, 4)) == [True] * 3


# -- layers and files ---------------------------------------------------------------


def test_layer_config_and_keras_file_keep_the_structure(tmp_path):
    layer = ks.layers.SparseDense(8, sparsity=0.75, structure=NM(1, 4), seed=0)
    config = layer.get_config()
    assert ks.structures.get(config["structure"]) == NM(1, 4)
    assert ks.layers.SparseDense.from_config(config).structure == NM(1, 4)
    assert "structure" not in layer.base_config()
    inputs = keras.Input((16,))
    model = ks.SparseModel(inputs, layer(inputs))
    assert bool(NM(1, 4).validate(layer.kernel_mask)) and to_np(layer.kernel_mask).mean() == 0.25
    for structure in STRUCTURES:
        sparse = ks.sparsify(_model(), SPARSITY[structure], structure=structure,
                             distribution="uniform")
        sparse.save(tmp_path / "m.keras")
        loaded = keras.saving.load_model(tmp_path / "m.keras")
        assert [mw.structure for mw in loaded.masked_weights] == [structure] * 3
        for a, b in zip(sparse.get_masks().values(), loaded.get_masks().values()):
            np.testing.assert_array_equal(to_np(a), to_np(b))
    model.save(tmp_path / "layer.keras")
    assert keras.saving.load_model(tmp_path / "layer.keras").masked_weights[0].structure == NM(1, 4)
    # Stripping gives plain layers without the argument.
    assert "structure" not in ks.strip(sparse).layers[0].get_config()


def test_budgets_count_whole_blocks():
    model = ks.sparsify(_model(), 0.0, structure=Block((2, 4)))
    counts = ks.distributions.budgets(model, 0.3, "uniform")
    for mw, n in counts.items():
        blocks = mw.size // 8
        assert n == (blocks - int(np.floor(0.3 * blocks + 0.5))) * 8
    nm = ks.sparsify(_model(), 0.0, structure=NM(2, 4))
    # N:M fixes each layer at 1 - n/m whatever the distribution.
    assert [n for n in ks.distributions.budgets(nm, 0.5, "erk").values()] == [
        mw.size // 2 for mw in nm.masked_weights]


# -- every method keeps the structure -------------------------------------------------


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
@pytest.mark.parametrize("method", ["random", "magnitude", "snip", "grasp", "synflow"])
def test_pruning_at_init_keeps_the_structure(structure, method):
    x, y = _data()
    options = {"rounds": 3} if method == "synflow" else {}
    model = ks.sparsify(_model(), 0.0, structure=structure)
    getattr(ks.pruning, method)(model, SPARSITY[structure], distribution="uniform",
                                data=(x, y), **options)
    assert _holds(model, structure) == [True] * 3
    assert ks.sparsity_report(model)[-1]["sparsity"] == pytest.approx(SPARSITY[structure], abs=0.01)
    if structure == Block((2, 4)):  # one global ranking of whole blocks
        getattr(ks.pruning, method)(model, 0.8, scope="global", data=(x, y), **options)
        assert _holds(model, structure) == [True] * 3
        assert ks.sparsity_report(model)[-1]["sparsity"] == pytest.approx(0.8, abs=0.01)


def _fit(model, callbacks, structure, epochs=2):
    x, y = _data()
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9),
                  keras.losses.SparseCategoricalCrossentropy(True))
    check = InvariantCheck(structure)
    before = [to_np(m).copy() for m in model.get_masks().values()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks + [check])
    changed = sum(int((a != to_np(b)).sum()) for a, b in zip(before, model.get_masks().values()))
    return check.seen, changed


DST = {"SET": lambda: ks.callbacks.SET(delta_t=2),
       "RigL": lambda: ks.callbacks.RigL(delta_t=2, alpha=0.5),
       "SNFS": lambda: ks.callbacks.SNFS(delta_t=2),
       "DSTEE": lambda: ks.callbacks.DSTEE(delta_t=2, c=1e-3)}


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
@pytest.mark.parametrize("name", sorted(DST))
def test_drop_and_grow_keeps_the_structure(structure, name):
    model = ks.sparsify(_model(), SPARSITY[structure], structure=structure, distribution="uniform")
    before = [int(to_np(mw.mask).sum()) for mw in model.masked_weights]
    seen, changed = _fit(model, [DST[name]()], structure, epochs=1)
    assert changed > 0 and len(seen) >= 2 and all(all(s) for s in seen)
    after = [int(to_np(mw.mask).sum()) for mw in model.masked_weights]
    assert sum(after) == sum(before)
    if not (name == "SNFS" and isinstance(structure, Block)):  # SNFS moves blocks
        assert after == before


def test_nm_groups_regrow_within_themselves():
    """RigL with N:M: the layer drops by magnitude, each group regrows what it lost."""
    model = ks.sparsify(_model(), 0.5, structure=NM(2, 4), distribution="uniform")
    mw = model.masked_weights[1]
    seen = {}

    class Before(keras.callbacks.Callback):  # listed before RigL: what its update reads
        def on_train_batch_end(self, batch, logs=None):
            seen.update(mask=to_np(mw.mask).copy(), magnitude=np.abs(to_np(mw.read())),
                        grads=np.abs(to_np(mw.dense_gradient())))

    rigl = ks.callbacks.RigL(delta_t=1, end_step=10, drop_schedule="constant", alpha=0.5)
    x, y = _data(8)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0, callbacks=[Before(), rigl])
    old, magnitude, grads = seen["mask"], seen["magnitude"], seen["grads"]
    assert grads.any()
    new = to_np(mw.mask)
    n_drop = int(old.sum()) // 2
    # The dropped: the n_drop smallest active magnitudes of the layer.
    order = np.argsort(np.where(old > 0, magnitude, np.inf).ravel(), kind="stable")
    kept = old.ravel().copy()
    kept[order[:n_drop]] = 0
    kept = kept.reshape(old.shape)
    # Each group (4 consecutive input rows of a column) regrows its losses by |g|.
    expected = kept.copy()
    for col in range(old.shape[1]):
        for start in range(0, old.shape[0], 4):
            group = slice(start, start + 4)
            lost = 2 - int(kept[group, col].sum())
            free = np.where(kept[group, col] == 0, grads[group, col], -np.inf)
            best = np.argsort(-free, kind="stable")[:lost]
            expected[start + best, col] = 1
    np.testing.assert_array_equal(new, expected)
    assert (new != old).any()


@pytest.mark.parametrize("structure", STRUCTURES, ids=repr)
@pytest.mark.parametrize("name", ["GMP", "KStarts", "Dissipating", "DissipatingLayer"])
def test_rules_during_training_keep_the_structure(structure, name):
    s = SPARSITY[structure]
    callback = {
        "GMP": lambda: ks.callbacks.GradualMagnitudePruning(
            ks.schedules.PolynomialDecay(0.0, s, begin_step=0, end_step=6, frequency=2)),
        "KStarts": lambda: ks.callbacks.KStarts(s, k=2, selection_epochs=1),
        "Dissipating": lambda: ks.callbacks.DissipatingGradients(s, max_epochs=2, fill="last"),
        "DissipatingLayer": lambda: ks.callbacks.DissipatingGradients(
            s, max_epochs=2, fill="last", scope="layer", distribution="uniform"),
    }[name]()
    model = ks.sparsify(_model(), 0.0, structure=structure)
    seen, changed = _fit(model, [callback], structure, epochs=3)
    assert changed > 0 and seen and all(all(v) for v in seen)
    assert _holds(model, structure) == [True] * 3
    assert ks.sparsity_report(model)[-1]["sparsity"] == pytest.approx(s, abs=0.01)


def test_set_masks_refuses_a_mask_that_breaks_the_structure():
    model = ks.sparsify(_model(), 0.5, structure=NM(2, 4))
    masks = {p: to_np(m).copy() for p, m in model.get_masks().items()}
    broken = dict(masks)
    path = list(masks)[1]
    broken[path] = masks[path].copy()
    broken[path][:4, 0] = [1, 1, 1, 0]
    with pytest.raises(ValueError, match=r"does not hold its structure NM\(2, 4\)"):
        model.set_masks(broken)
    for p, m in model.get_masks().items():
        np.testing.assert_array_equal(masks[p], to_np(m))
    model.set_masks({path: np.ones_like(masks[path])})  # the dense start is allowed


def test_redistribution_under_a_structure():
    x, y = _data(8)
    model = ks.sparsify(_model(), 0.5, structure=NM(2, 4))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    with pytest.warns(UserWarning, match="N:M weights, whose counts are fixed; the "
                                         "redistribution is skipped"):
        model.fit(x, y, verbose=0, callbacks=[ks.callbacks.SNFS(end_step=10)])
    assert _holds(model, NM(2, 4)) == [True] * 3
    mixed = ks.sparsify(_model(), 0.5, structure=Block((2, 4)), dense_layers=["fc2"])
    mixed.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    with pytest.raises(ValueError, match=r"moves whole blocks between layers.*Block\(\(2, 4\)\)"
                                         r".*Unstructured\(\)"):
        mixed.fit(x, y, verbose=0, callbacks=[ks.callbacks.SNFS(end_step=10)])


@pytest.mark.parametrize("make", [lambda: ks.callbacks.KStarts(0.3, k=2),
                                  lambda: ks.callbacks.DissipatingGradients(0.3, max_epochs=1),
                                  lambda: ks.callbacks.GradualMagnitudePruning(
                                      ks.schedules.ConstantSparsity(0.3, 0))])
def test_rules_refuse_an_unreachable_target_before_training(make):
    model = ks.sparsify(_model(), 0.0, structure=NM(2, 4))
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    before = _weights(model)
    x, y = _data(8)
    with pytest.raises(ValueError, match=r"`sparsity`=0.3 is not reachable with NM\(2, 4\) "
                                         r"for weight net/conv/kernel of shape \(3, 3, 4, 8\)"):
        model.fit(x, y, verbose=0, callbacks=[make()])
    for old, new in zip(before, _weights(model)):
        np.testing.assert_array_equal(old, new)
