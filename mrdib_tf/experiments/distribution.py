"""Training across devices and machines: the `tf.distribute` strategy a run's `--strategy` names.

- `default`: one device (TensorFlow's default strategy).
- `mirrored`: every local GPU, or, on a machine without one, `--cpu-devices` logical CPU devices (for
  testing the distributed path on a laptop or in CI).
- `multi-worker`: synchronous training across the machines (or processes) that `TF_CONFIG` lists, each
  with its local GPUs or its CPU.

Every strategy trains on MMRec's global batch (`--batch-size`, 2048): each replica takes its share of
every batch, so the replicas together take exactly the batches one device would (the data pipeline's
DATA sharding, below), and `Recommender.compute_loss` scales each replica's loss so that their summed
gradients are those of the mean. What one device and R replicas compute alike: every term that is a
mean over the batch's rows (BPR, MRdIB's KL and unique terms, MGCN's regularizer, MMGCN's and DualGNN's
penalties) and every term over the whole catalogue. What they compute per replica, as any data-parallel
trainer does: the in-batch contrastive terms (MGCN's and SOIL's InfoNCE, MRdIB's mutual-information
estimate, whose negatives are the replica's rows) and MMRec's un-squared norm regularizer (VBPR,
LightGCN), which is not a sum over rows; and MRdIB's noise on row-wise backbones, drawn per replica.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi-worker")


@functools.cache
def make_strategy(name: str, cpu_devices: int = 2) -> tf.distribute.Strategy:
    """The strategy named `name`, made once per process (a search trains many runs in one). Call it
    before TensorFlow runs anything: logical CPU devices and a worker's collective server can only be set
    up before the runtime starts.

    Raises:
        ValueError: an unknown name; `multi-worker` without `TF_CONFIG`; logical CPU devices asked for
            after TensorFlow has started.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_physical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        return tf.distribute.MirroredStrategy([device.name for device in _split_cpu(cpu_devices)])
    if name == "multi-worker":
        if "TF_CONFIG" not in os.environ:
            raise ValueError("`strategy=multi-worker` needs the TF_CONFIG environment variable (the cluster's "
                             "workers and this process's task; see the README's two-worker launch).")
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"`strategy` must be one of {', '.join(STRATEGIES)}; got {name!r}.")


def _split_cpu(count: int) -> list[tf.config.LogicalDevice]:
    """`count` logical devices over the machine's CPU."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError as error:
        raise ValueError(f"`strategy=mirrored` over {count} CPU devices must be set up before TensorFlow "
                         f"starts: {error}") from None
    return tf.config.list_logical_devices("CPU")


def compile_limits(strategy: tf.distribute.Strategy, jit_compile: bool,
                   steps_per_execution: int) -> tuple[bool, int]:
    """The (jit_compile, steps_per_execution) a run can use under `strategy`.

    Several replicas run one step per call: Keras' loop of several steps per call fails under both
    mirrored strategies (keras-team/keras#19246, "You must feed a value for placeholder tensor"). XLA is
    off for replicas on CPUs: XLA's CPU compiler has no collective operations (the gradients' all-reduce
    across workers) and cannot place one computation per logical CPU device. On GPUs it stays on.
    """
    if strategy.num_replicas_in_sync == 1:
        return jit_compile, steps_per_execution
    on_gpus = all("GPU" in device.upper() for device in strategy.extended.worker_devices)
    return jit_compile and on_gpus, 1


def shard_by_batch(batches: tf.data.Dataset) -> tf.data.Dataset:
    """`batches` split across workers by batch rows, not by file: every worker reads the training records
    and takes its share of every global batch. File sharding would give each worker its own files to
    shuffle, so the global batches would no longer be the protocol's full-epoch shuffle."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return batches.with_options(options)


def worker_task() -> tuple[str, int] | None:
    """This process's (task type, index) in `TF_CONFIG`, or None outside a cluster."""
    task = json.loads(os.environ.get("TF_CONFIG", "{}")).get("task")
    return (task["type"], int(task["index"])) if task else None


def is_chief() -> bool:
    """Whether this process writes the run folder: outside a cluster, the chief, or worker 0 without one."""
    task = worker_task()
    if task is None:
        return True
    cluster = json.loads(os.environ["TF_CONFIG"]).get("cluster", {})
    return task[0] == "chief" or (task == ("worker", 0) and "chief" not in cluster)


def worker_run_dir(run_dir: Path) -> Path:
    """Where a non-chief worker writes its checkpoints, logs and per-epoch state: beside the chief's
    folder, so that one holds one run. A resumed worker reads the chief's state, not this one, so all
    workers resume from the same epoch however the kill fell between their saves."""
    task_type, index = worker_task()
    return run_dir.with_name(f"{run_dir.name}.{task_type}-{index}")
