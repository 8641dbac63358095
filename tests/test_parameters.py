"""Active and total parameters, and no NumPy-2 deprecation warnings."""

import warnings

import keras
import numpy as np
import pytest

import keras_sparse as ks

to_np = keras.ops.convert_to_numpy


def _dense():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8,))
    x = keras.layers.Dense(16, name="fc1")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)  # non-trainable statistics
    return keras.Model(inputs, keras.layers.Dense(3, name="fc2")(x), name="net")


def _data(n=32):
    rng = np.random.default_rng(0)
    return rng.normal(size=(n, 8)).astype("float32"), rng.integers(0, 3, n)


def _trained_rigl(dense):
    model = ks.sparsify(dense, 0.75, seed=0)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    model.fit(x, y, batch_size=8, epochs=1, verbose=0,
              callbacks=[ks.callbacks.RigL(delta_t=2, end_step=4)])
    return model


def test_plain_model_counts_match_keras():
    dense = _dense()
    counts = ks.count_params(dense)
    assert counts == {"active": dense.count_params(), "total": dense.count_params(),
                      "prunable_active": 8 * 16 + 16 * 3, "prunable_total": 8 * 16 + 16 * 3,
                      "masks_and_state": 0}


def test_sparse_model_separates_active_total_and_masks():
    dense = _dense()
    model = _trained_rigl(dense)
    counts = ks.count_params(model)
    inactive = sum(int((to_np(mw.mask) == 0).sum()) for mw in model.masked_weights)
    assert inactive > 0
    assert counts["total"] == dense.count_params()  # the dense model's count
    assert counts["active"] == counts["total"] - inactive
    assert counts["prunable_total"] == 8 * 16 + 16 * 3
    assert counts["prunable_active"] == counts["prunable_total"] - inactive
    # Keras counts masks and rule state (RigL's buffers) as parameters.
    assert model.count_params() == counts["total"] + counts["masks_and_state"]
    assert counts["masks_and_state"] >= 2 * counts["prunable_total"]


def test_summary_adds_the_line_after_keras_summary():
    model = _trained_rigl(_dense())
    lines = []
    ks.summary(model, print_fn=lambda line, **_: lines.append(line))
    counts = ks.count_params(model)
    assert "Total params" in "\n".join(lines[:-1])  # Keras' own summary first
    sparsity = 1 - counts["prunable_active"] / counts["prunable_total"]
    assert lines[-1] == (
        f"Prunable weights: active {counts['prunable_active']:,} / total 176 "
        f"(sparsity {sparsity:.4g}); all parameters: active {counts['active']:,} / "
        f"total {counts['total']:,}; mask and rule-state variables: "
        f"{counts['masks_and_state']:,} (not trainable, not parameters; counted in "
        "Keras' totals above)."
    )


def test_count_params_refuses_non_models():
    with pytest.raises(TypeError, match="`model` must be a keras.Model"):
        ks.count_params([1, 2])


def test_fits_and_reports_raise_no_numpy_deprecation_warning():
    # NumPy 2 warns when np.array() is called on a Keras variable
    # (keras.ops.convert_to_numpy does that); the library reads variables
    # through keras_compat.to_numpy instead.
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        model = _trained_rigl(_dense())
        gradual = ks.sparsify(_dense(), 0.0)
        gradual.compile("sgd", "mse")
        x, _ = _data()
        gradual.fit(x, np.zeros((32, 3), "float32"), batch_size=8, verbose=0,
                    callbacks=[ks.callbacks.GradualMagnitudePruning(
                        ks.schedules.PolynomialDecay(0.0, 0.5, 0, 3, frequency=1))])
        model.get_masks()
        ks.sparsity_report(model)
        ks.count_params(model)
        ks.strip(model)
    copy_warnings = [str(r.message) for r in records
                     if issubclass(r.category, DeprecationWarning) and "__array__" in str(r.message)]
    assert not copy_warnings, copy_warnings[:1]
