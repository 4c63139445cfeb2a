"""Probes a SavedModel the way TF Serving sees it, in a process that imports only TensorFlow.

    python serving_probe.py JOBS_JSON OUT_JSON

JOBS_JSON is a list of {"model_dir": SavedModel folder, "requests": [{"signature": name, "inputs":
{input name: nested list of ints}}, ...]}. OUT_JSON receives one result per job, as JSON (NaN and
Infinity allowed), holding:

- "signatures": name -> {"inputs"/"outputs": tensor name -> [dtype name, shape]} from the SignatureDefs;
- "responses": per request, the TF Serving REST body for the columnar ("inputs") form: {"outputs": {...}};
- "ops": every op type in saved_model.pb (graphs and function library, minus calls of library
  functions) and "unregistered_ops": those this plain TensorFlow does not know;
- "variables": [name, shape] of every checkpointed variable, and "variables_bytes" (size of the data);

and, once, "foreign_modules": modules of the project, TFRS or tf_keras imported by loading and running them.

Not a test module: the tests run it with `subprocess` so that nothing but TensorFlow is loaded.
"""

import json
import math
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry

FOREIGN = ("mrdib_tf", "data_pipeline", "trainers", "tensorflow_recommenders", "tf_keras")


def rest_number(value: float) -> float | str:
    """A float32 as TF Serving's REST writer prints it: 6 significant digits unless that does not round-trip."""
    if math.isnan(value) or math.isinf(value):
        return float(value)
    text = f"{value:g}"
    if np.float32(text) != np.float32(value):
        text = f"{value:.9g}"
    return float(text)


def rest_value(array: np.ndarray):
    if array.dtype.kind in "OS":  # strings: an object array, or bytes for a scalar
        return [v.decode() for v in array.reshape(-1)] if array.ndim else array.item().decode()
    if array.dtype.kind == "f":
        if array.dtype == np.float32:
            return np.vectorize(rest_number, otypes=[object])(array).tolist() if array.size else array.tolist()
        return array.tolist()
    return array.tolist()


def tensor_specs(infos) -> dict:
    return {
        name: [tf.dtypes.as_dtype(info.dtype).name, [d.size for d in info.tensor_shape.dim]]
        for name, info in sorted(infos.items())
    }


def probe(model_dir: str, requests: list[dict]) -> dict:
    model = tf.saved_model.load(model_dir)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(model_dir) / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0]
    signatures = {
        name: {"inputs": tensor_specs(sig.inputs), "outputs": tensor_specs(sig.outputs)}
        for name, sig in graph.signature_def.items()
        if not name.startswith("__")  # __saved_model_init_op: TensorFlow's own, not served
    }
    functions = {f.signature.name for mg in proto.meta_graphs for f in mg.graph_def.library.function}
    ops = set()
    for mg in proto.meta_graphs:
        ops |= {node.op for node in mg.graph_def.node}
        for function in mg.graph_def.library.function:
            ops |= {node.op for node in function.node_def}
    ops -= functions

    responses = []
    for request in requests:
        function = model.signatures[request["signature"]]
        inputs = {
            name: tf.constant(np.asarray(value, dtype=np.int64).reshape(np.shape(value)), tf.int64)
            for name, value in request["inputs"].items()
        }
        outputs = function(**inputs)
        responses.append({"outputs": {k: rest_value(np.asarray(v.numpy())) for k, v in sorted(outputs.items())}})

    variables = tf.train.list_variables(str(Path(model_dir) / "variables" / "variables"))
    return {
        "signatures": signatures,
        "responses": responses,
        "ops": sorted(ops),
        "unregistered_ops": sorted(op for op in ops if op_def_registry.get(op) is None),
        "variables": [[name, shape] for name, shape in variables if name != "_CHECKPOINTABLE_OBJECT_GRAPH"],
        "variables_bytes": sum(p.stat().st_size for p in (Path(model_dir) / "variables").glob("*.data-*")),
    }


def main(jobs_path: str, out_path: str) -> None:
    results = [probe(job["model_dir"], job["requests"]) for job in json.loads(Path(jobs_path).read_text())]
    foreign = sorted(m for m in sys.modules if m.split(".")[0] in FOREIGN)
    Path(out_path).write_text(json.dumps({"results": results, "foreign_modules": foreign}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
