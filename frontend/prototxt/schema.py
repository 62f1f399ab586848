"""The field names of every Caffe message cococ reads, from caffe.proto, for unknown-field checks.

Why a table and not what the converters use: Caffe files carry many fields cococ deliberately
ignores (weight_filler, lr_mult, include rules, data sources, solver_mode), and those must load;
a field caffe.proto does not know (a misspelt `strde: 2`) is what protobuf's own text parser
refuses, and so does cococ, at its line:col with the nearest known name.

CAFFE_MESSAGES is transcribed from BVLC/caffe src/caffe/proto/caffe.proto at commit 9b891540
(the copy in ../shared/corpus/prototxt/bvlc_caffe; tests/frontend/test_prototxt_fields.py checks
the table against it): every message reachable from NetParameter and SolverParameter, each as
its fields in declaration order, `name:Type` where the field is itself a message. EXTENSIONS
adds cococ's own fields (Wootz's `module`), which caffe.proto lacks.
"""
from __future__ import annotations

import difflib
import warnings

from cococ.frontend.prototxt.textformat import Message
from cococ.ir.core import CococError

CAFFE_MESSAGES = {
    "BlobShape": "dim",
    "BlobProto": "shape:BlobShape data diff double_data double_diff num channels height width",
    "FillerParameter": "type value min max mean std sparse variance_norm",
    "NetParameter": (
        "name input input_shape:BlobShape input_dim force_backward state:NetState debug_info layer:LayerParameter "
        "layers:V1LayerParameter"
    ),
    "SolverParameter": (
        "net net_param:NetParameter train_net test_net train_net_param:NetParameter test_net_param:NetParameter "
        "train_state:NetState test_state:NetState test_iter test_interval test_compute_loss test_initialization "
        "base_lr display average_loss max_iter iter_size lr_policy gamma power momentum weight_decay "
        "regularization_type stepsize stepvalue clip_gradients snapshot snapshot_prefix snapshot_diff "
        "snapshot_format solver_mode device_id random_seed type delta momentum2 rms_decay debug_info "
        "snapshot_after_train solver_type layer_wise_reduce weights"
    ),
    "NetState": "phase level stage",
    "NetStateRule": "phase min_level max_level stage not_stage",
    "ParamSpec": "name share_mode lr_mult decay_mult",
    "LayerParameter": (
        "name type bottom top phase loss_weight param:ParamSpec blobs:BlobProto propagate_down "
        "include:NetStateRule exclude:NetStateRule transform_param:TransformationParameter "
        "loss_param:LossParameter accuracy_param:AccuracyParameter argmax_param:ArgMaxParameter "
        "batch_norm_param:BatchNormParameter bias_param:BiasParameter clip_param:ClipParameter "
        "concat_param:ConcatParameter contrastive_loss_param:ContrastiveLossParameter "
        "convolution_param:ConvolutionParameter crop_param:CropParameter data_param:DataParameter "
        "dropout_param:DropoutParameter dummy_data_param:DummyDataParameter eltwise_param:EltwiseParameter "
        "elu_param:ELUParameter embed_param:EmbedParameter exp_param:ExpParameter flatten_param:FlattenParameter "
        "hdf5_data_param:HDF5DataParameter hdf5_output_param:HDF5OutputParameter "
        "hinge_loss_param:HingeLossParameter image_data_param:ImageDataParameter "
        "infogain_loss_param:InfogainLossParameter inner_product_param:InnerProductParameter "
        "input_param:InputParameter log_param:LogParameter lrn_param:LRNParameter "
        "memory_data_param:MemoryDataParameter mvn_param:MVNParameter parameter_param:ParameterParameter "
        "pooling_param:PoolingParameter power_param:PowerParameter prelu_param:PReLUParameter "
        "python_param:PythonParameter recurrent_param:RecurrentParameter reduction_param:ReductionParameter "
        "relu_param:ReLUParameter reshape_param:ReshapeParameter scale_param:ScaleParameter "
        "sigmoid_param:SigmoidParameter softmax_param:SoftmaxParameter spp_param:SPPParameter "
        "slice_param:SliceParameter swish_param:SwishParameter tanh_param:TanHParameter "
        "threshold_param:ThresholdParameter tile_param:TileParameter window_data_param:WindowDataParameter"
    ),
    "TransformationParameter": "scale mirror crop_size mean_file mean_value force_color force_gray",
    "LossParameter": "ignore_label normalization normalize",
    "AccuracyParameter": "top_k axis ignore_label",
    "ArgMaxParameter": "out_max_val top_k axis",
    "ClipParameter": "min max",
    "ConcatParameter": "axis concat_dim",
    "BatchNormParameter": "use_global_stats moving_average_fraction eps",
    "BiasParameter": "axis num_axes filler:FillerParameter",
    "ContrastiveLossParameter": "margin legacy_version",
    "ConvolutionParameter": (
        "num_output bias_term pad kernel_size stride dilation pad_h pad_w kernel_h kernel_w stride_h stride_w "
        "group weight_filler:FillerParameter bias_filler:FillerParameter engine axis force_nd_im2col"
    ),
    "CropParameter": "axis offset",
    "DataParameter": (
        "source batch_size rand_skip backend scale mean_file crop_size mirror force_encoded_color prefetch"
    ),
    "DropoutParameter": "dropout_ratio",
    "DummyDataParameter": "data_filler:FillerParameter shape:BlobShape num channels height width",
    "EltwiseParameter": "operation coeff stable_prod_grad",
    "ELUParameter": "alpha",
    "EmbedParameter": "num_output input_dim bias_term weight_filler:FillerParameter bias_filler:FillerParameter",
    "ExpParameter": "base scale shift",
    "FlattenParameter": "axis end_axis",
    "HDF5DataParameter": "source batch_size shuffle",
    "HDF5OutputParameter": "file_name",
    "HingeLossParameter": "norm",
    "ImageDataParameter": (
        "source batch_size rand_skip shuffle new_height new_width is_color scale mean_file crop_size mirror "
        "root_folder"
    ),
    "InfogainLossParameter": "source axis",
    "InnerProductParameter": (
        "num_output bias_term weight_filler:FillerParameter bias_filler:FillerParameter axis transpose"
    ),
    "InputParameter": "shape:BlobShape",
    "LogParameter": "base scale shift",
    "LRNParameter": "local_size alpha beta norm_region k engine",
    "MemoryDataParameter": "batch_size channels height width",
    "MVNParameter": "normalize_variance across_channels eps",
    "ParameterParameter": "shape:BlobShape",
    "PoolingParameter": (
        "pool pad pad_h pad_w kernel_size kernel_h kernel_w stride stride_h stride_w engine global_pooling "
        "round_mode"
    ),
    "PowerParameter": "power scale shift",
    "PythonParameter": "module layer param_str share_in_parallel",
    "RecurrentParameter": (
        "num_output weight_filler:FillerParameter bias_filler:FillerParameter debug_info expose_hidden"
    ),
    "ReductionParameter": "operation axis coeff",
    "ReLUParameter": "negative_slope engine",
    "ReshapeParameter": "shape:BlobShape axis num_axes",
    "ScaleParameter": "axis num_axes filler:FillerParameter bias_term bias_filler:FillerParameter",
    "SigmoidParameter": "engine",
    "SliceParameter": "axis slice_point slice_dim",
    "SoftmaxParameter": "engine axis",
    "SwishParameter": "beta",
    "TanHParameter": "engine",
    "TileParameter": "axis tiles",
    "ThresholdParameter": "threshold",
    "WindowDataParameter": (
        "source scale mean_file batch_size crop_size mirror fg_threshold bg_threshold fg_fraction context_pad "
        "crop_mode cache_images root_folder"
    ),
    "SPPParameter": "pyramid_height pool engine",
    "V1LayerParameter": (
        "bottom top name include:NetStateRule exclude:NetStateRule type blobs:BlobProto param blob_share_mode "
        "blobs_lr weight_decay loss_weight accuracy_param:AccuracyParameter argmax_param:ArgMaxParameter "
        "concat_param:ConcatParameter contrastive_loss_param:ContrastiveLossParameter "
        "convolution_param:ConvolutionParameter data_param:DataParameter dropout_param:DropoutParameter "
        "dummy_data_param:DummyDataParameter eltwise_param:EltwiseParameter exp_param:ExpParameter "
        "hdf5_data_param:HDF5DataParameter hdf5_output_param:HDF5OutputParameter "
        "hinge_loss_param:HingeLossParameter image_data_param:ImageDataParameter "
        "infogain_loss_param:InfogainLossParameter inner_product_param:InnerProductParameter "
        "lrn_param:LRNParameter memory_data_param:MemoryDataParameter mvn_param:MVNParameter "
        "pooling_param:PoolingParameter power_param:PowerParameter relu_param:ReLUParameter "
        "sigmoid_param:SigmoidParameter softmax_param:SoftmaxParameter slice_param:SliceParameter "
        "tanh_param:TanHParameter threshold_param:ThresholdParameter window_data_param:WindowDataParameter "
        "transform_param:TransformationParameter loss_param:LossParameter layer:V0LayerParameter"
    ),
    "V0LayerParameter": (
        "name type num_output biasterm weight_filler:FillerParameter bias_filler:FillerParameter pad kernelsize "
        "group stride pool dropout_ratio local_size alpha beta k source scale meanfile batchsize cropsize mirror "
        "blobs:BlobProto blobs_lr weight_decay rand_skip det_fg_threshold det_bg_threshold det_fg_fraction "
        "det_context_pad det_crop_mode new_num new_channels new_height new_width shuffle_images concat_dim "
        "hdf5_output_param:HDF5OutputParameter"
    ),
    "PReLUParameter": "filler:FillerParameter channel_shared",
}

# Wootz (PLDI'19) marks convolution modules: a net-level `module { name layer {...} }` block,
# or a `module: "name"` string on a layer.
EXTENSIONS = {
    "NetParameter": "module:WootzModule",
    "LayerParameter": "module",
    "V1LayerParameter": "module",
    "WootzModule": "name layer:LayerParameter layers:V1LayerParameter",
}


def _table() -> dict[str, dict[str, str | None]]:
    out: dict[str, dict[str, str | None]] = {}
    for source in (CAFFE_MESSAGES, EXTENSIONS):
        for msg, spec in source.items():
            fields = out.setdefault(msg, {})
            for item in spec.split():
                name, _, type_ = item.partition(":")
                fields[name] = type_ or None
    return out


FIELDS = _table()  # message type -> {field name: message type of the field, None for a scalar}


def check_fields(root: Message, msg_type: str, *, lenient: bool = False) -> None:
    """Refuse (or, lenient, warn about) every field `msg_type` and its sub-messages do not define.

    The error reads as protobuf's text parser's, plus the layer and the nearest known name:
    `net.prototxt:12:5: layer 'conv1': unknown field 'strde' in convolution_param (did you mean 'stride'?)`.
    """
    _walk(root, msg_type, "a net" if msg_type == "NetParameter" else "a solver", None, lenient)


def _walk(m: Message, msg_type: str, where: str, layer: str | None, lenient: bool) -> None:
    known = FIELDS[msg_type]
    if msg_type in ("LayerParameter", "V1LayerParameter", "V0LayerParameter"):
        name = m.get("name")
        layer = str(name) if isinstance(name, str) else layer
    for f in m.fields:
        if f.name not in known:
            close = difflib.get_close_matches(f.name, known, n=1, cutoff=0.6)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            what = f"unknown solver field '{f.name}'" if where == "a solver" else \
                f"unknown field '{f.name}' in {where}"
            err = CococError(what + hint, layer=layer, loc=f.loc, path=m.path)
            if not lenient:
                raise err
            warnings.warn(f"{err} (ignored: --lenient)", stacklevel=4)
            continue
        sub = known[f.name]
        if sub is not None and isinstance(f.value, Message):  # a scalar there: the typed accessor says so
            _walk(f.value, sub, f.name, layer, lenient)
