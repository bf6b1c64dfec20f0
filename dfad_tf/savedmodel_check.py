"""What a SavedModel would run, read from its `saved_model.pb` before anything of it is loaded.

A SavedModel is a program: its graph can read and write files, list
directories or call back into Python as easily as it can multiply matrices.
`unsafe_operations` lists the operation types outside `SAFE_OPERATIONS`
(tensor computation) that loading the model and calling one endpoint could run:
the endpoint's functions (as a root attribute and as a signature, since
`keras.layers.TFSMLayer` takes the first it finds), everything they call through
function-valued attributes (`StatefulPartitionedCall`, `If`, `While`, ...), the
custom gradients of those operations, and the functions the loader itself runs
(resource creators and initializers, restore functions of saveable objects).
The checkpoint save/restore functions of a Keras export are none of these, so
they are not listed.
"""

import os

from tensorflow.core.protobuf import saved_model_pb2

SAFE_OPERATIONS = frozenset({
    # graph plumbing, function calls and control flow
    "Const", "Identity", "IdentityN", "NoOp", "StopGradient", "PreventGradient", "Snapshot", "EnsureShape",
    "Assert", "CheckNumerics", "CheckNumericsV2", "PartitionedCall", "StatefulPartitionedCall",
    "If", "StatelessIf", "While", "StatelessWhile", "Case", "StatelessCase",
    "Switch", "Merge", "Enter", "Exit", "NextIteration", "LoopCond",
    "TensorListReserve", "TensorListFromTensor", "TensorListGetItem", "TensorListSetItem", "TensorListStack",
    "TensorListLength", "TensorListElementShape", "TensorListPushBack", "TensorListPopBack", "EmptyTensorList",
    "TensorListConcatV2", "TensorListSplit", "TensorListResize",
    # variable reads
    "ReadVariableOp", "ResourceGather", "VariableShape",
    # element-wise arithmetic, comparisons and activations
    "Add", "AddV2", "AddN", "Sub", "Mul", "MulNoNan", "Div", "DivNoNan", "RealDiv", "FloorDiv", "FloorMod",
    "TruncateDiv", "TruncateMod", "Mod", "Neg", "Abs", "Sign", "Square", "Sqrt", "Rsqrt", "Reciprocal", "Inv",
    "Pow", "Exp", "Expm1", "Log", "Log1p", "Maximum", "Minimum", "SquaredDifference", "Floor", "Ceil", "Round",
    "Rint", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Atan2", "Sinh", "Cosh", "Tanh", "Asinh", "Acosh",
    "Atanh", "Erf", "Erfc", "Erfinv", "Lgamma", "Digamma", "Xlogy", "Xdivy", "Xlog1py", "ClipByValue",
    "IsFinite", "IsNan", "IsInf", "Cast", "Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual",
    "ApproximateEqual", "LogicalAnd", "LogicalOr", "LogicalNot", "Select", "SelectV2",
    "Sigmoid", "Softplus", "Softsign", "Relu", "Relu6", "Elu", "Selu", "LeakyRelu", "Softmax", "LogSoftmax",
    # linear algebra, reductions and scans
    "MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "BiasAdd", "BiasAddV1", "Cross",
    "Sum", "Mean", "Prod", "Max", "Min", "All", "Any", "ArgMax", "ArgMin", "EuclideanNorm", "Cumsum", "Cumprod",
    "CumulativeLogsumexp", "TopKV2", "L2Loss", "SegmentSum", "UnsortedSegmentSum", "UnsortedSegmentMax",
    # convolution, pooling, normalisation, resizing
    "Conv", "Conv2D", "Conv3D", "Conv2DBackpropInput", "Conv3DBackpropInputV2", "DepthwiseConv2dNative",
    "DepthwiseConv2dNativeBackpropInput", "MaxPool", "MaxPoolV2", "MaxPool3D", "AvgPool", "AvgPool3D",
    "FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3", "LRN", "ResizeBilinear", "ResizeNearestNeighbor",
    "ResizeBicubic", "ResizeArea", "ScaleAndTranslate", "CropAndResize", "ExtractImagePatches",
    "FakeQuantWithMinMaxArgs", "FakeQuantWithMinMaxVars", "FakeQuantWithMinMaxVarsPerChannel",
    "QuantizeAndDequantizeV2", "QuantizeAndDequantizeV3", "QuantizeAndDequantizeV4",
    # shape manipulation and tensor construction
    "Shape", "ShapeN", "Size", "Rank", "Reshape", "ExpandDims", "Squeeze", "Transpose", "ConjugateTranspose",
    "Concat", "ConcatV2", "Pack", "Unpack", "Split", "SplitV", "Slice", "StridedSlice", "Gather", "GatherV2",
    "GatherNd", "Tile", "Reverse", "ReverseV2", "Roll", "OneHot", "Where", "ScatterNd", "TensorScatterUpdate",
    "TensorScatterAdd", "Pad", "PadV2", "MirrorPad", "SpaceToBatchND", "BatchToSpaceND", "SpaceToDepth",
    "DepthToSpace", "BroadcastTo", "BroadcastArgs", "BroadcastGradientArgs", "Fill", "ZerosLike", "OnesLike",
    "Range", "LinSpace", "InvertPermutation", "MatrixBandPart", "MatrixDiagV3", "MatrixDiagPartV3",
    "DynamicStitch", "DynamicPartition",
})

# Functions the TensorFlow 2 loader runs for a restored resource (e.g. a lookup table).
_RESOURCE_FUNCTIONS = ("_create_resource", "_initialize", "_destroy_resource")


class SavedModelReadError(ValueError):
    """`saved_model.pb` cannot be parsed, or has no such endpoint."""


class UncheckableSavedModelError(SavedModelReadError):
    """A TensorFlow 1 export: its graph runs through a session, with no function graph to check."""


def unsafe_operations(path, endpoint="serving_default"):
    """The operation types outside `SAFE_OPERATIONS` that loading `path` and calling `endpoint` could run.

    Reads only `saved_model.pb`: nothing of the model is loaded, run or written.

    Args:
        path: a SavedModel directory.
        endpoint: the signature (or root attribute) that will be called.

    Returns:
        A sorted list of operation types; empty when the model only computes on tensors.

    Raises:
        SavedModelReadError: the file cannot be parsed or has no `endpoint`.
        UncheckableSavedModelError: the file was written by TensorFlow 1.

    Example:
    >>> unsafe_operations("runs/byo/teacher_savedmodel")
    []
    """
    return sorted(reachable_operations(path, endpoint) - SAFE_OPERATIONS)


def reachable_operations(path, endpoint="serving_default"):
    """The set of operation types that loading `path` and calling `endpoint` could run; see `unsafe_operations`."""
    saved_model = saved_model_pb2.SavedModel()
    try:
        with open(os.path.join(path, "saved_model.pb"), "rb") as file:
            saved_model.ParseFromString(file.read())
    except Exception as error:  # protobuf raises DecodeError, OSError for an unreadable file
        raise SavedModelReadError(f"saved_model.pb cannot be parsed ({type(error).__name__})") from error
    if len(saved_model.meta_graphs) != 1 or not saved_model.meta_graphs[0].object_graph_def.nodes:
        raise UncheckableSavedModelError("written by TensorFlow 1 (no function graph), so its operations "
                                         "cannot be checked")
    meta_graph = saved_model.meta_graphs[0]
    library = meta_graph.graph_def.library
    functions = {function.signature.name: function for function in library.function}
    function_gradients = {gradient.function_name: gradient.gradient_func for gradient in library.gradient}
    op_gradients = {gradient.registered_op_type: gradient.gradient_func for gradient in library.registered_gradients}
    nodes = meta_graph.object_graph_def.nodes

    def function_names(node_id):
        node = nodes[node_id]
        if node.HasField("function"):
            return list(node.function.concrete_functions)
        if node.HasField("bare_concrete_function"):
            return [node.bare_concrete_function.concrete_function_name]
        return []

    def children(node_id, names):
        return [c.node_id for c in nodes[node_id].children if c.local_name in names]

    entry_points = children(0, [endpoint]) + [node_id for signatures in children(0, ["signatures"])
                                              for node_id in children(signatures, [endpoint])]
    if not any(function_names(node_id) for node_id in entry_points):
        raise SavedModelReadError(f"has no {endpoint} signature")
    for node_id, node in enumerate(nodes):
        if node.HasField("resource"):
            entry_points += children(node_id, _RESOURCE_FUNCTIONS)
        entry_points += [saveable.restore_function for saveable in node.saveable_objects.values()]

    pending = [name for node_id in entry_points for name in function_names(node_id)]
    visited, operations = set(), set()
    while pending:
        name = pending.pop()
        if name in visited:
            continue
        visited.add(name)
        if name not in functions:  # defined outside this file, so unknown: listed as if it were an operation
            operations.add(name)
            continue
        if name in function_gradients:
            pending.append(function_gradients[name])
        for node_def in functions[name].node_def:
            if node_def.op in functions:  # a function called directly as an operation
                pending.append(node_def.op)
            else:
                operations.add(node_def.op)
            pending += _called_functions(node_def.attr.values())
            if "_gradient_op_type" in node_def.attr:  # a custom gradient, run when the model is differentiated
                gradient_type = node_def.attr["_gradient_op_type"].s.decode()
                pending += [op_gradients[gradient_type]] if gradient_type in op_gradients else []
    return operations


def _called_functions(attr_values):
    """Names of the functions in attribute values (`f`, branches, bodies, lists of functions), at any depth."""
    names = []
    for value in attr_values:
        funcs = [value.func] if value.HasField("func") else list(value.list.func)
        for func in funcs:
            names.append(func.name)
            names += _called_functions(func.attr.values())
    return names
