"""Where and how a recipe trains: tf.distribute strategy, precision, XLA, TFDS data.

The options here are shared by `python -m recipes run` and any other command
that trains recipes (`add_run_options` adds them to an argparse parser), and
are the keyword arguments `strategy`, `mixed_precision`, `jit_compile`,
`data_dir` and `download` of `recipes.runner.run`.

```python
from recipes import launch
strategy = launch.make_strategy("mirrored")  # every local GPU, else the CPU
with launch.precision(mixed=True):
    ...  # layers built here compute in float16, keep float32 variables
```

TensorFlow and tensorflow-datasets are imported inside the functions, so
that building a command line stays cheap.
"""

import argparse
import contextlib
import glob
import json
import os

STRATEGIES = ("none", "mirrored", "multiworker", "tpu")


def add_run_options(parser):
    """Adds the options of how a recipe trains to an argparse (sub)parser.

    Args:
        parser: an `argparse.ArgumentParser` (e.g. a subcommand's).

    Returns:
        The parser. `run_options(args)` turns the parsed values into the
        keyword arguments of `recipes.runner.run`.
    """
    parser.add_argument(
        "--strategy", choices=STRATEGIES, default="none",
        help="tf.distribute strategy (default none). The recipe's batch size is the "
             "global batch, split over the replicas; multiworker reads TF_CONFIG and "
             "shards the data per worker; tpu needs TPU_NAME or a TPU VM")
    parser.add_argument("--mixed-precision", action="store_true",
                        help="train with the keras mixed_float16 dtype policy")
    parser.add_argument("--jit-compile", action=argparse.BooleanOptionalAction, default=None,
                        help="compile the train step with XLA (compile(jit_compile=True)); "
                             "--no-jit-compile turns it off; default: Keras' 'auto'")
    parser.add_argument("--data-dir",
                        help="TFDS data directory (default: $TFDS_DATA_DIR, else "
                             "~/tensorflow_datasets)")
    parser.add_argument("--download", action="store_true",
                        help="let tensorflow-datasets download and prepare a dataset "
                             "that is missing from the data directory")
    return parser


def run_options(args):
    """The `recipes.runner.run` keyword arguments from parsed `add_run_options` flags."""
    return {"strategy": args.strategy, "mixed_precision": args.mixed_precision,
            "jit_compile": args.jit_compile, "data_dir": args.data_dir,
            "download": args.download}


def check_strategy(strategy):
    """Raises ValueError unless `strategy` is one of `STRATEGIES`."""
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}; got strategy={strategy!r}.")


def check_available(strategy):
    """Raises ValueError unless this machine can provide `strategy`.

    Looks only at the environment (nothing is contacted or started):
    "multiworker" needs `TF_CONFIG` describing the cluster (any number of
    workers: see `make_strategy`); "tpu" needs `TPU_NAME`/`COLAB_TPU_ADDR`
    or a local TPU (`/dev/accel*`, a TPU VM). "none" and "mirrored" are
    always available (mirrored on one device is one replica).

    interpretation: a strategy the machine cannot provide is an error rather
    than a silent fallback to fewer devices.

    Args:
        strategy: one of `STRATEGIES`.

    Raises:
        ValueError: an unknown name, or a strategy this machine cannot provide.
    """
    check_strategy(strategy)
    if strategy == "multiworker":
        _check_tf_config()
    elif strategy == "tpu":
        _tpu_name()


def make_strategy(strategy):
    """The `tf.distribute.Strategy` called `strategy`, or None for "none".

    - "mirrored": `MirroredStrategy` over every local GPU, else the CPU;
    - "multiworker": `MultiWorkerMirroredStrategy`; needs the `TF_CONFIG`
      environment variable describing the cluster (`{"cluster": {"worker":
      [...]}, "task": {"type": "worker", "index": i}}`), the same cluster on
      every worker with its own `index`. Each worker reads its share of the
      data (`shard_per_worker`). Keras 3's own `fit` cannot train across
      several workers (keras-team/keras#20585); `ks.SparseModel` carries a
      workaround, so recipes train every arm as one (`spans_workers`);
    - "tpu": `TPUStrategy` on the TPU named by `TPU_NAME` (or
      `COLAB_TPU_ADDR`), or the local TPU of a TPU VM.

    Args:
        strategy: one of `STRATEGIES`.

    Returns:
        A `tf.distribute.Strategy`, or None for "none".

    Raises:
        ValueError: see `check_available`; also a TPU that cannot be reached.

    Example:
        >>> make_strategy("none") is None
        True
    """
    check_available(strategy)
    if strategy == "none":
        return None
    import tensorflow as tf

    if strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if strategy == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    name = _tpu_name()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, tf.errors.OpError) as error:
        raise ValueError(f"strategy='tpu': cannot connect to TPU {name!r}: {error}") from None
    return tf.distribute.TPUStrategy(resolver)


def _check_tf_config():
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        raise ValueError(
            "strategy='multiworker' needs the TF_CONFIG environment variable on every "
            "worker, e.g. TF_CONFIG='{\"cluster\": {\"worker\": [\"host1:12345\", "
            "\"host2:12345\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}'; it is not "
            "set. On one machine use strategy='mirrored'.")
    try:
        config = json.loads(raw)
        workers = config["cluster"]["worker"]
        config["task"]["index"]
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"strategy='multiworker': TF_CONFIG={raw!r} is not a cluster "
                         f"description with cluster.worker and task.index ({error}).") from None
    if not workers:
        raise ValueError(f"strategy='multiworker': TF_CONFIG={raw!r} lists no workers.")


def spans_workers(strategy):
    """Whether `strategy` trains across several workers (processes/machines).

    Keras 3's own `fit` fails there (keras-team/keras#20585); `ks.SparseModel`
    works around it, so a recipe trains even its dense arms as a
    `ks.SparseModel` then (without sparse layers it trains exactly the dense
    model).

    Args:
        strategy: a `tf.distribute.Strategy` or None.
    """
    if strategy is None:
        return False
    from keras_sparse.utils import keras_compat

    return keras_compat.in_multi_worker_mode(strategy)


def _tpu_name():
    name = os.environ.get("TPU_NAME") or os.environ.get("COLAB_TPU_ADDR")
    if not name and glob.glob("/dev/accel*"):  # a TPU VM: the TPU is local
        name = "local"
    if not name:
        raise ValueError(
            "strategy='tpu' but this machine has no TPU: no local TPU device (/dev/accel*) "
            "and neither TPU_NAME nor COLAB_TPU_ADDR is set. Use strategy='mirrored' for "
            "GPUs or the CPU.")
    return name


def scope(strategy):
    """`strategy.scope()`, or a no-op context for None."""
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def shard_per_worker(dataset, strategy):
    """`dataset` set up to be sharded per worker under a multi-worker strategy.

    Keras' `fit` hands a dataset to `strategy.experimental_distribute_dataset`,
    which splits each (global) batch over the replicas and, with several
    workers, auto-shards the input. The recipe pipelines read few files and
    take the first N examples for reduced runs, so file-based sharding would
    give workers unequal data: shard by data instead (every worker reads the
    pipeline and keeps its share of the batches). With one worker the policy
    has no effect.
    """
    if strategy is None:
        return dataset
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = (
        tf.data.experimental.AutoShardPolicy.DATA)
    return dataset.with_options(options)


@contextlib.contextmanager
def precision(mixed):
    """Sets the Keras `mixed_float16` dtype policy inside, restores the previous after.

    Args:
        mixed: False leaves the policy as it is.
    """
    if not mixed:
        yield
        return
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def data_dir_of(data_dir=None):
    """The TFDS data directory in use: `data_dir`, else `$TFDS_DATA_DIR`, else tfds' default."""
    if data_dir:
        return str(data_dir)
    if os.environ.get("TFDS_DATA_DIR"):
        return os.environ["TFDS_DATA_DIR"]
    import tensorflow_datasets as tfds

    return tfds.core.constants.DATA_DIR


def is_prepared(name, data_dir=None):
    """Whether TFDS dataset `name` is prepared in `data_dir` (nothing is downloaded)."""
    import tensorflow_datasets as tfds

    return tfds.builder(name, data_dir=data_dir_of(data_dir)).is_prepared()


def prepare_command(name, data_dir=None):
    """The shell command that prepares dataset `name` in `data_dir`."""
    return f"tfds build {name} --data_dir {data_dir_of(data_dir)}"


def ensure_prepared(name, data_dir=None, download=False):
    """Makes sure TFDS dataset `name` is prepared in `data_dir`.

    Args:
        name: a TFDS dataset name (e.g. "cifar10").
        data_dir: TFDS data directory; default `$TFDS_DATA_DIR`, else
            `~/tensorflow_datasets`.
        download: download and prepare the dataset if it is missing.

    Raises:
        FileNotFoundError: the dataset is missing and `download` is False; the
            message says how to prepare it (`tfds build ...` or `--download`).
    """
    import tensorflow_datasets as tfds

    root = data_dir_of(data_dir)
    builder = tfds.builder(name, data_dir=root)
    if builder.is_prepared():
        return
    manual = bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
    if download:
        builder.download_and_prepare()
        return
    hint = (f" {name} cannot be downloaded automatically: place the archives from its "
            f"publisher in {root}/downloads/manual/ first (see "
            f"https://www.tensorflow.org/datasets/catalog/{name})." if manual else "")
    raise FileNotFoundError(
        f"Dataset {name!r} (version {builder.version}) is not prepared in {root}. "
        f"Prepare it with `{prepare_command(name, root)}`, or rerun with --download "
        f"(download=True in recipes.runner.run) to let tensorflow-datasets download "
        f"and prepare it, or point --data-dir / TFDS_DATA_DIR at a directory holding "
        f"{name}/{builder.version}/.{hint}")
