"""Importing keras_sparse changes no global state: environment, logging, Keras settings (own process)."""

import textwrap

CHECK = textwrap.dedent("""
    import json, logging, os, pkgutil, sys, importlib

    def snapshot():
        import absl.logging
        import keras
        import tensorflow as tf
        return {
            "env": dict(os.environ),
            "policy": keras.config.dtype_policy().name,
            "floatx": keras.config.floatx(),
            "epsilon": keras.config.epsilon(),
            "image_data_format": keras.config.image_data_format(),
            "backend": keras.config.backend(),
            "tf_logger": tf.get_logger().level,
            "absl_verbosity": absl.logging.get_verbosity(),
            "root_logger": (logging.getLogger().level, len(logging.getLogger().handlers)),
            "run_eagerly": tf.config.functions_run_eagerly(),
            "legacy": os.environ.get("TF_USE_LEGACY_KERAS"),
        }

    # Baseline after TF and Keras themselves: importing TensorFlow sets
    # TF2_BEHAVIOR, TPU_ML_PLATFORM, ... in any process that uses it.
    before = snapshot()
    import keras_sparse
    modules = [m.name for m in pkgutil.walk_packages(keras_sparse.__path__, "keras_sparse.")]
    for name in modules:
        importlib.import_module(name)
    after = snapshot()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    if "env" in changed:
        old, new = changed["env"]
        changed["env"] = {k: (old.get(k), new.get(k)) for k in set(old) | set(new)
                          if old.get(k) != new.get(k)}
    print(json.dumps({
        "changed": changed,
        "modules": len(modules),
        "forbidden": [m for m in ("tensorflow_model_optimization", "tf_keras") if m in sys.modules],
    }))
""")


def test_import_changes_no_global_state(run_python):
    import json

    # A fresh process with nothing set that we could mask.
    result = json.loads(run_python(CHECK, env={"TF_CPP_MIN_LOG_LEVEL": "3"}).splitlines()[-1])
    assert result["forbidden"] == []
    assert result["changed"] == {}
    assert result["modules"] >= 10  # really walked the subpackages
