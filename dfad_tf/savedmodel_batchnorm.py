"""BatchNorm layers read from a SavedModel's graph, so that the BatchNorm prior serves SavedModel teachers too.

A SavedModel keeps no layers, only a graph, but a BatchNormalization layer in
inference leaves one of two recognisable traces in it: a `FusedBatchNorm` op
(tf.keras and TF1 models) or the arithmetic of `tf.nn.batch_normalization`
(Keras 3), `x * inv + (beta - mean * inv)` with `inv = rsqrt(variance +
epsilon) * gamma`. `read_batchnorms` freezes a signature (its variables become
constants), finds both traces, and returns each layer's running statistics and
a function of the images that returns the signature's output and the input of
every BatchNorm it found. It only reads a signature that `model_files` has
loaded, so after `savedmodel_check` has passed the file.

Example:
>>> statistics, probe = read_batchnorms(tf.saved_model.load(path).signatures["serving_default"])
>>> outputs, *batchnorm_inputs = probe(images)
>>> statistics[0].moving_mean.shape
(32,)
"""

import collections

import numpy as np
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants  # freezing a ConcreteFunction has no public API

BatchNormStatistics = collections.namedtuple("BatchNormStatistics",
                                             ["name", "moving_mean", "moving_variance", "epsilon"])
BatchNormStatistics.__doc__ = """One BatchNorm layer found in a graph, with what the prior reads of a Keras layer.

Attributes:
    name: where in the graph the layer is (its name scope, or its op's name).
    moving_mean, moving_variance: float32 arrays, one value per channel.
    epsilon: the variance epsilon, a float.
"""

_FUSED = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")


def read_batchnorms(signature):
    """The BatchNorm layers of a one-input, one-output signature, and a function returning their inputs.

    Args:
        signature: a `ConcreteFunction` of a loaded SavedModel, or a
            `tf.function` of it with an input signature (keep the loaded object
            alive while this runs: the function reads its variables).

    Returns:
        `(statistics, probe)`: a list of `BatchNormStatistics` in graph order,
        and `probe(images)` returning `[signature output, *each layer's input]`
        (differentiable with respect to `images`). `([], None)` when the graph
        has no BatchNorm layer in a form this module reads, or cannot be frozen.
    """
    try:
        if not isinstance(signature, tf.types.experimental.ConcreteFunction):  # a tf.function with a signature
            signature = signature.get_concrete_function()
        frozen = convert_to_constants.convert_variables_to_constants_v2(signature)
    except Exception:  # noqa: BLE001 - a graph the freezer does not handle (control flow, say): no prior
        return [], None
    if len(frozen.inputs) != 1 or len(frozen.outputs) != 1:
        return [], None
    graph_def = frozen.graph.as_graph_def()
    found = _find_batchnorms(graph_def)
    if not found:
        return [], None
    inputs, statistics = zip(*found)

    def import_graph():
        tf.compat.v1.import_graph_def(graph_def, name="")

    imported = tf.compat.v1.wrap_function(import_graph, [])
    element = imported.graph.as_graph_element
    pruned = imported.prune(element(frozen.inputs[0].name),
                            [element(frozen.outputs[0].name), *(element(name) for name in inputs)])
    dtype = frozen.inputs[0].dtype

    def probe(images):
        return pruned(tf.cast(images, dtype))

    return list(statistics), probe


def _find_batchnorms(graph_def):
    """`[(input tensor name, BatchNormStatistics)]` for every BatchNorm trace in `graph_def`, in graph order."""
    nodes = {node.name: node for node in graph_def.node}
    consumers = collections.defaultdict(list)
    for node in graph_def.node:
        for name in node.input:
            if not name.startswith("^"):
                consumers[_node_name(name)].append(node)

    def constant(name):
        node = nodes[_node_name(name)]
        while node.op == "Identity":
            node = nodes[_node_name(node.input[0])]
        return tf.make_ndarray(node.attr["value"].tensor).astype("float32") if node.op == "Const" else None

    def statistics(name, mean, variance, epsilon):
        if mean is None or variance is None or mean.ndim != 1 or mean.shape != variance.shape:
            return None
        return BatchNormStatistics(name, mean, variance, float(epsilon))

    found = []
    for node in graph_def.node:
        if node.op in _FUSED and not node.attr["is_training"].b and node.attr["data_format"].s == b"NHWC":
            batchnorm = statistics(node.name, constant(node.input[3]), constant(node.input[4]),
                                   node.attr["epsilon"].f)
            if batchnorm:
                found.append((_tensor_name(node.input[0]), batchnorm))
        elif node.op == "Rsqrt":
            found.extend(_unfused(node, nodes, consumers, constant, statistics))
    return found


def _unfused(rsqrt, nodes, consumers, constant, statistics):
    """`[(input, statistics)]` when `rsqrt` is `tf.nn.batch_normalization`'s `rsqrt(variance + epsilon)`, else []."""
    add = nodes[_node_name(rsqrt.input[0])]
    if add.op not in ("Add", "AddV2"):
        return []
    terms = [constant(name) for name in add.input]
    if any(term is None for term in terms):
        return []
    epsilon, variance = sorted(terms, key=np.ndim)
    if epsilon.ndim != 0:
        return []
    inverse = rsqrt  # rsqrt(variance + epsilon), times gamma when the layer scales
    (scaled,) = consumers[rsqrt.name] if len(consumers[rsqrt.name]) == 1 else (None,)
    if scaled is not None and scaled.op == "Mul":
        inverse = scaled
    layer_inputs, means = [], []
    for product in consumers[inverse.name]:
        if product.op == "Mul":
            (other,) = [name for name in product.input if _node_name(name) != inverse.name]
            value = constant(other)
            if value is None and nodes[_node_name(other)].op == "Neg":  # `-mean * inv`: a layer without offset
                value = constant(nodes[_node_name(other)].input[0])
            if value is None:
                layer_inputs.append(_tensor_name(other))
            else:
                means.append(value)
    if len(layer_inputs) != 1 or len(means) != 1:  # not the two products of a BatchNorm
        return []
    batchnorm = statistics(rsqrt.name.rpartition("/")[0] or rsqrt.name, means[0], variance, epsilon)
    return [(layer_inputs[0], batchnorm)] if batchnorm else []


def _node_name(tensor_name):
    return tensor_name.lstrip("^").split(":")[0]


def _tensor_name(name):
    return name if ":" in name else f"{name}:0"
