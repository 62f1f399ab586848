"""Caffe data layers -> graph inputs: Input, DummyData, MemoryData (declared shapes) and
Data/ImageData/WindowData/HDF5Data (shape read from a database at train time, so guessed here).

Only the first top of a data layer is an inference input; further tops are labels, kept out of
the graph (a kept layer reading one is an error naming the label).
"""
from __future__ import annotations

import warnings

from cococ.frontend.prototxt.textformat import INT32, UINT32, Message


def _blob_shape(ctx_msg: Message) -> list[int]:
    return ctx_msg.get_ints("dim", (1, INT32[1]))


def _input_layer(b, lp: Message, name: str, tops: list[str], module) -> None:
    ip = lp.get_msg("input_param") or Message([], lp.loc, lp.path)
    shapes = [_blob_shape(s) for s in ip.get_msgs("shape")]
    if not tops:
        raise lp.error("Input layer has no top", layer=name)
    if len(shapes) not in (1, len(tops)) and not all(b.given_shape(t) is not None for t in tops):
        raise lp.error(f"Input layer has {len(tops)} tops but {len(shapes)} shapes", layer=name)
    for i, t in enumerate(tops):
        shape = shapes[0] if len(shapes) == 1 else (shapes[i] if i < len(shapes) else [])
        b.add_input(t, shape, name if len(tops) == 1 else f"{name}/{t}", lp.loc, module)


def _data_layer(b, lp: Message, name: str, tops: list[str], module) -> None:
    """Data/ImageData/WindowData/HDF5Data: the data top becomes an input, other tops are labels.

    The shape is not in the prototxt (it is in the database), so it is guessed and marked
    `meta["caffe_shape_guessed"]`: batch = *_param.batch_size (1), channels = 3 (1 when
    ImageData `is_color: false`, else the number of `mean_value`s when more than one),
    height/width = transform_param.crop_size, else ImageData new_height/new_width, else 224.
    A warning names the layer; pass input_shapes={"data": [...]} to load_prototxt (--input-shape
    on the command line) to give the real one.
    """
    if not tops:
        raise lp.error(f"{lp.get_str('type')} layer has no top", layer=name)
    src = next((lp.get_msg(f) for f in ("data_param", "image_data_param", "window_data_param",
                                         "hdf5_data_param", "memory_data_param") if lp.has(f)), None)
    src = src or Message([], lp.loc, lp.path)
    tp = lp.get_msg("transform_param") or Message([], lp.loc, lp.path)
    batch = src.get_int("batch_size", 1, (1, INT32[1]))
    if lp.get_str("type") == "MemoryData":
        shape = [batch] + [src.get_int(k, 1, (1, INT32[1])) for k in ("channels", "height", "width")]
        b.add_input(tops[0], shape, name, lp.loc, module)
    else:
        means = tp.get_floats("mean_value")
        c = 1 if not src.get_bool("is_color", True) else (len(means) if len(means) > 1 else 3)
        crop = tp.get_int("crop_size", 0, UINT32)
        h, w = (crop, crop) if crop else (src.get_int("new_height", 0, UINT32), src.get_int("new_width", 0, UINT32))
        h, w = (h, w) if h and w else (224, 224)
        b.add_input(tops[0], [batch, c, h, w], name, lp.loc, module, guessed=True)
        if b.given_shape(tops[0]) is None:  # a guess that silently sets every shape and MAC count after it
            warnings.warn(f"{lp.get_str('type')} layer '{name}': input shape guessed as {[batch, c, h, w]} "
                          f"(the real one is in its database); set it with --input-shape N,C,H,W "
                          f"(cococ.load(..., input_shape=[...]))", stacklevel=2)
    for t in tops[1:]:
        b.unusable[t] = f"it is the label top of data layer '{name}' (labels are not inference inputs)"
        b.blobs.pop(t, None)


def _dummy_data(b, lp: Message, name: str, tops: list[str], module) -> None:
    p = lp.get_msg("dummy_data_param") or Message([], lp.loc, lp.path)
    shapes = [_blob_shape(s) for s in p.get_msgs("shape")]
    if not shapes:
        legacy = [p.get_ints(k, (1, INT32[1])) for k in ("num", "channels", "height", "width")]
        shapes = [list(s) for s in zip(*legacy)]
    if not tops:
        raise lp.error("DummyData layer has no top", layer=name)
    if len(shapes) not in (1, len(tops)):
        raise lp.error(f"DummyData has {len(tops)} tops but {len(shapes)} shapes", layer=name)
    for i, t in enumerate(tops):
        b.add_input(t, shapes[0] if len(shapes) == 1 else shapes[i], name if len(tops) == 1 else f"{name}/{t}",
                    lp.loc, module)


DATA_TYPES = {"Input": _input_layer, "Data": _data_layer, "ImageData": _data_layer, "WindowData": _data_layer,
              "HDF5Data": _data_layer, "MemoryData": _data_layer, "DummyData": _dummy_data}
