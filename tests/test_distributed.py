"""MirroredStrategy over two logical CPUs, in its own process (replicas compute identical masks)."""

import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def test_mirrored_training_matches_single_device(run_python):
    script = os.path.join(HERE, "distributed_check.py")
    out = run_python(f"import runpy; runpy.run_path({script!r}, run_name='__main__')")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["replicas"] == 2
    assert summary["masks_identical_on_replicas"]
    assert summary["weights_identical_on_replicas"]
    assert summary["masks_equal_single"]
    assert summary["inactive_exactly_zero"]
    assert summary["max_weight_diff"] < 1e-5
    # The all-reduced dense gradient is the global-batch mean, as on one device.
    assert summary["dense_gradient_scale"] > 1e-3
    assert summary["max_dense_gradient_diff"] < 1e-5 * max(1.0, summary["dense_gradient_scale"])
