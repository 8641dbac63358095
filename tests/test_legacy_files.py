"""Files saved before the layout change (keras_sparse/models/, `schedule=`)
still load: same masks, weights, rule state and outputs; same settings.

The fixture in tests/data/ was written by tests/data/make_legacy_fixture.py
with the code of commit 7e38d38.
"""

import json
import os
import warnings

import keras
import numpy as np

import keras_sparse as ks

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
to_np = keras.ops.convert_to_numpy


def test_old_keras_file_loads_with_identical_masks_and_weights():
    model = keras.saving.load_model(os.path.join(DATA, "legacy_rigl_model.keras"))
    saved = np.load(os.path.join(DATA, "legacy_rigl_model.npz"))
    assert isinstance(model, ks.SparseModel)
    # Paths as saved lose the model-name prefix the in-memory model had
    # (Keras loading does the same with any model).
    values = {v.path.replace("/", "|"): to_np(v) for v in model.weights}
    expected = {k.split("|", 1)[1]: saved[k] for k in saved.files if "|" in k}
    assert sorted(values) == sorted(expected)  # masks and RigL's rule state too
    for key, value in expected.items():
        np.testing.assert_array_equal(values[key], value, err_msg=key)
    assert [mw.path for mw in model.masked_weights] == [
        "conv/kernel", "hidden/kernel", "logits/kernel"]
    for mw in model.masked_weights:
        mask = to_np(mw.mask)
        assert 0 < mask.mean() < 1
        assert np.all(to_np(mw.weight)[mask == 0] == 0), mw.path
    np.testing.assert_allclose(to_np(model(saved["x"])), saved["y_pred"], rtol=1e-6, atol=1e-6)
    # It keeps training with the rule that wrote it.
    model.fit(saved["x"], np.zeros(len(saved["x"]), "int32"), verbose=0,
              callbacks=[ks.callbacks.RigL(delta_t=1, end_step=5)])


def test_old_callback_configs_load_with_the_same_settings():
    with open(os.path.join(DATA, "legacy_callbacks.json")) as f:
        configs = json.load(f)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # loading old files does not nag
        loaded = {k: keras.saving.deserialize_keras_object(c) for k, c in configs.items()}
    kinds = {"rigl": ks.callbacks.RigL, "dynamic": ks.callbacks.DynamicSparsity,
             "set": ks.callbacks.SET, "snfs": ks.callbacks.SNFS, "dstee": ks.callbacks.DSTEE,
             "gradual": ks.callbacks.GradualMagnitudePruning, "static": ks.callbacks.Static,
             "kstarts": ks.callbacks.KStarts, "dissipating": ks.callbacks.DissipatingGradients}
    for key, kind in kinds.items():
        assert type(loaded[key]) is kind, key
        old, new = configs[key]["config"], loaded[key].get_config()
        if "schedule" in old and key not in ("gradual",):
            # The drop-fraction schedule is now written as `drop_schedule`.
            old = dict(old)
            old["drop_schedule"] = old.pop("schedule")
        # Options added since keep their defaults; every old setting is kept.
        assert {k: new[k] for k in old} == old, key
        assert set(new) - set(old) <= {"t", "c_scale", "max_epochs", "fill", "structure"}, key
    assert isinstance(loaded["dynamic"].drop_schedule, ks.callbacks.drop_schedules.LinearDecay)
    assert isinstance(loaded["set"].drop_schedule, ks.callbacks.drop_schedules.CosineDecay)
    assert loaded["snfs"].grow.momentum == 0.8
