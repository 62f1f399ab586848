"""Rewrite legacy Caffe layers (V1 `layers { type: ENUM }`, V0 `layers { layer { ... } }`) as V2.

Caffe itself upgrades old nets on load (upgrade_proto.cpp) before building them; doing the
same here means the translator knows one syntax only. The rewrite works on the generic
message tree and keeps every field's line:col, so errors still point into the original file.
V1 `blobs_lr`/`weight_decay` become V2 `param { lr_mult decay_mult }`.
"""
from __future__ import annotations

from cococ.frontend.prototxt.textformat import Field, Message

V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DATA": "Data",
    "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN", "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold",
}
V1_NUMBERS = {0: "NONE", 35: "ABSVAL", 1: "ACCURACY", 30: "ARGMAX", 2: "BNLL", 3: "CONCAT", 37: "CONTRASTIVE_LOSS",
              4: "CONVOLUTION", 5: "DATA", 39: "DECONVOLUTION", 6: "DROPOUT", 32: "DUMMY_DATA",
              7: "EUCLIDEAN_LOSS", 25: "ELTWISE", 38: "EXP", 8: "FLATTEN", 9: "HDF5_DATA", 10: "HDF5_OUTPUT",
              28: "HINGE_LOSS", 11: "IM2COL", 12: "IMAGE_DATA", 13: "INFOGAIN_LOSS", 14: "INNER_PRODUCT",
              15: "LRN", 29: "MEMORY_DATA", 16: "MULTINOMIAL_LOGISTIC_LOSS", 34: "MVN", 17: "POOLING",
              26: "POWER", 18: "RELU", 19: "SIGMOID", 27: "SIGMOID_CROSS_ENTROPY_LOSS", 36: "SILENCE",
              20: "SOFTMAX", 21: "SOFTMAX_LOSS", 22: "SPLIT", 33: "SLICE", 23: "TANH", 24: "WINDOW_DATA",
              31: "THRESHOLD"}

# V0 type -> (V2 type, parameter message, {V0 field: V2 field in that message})
_CONV = {"num_output": "num_output", "biasterm": "bias_term", "pad": "pad", "kernelsize": "kernel_size",
         "group": "group", "stride": "stride", "weight_filler": "weight_filler", "bias_filler": "bias_filler"}
_DATA = {"source": "source", "batchsize": "batch_size", "rand_skip": "rand_skip"}
_TRANSFORM = {"scale": "scale", "meanfile": "mean_file", "cropsize": "crop_size", "mirror": "mirror"}
V0_TYPES = {
    "conv": ("Convolution", "convolution_param", _CONV),
    "innerproduct": ("InnerProduct", "inner_product_param",
                     {"num_output": "num_output", "biasterm": "bias_term", "weight_filler": "weight_filler",
                      "bias_filler": "bias_filler"}),
    "pool": ("Pooling", "pooling_param", {"pool": "pool", "kernelsize": "kernel_size", "stride": "stride",
                                          "pad": "pad"}),
    "lrn": ("LRN", "lrn_param", {"local_size": "local_size", "alpha": "alpha", "beta": "beta", "k": "k"}),
    "dropout": ("Dropout", "dropout_param", {"dropout_ratio": "dropout_ratio"}),
    "concat": ("Concat", "concat_param", {"concat_dim": "concat_dim"}),
    "data": ("Data", "data_param", _DATA),
    "images": ("ImageData", "image_data_param", {**_DATA, "new_height": "new_height", "new_width": "new_width"}),
    "relu": ("ReLU", None, {}), "sigmoid": ("Sigmoid", None, {}), "tanh": ("TanH", None, {}),
    "softmax": ("Softmax", None, {}), "softmax_loss": ("SoftmaxWithLoss", None, {}),
    "flatten": ("Flatten", None, {}), "split": ("Split", None, {}), "accuracy": ("Accuracy", None, {}),
    "euclidean_loss": ("EuclideanLoss", None, {}), "infogain_loss": ("InfogainLoss", None, {}),
    "multinomial_logistic_loss": ("MultinomialLogisticLoss", None, {}), "bnll": ("BNLL", None, {}),
}


def _param_specs(m: Message, lr_field: str, decay_field: str) -> list[Field]:
    """V1/V0 per-blob blobs_lr / weight_decay lists -> V2 `param { lr_mult decay_mult }` fields."""
    lrs, decays = m.all_fields(lr_field), m.all_fields(decay_field)
    out = []
    for i in range(max(len(lrs), len(decays))):
        sub = [Field("lr_mult", lrs[i].value, lrs[i].loc)] if i < len(lrs) else []
        sub += [Field("decay_mult", decays[i].value, decays[i].loc)] if i < len(decays) else []
        out.append(Field("param", Message(sub, sub[0].loc, m.path), sub[0].loc))
    return out


def upgrade_v1(m: Message) -> Message:
    """A `layers { ... }` message (V1, or V0 when it holds a `layer { ... }`) -> a V2 layer message."""
    inner = m.get("layer")
    if isinstance(inner, Message):
        return _upgrade_v0(m, inner)
    fields: list[Field] = []
    for f in m.fields:
        if f.name == "type":
            v = f.value
            if isinstance(v, int) and not isinstance(v, bool):
                v = V1_NUMBERS.get(v, v)
            name = V1_TYPES.get(str(v)) if isinstance(v, str) else None
            fields.append(Field("type", name or f"<V1 type {v}>", f.loc))
        elif f.name in ("blobs_lr", "weight_decay"):
            continue
        elif f.name == "param":  # V1 `param` holds share names (strings)
            fields.append(Field("param", Message([Field("name", f.value, f.loc)], f.loc, m.path), f.loc))
        else:
            fields.append(f)
    fields += _param_specs(m, "blobs_lr", "weight_decay")
    return Message(fields, m.loc, m.path)


def _upgrade_v0(outer: Message, v0: Message) -> Message:
    fields = [f for f in outer.fields if f.name != "layer"]
    t = v0.get("type")
    spec = V0_TYPES.get(t) if isinstance(t, str) else None
    tf = v0.field("type")
    fields.append(Field("type", spec[0] if spec else f"<V0 type {t}>", tf.loc if tf else v0.loc))
    if v0.has("name"):
        fields.append(v0.field("name"))
    if spec and spec[1]:
        sub = [Field(spec[2][f.name], f.value, f.loc) for f in v0.fields if f.name in spec[2]]
        fields.append(Field(spec[1], Message(sub, v0.loc, v0.path), v0.loc))
    if spec and spec[0] in ("Data", "ImageData"):
        sub = [Field(_TRANSFORM[f.name], f.value, f.loc) for f in v0.fields if f.name in _TRANSFORM]
        fields.append(Field("transform_param", Message(sub, v0.loc, v0.path), v0.loc))
    fields += _param_specs(v0, "blobs_lr", "weight_decay")
    return Message(fields, outer.loc, outer.path)
