"""Unknown prototxt fields: an error at line:col naming the layer, the message and the nearest
known name (as protobuf's text parser refuses them), a warning with --lenient; every field
caffe.proto defines is accepted, whether cococ uses it or not."""
import re
import warnings

import pytest

from cococ.cli import main
from cococ.frontend.prototxt import load_prototxt_text
from cococ.frontend.prototxt.schema import CAFFE_MESSAGES, EXTENSIONS, FIELDS
from cococ.frontend.solver import load_solver_text
from cococ.ir.core import CococError

HEAD = 'input: "data"\ninput_dim: 1 input_dim: 1 input_dim: 8 input_dim: 8\n'


def _conv(extra: str = "", layer_extra: str = "") -> str:
    return HEAD + ('layer {\n  name: "conv1" type: "Convolution" bottom: "data" top: "conv1"\n'
                   f'  convolution_param {{ num_output: 2 kernel_size: 3\n    {extra} }}\n  {layer_extra}\n}}\n')


def _proto_messages(text: str) -> dict[str, list[str]]:
    """message -> its fields (`name` or `name:Type`) in order, from caffe.proto's text."""
    text = re.sub(r"//[^\n]*", "", text)
    msgs: dict[str, list[str]] = {}
    stack: list[tuple[str, str]] = []
    decl = r"\b(message|enum)\s+(\w+)\s*\{|\}|(?:optional|repeated|required)\s+([\w.]+)\s+(\w+)\s*="
    for m in re.finditer(decl, text):
        if m.group(1):
            stack.append((m.group(1), m.group(2)))
            if m.group(1) == "message":
                msgs[m.group(2)] = []
        elif m.group(0) == "}":
            stack.pop()
        else:
            msgs[stack[-1][1]].append((m.group(4), m.group(3)))
    return {n: [f"{f}:{t}" if t in msgs else f for f, t in fs] for n, fs in msgs.items()}


def test_table_is_caffe_proto(corpus):
    proto = _proto_messages((corpus / "bvlc_caffe/src/caffe/proto/caffe.proto").read_text())
    assert {n: s.split() for n, s in CAFFE_MESSAGES.items()} == {n: proto[n] for n in CAFFE_MESSAGES}
    reachable = set()
    todo = ["NetParameter", "SolverParameter"]
    while todo:
        n = todo.pop()
        if n not in reachable:
            reachable.add(n)
            todo += [t for f in proto[n] for t in f.split(":")[1:]]
    assert set(CAFFE_MESSAGES) == reachable  # every message cococ can meet, no more
    assert all(t in FIELDS for spec in EXTENSIONS.values() for f in spec.split() for t in f.split(":")[1:])


@pytest.mark.parametrize("text,match", [
    (_conv("strde: 2"), "t.prototxt:6:5: layer 'conv1': unknown field 'strde' in convolution_param "
                        r"\(did you mean 'stride'\?\)$"),
    (_conv(layer_extra="botom: \"x\""), r"t.prototxt:7:3: layer 'conv1': unknown field 'botom' in layer "
                                        r"\(did you mean 'bottom'\?\)$"),
    (_conv("weight_filler { type: \"xavier\" sdt: 0.1 }"),
     r"6:36: layer 'conv1': unknown field 'sdt' in weight_filler \(did you mean 'std'\?\)$"),
    (HEAD + "lyer { }", r"t.prototxt:3:1: unknown field 'lyer' in a net \(did you mean 'layer'\?\)$"),
    (_conv("zzzzzz: 1"), r"unknown field 'zzzzzz' in convolution_param$"),  # nothing near: no hint
    (HEAD + 'layers { name: "r" type: RELU bottom: "data" top: "r" relu_parm { } }',
     r"3:55: layer 'r': unknown field 'relu_parm' in layers \(did you mean 'relu_param'\?\)$"),
])
def test_unknown_field_is_an_error_at_its_line(text, match):
    with pytest.raises(CococError, match=match):
        load_prototxt_text(text, path="t.prototxt")


def test_fields_cococ_ignores_are_accepted():
    g = load_prototxt_text(_conv(
        'weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0 } engine: CAFFE',
        'param { lr_mult: 1 decay_mult: 1 } include { phase: TEST } propagate_down: true'), path="t.prototxt")
    assert g.layer("conv1").meta["caffe_param"] == [{"lr_mult": 1, "decay_mult": 1}]


def test_lenient_warns_and_loads():
    with pytest.warns(UserWarning, match=r"6:5: layer 'conv1': unknown field 'strde' .* \(ignored: --lenient\)"):
        g = load_prototxt_text(_conv("strde: 2"), path="t.prototxt", lenient=True)
    assert g.layer("conv1").attrs["stride"] == [1, 1]  # ignored, as Caffe's lenient readers would


SOLVER = 'base_lr: 0.01\nmax_iter: 10\nlr_policy: "fixed"\n'


@pytest.mark.parametrize("text,match", [
    (SOLVER + "momentun: 0.9\n", r"s.prototxt:4:1: unknown solver field 'momentun' \(did you mean 'momentum'\?\)$"),
    (SOLVER + "test_state { stag: \"x\" }\n", r"4:14: unknown field 'stag' in test_state \(did you mean 'stage'\?\)$"),
    (SOLVER + 'net_param { layer { name: "d" type: "Input" top: "d" input_param { shap { dim: 1 } } } }\n',
     r"4:68: layer 'd': unknown field 'shap' in input_param \(did you mean 'shape'\?\)$"),
])
def test_unknown_solver_field(text, match):
    with pytest.raises(CococError, match=match):
        load_solver_text(text, "s.prototxt")
    with pytest.warns(UserWarning, match="ignored: --lenient"):
        load_solver_text(text, "s.prototxt", lenient=True)


def test_solver_fields_cococ_ignores_are_accepted():
    s = load_solver_text(SOLVER + 'display: 100\nsolver_mode: GPU\ndevice_id: 0\nsnapshot_format: HDF5\n'
                         'test_initialization: false\nlayer_wise_reduce: true\n', "s.prototxt")
    assert s.extra["solver_mode"] == "GPU"


def test_cli_lenient(tmp_path, capsys):
    net = tmp_path / "net.prototxt"
    net.write_text(_conv("strde: 2"))
    assert main(["show", str(net)]) == 1
    assert "net.prototxt:6:5: layer 'conv1': unknown field 'strde' in convolution_param (did you mean 'stride'?)" \
        in capsys.readouterr().err
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert main(["show", str(net), "--lenient"]) == 0
    assert any("unknown field 'strde'" in str(x.message) for x in w)
