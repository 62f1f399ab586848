"""arm-m4: names from the user's model never reach the generated C verbatim. A layer name holding
`*/` and a newline used to end model.c's step comment and put the rest of the name (here a
`#error` and a global) into the firmware; names differing only in punctuation used to define one
weight symbol twice. Both models must build, compile, and run like the reference interpreter."""
from __future__ import annotations

import re
import shutil

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from cococ.backends.build import build
from cococ.backends.mcu.codegen import c_comment, c_ident
from cococ.frontend.load import load
from cococ.ir.interpreter import run as reference

needs_gcc = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")

EVIL = 'fc */\n#error "model file text compiled into the firmware"\nint evil = 1; /* \\'


def test_comment_and_identifier_sanitisers():
    assert "*/" not in c_comment(EVIL) and "\n" not in c_comment(EVIL) and "\\" not in c_comment(EVIL)
    assert c_comment("ip1+relu1") == "ip1+relu1" and c_comment("f32 -> int16, scale 0.5") == "f32 -> int16, scale 0.5"
    assert c_ident("w_conv1_weight") == "w_conv1_weight"
    assert c_ident("fc-1.é") == "fc_1__" and c_ident("1x") == "v_1x"


def _check_project(art) -> None:
    """The names may show in comments (sanitised), never in the code outside them; the ELF
    linked (an `#error` reaching the code would have stopped it) and defines no `evil`."""
    for name in ("model.c", "model.h", "weights.c", "kernels.c"):
        text = (art.dir / name).read_text()
        assert text.isascii(), name
        code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
        assert "#error" not in code and "evil =" not in code and "/*" not in code and "*/" not in code, name
    assert "evil" not in art.emulator().symbols


@needs_gcc
def test_onnx_names_with_comment_end_and_newline_build(tmp_path):
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "w2")
    nodes = [helper.make_node("Gemm", ["x", "w1"], ["h */ é"], name=EVIL, transB=1),
             helper.make_node("Relu", ["h */ é"], ["r\n#error x"], name="relu */"),
             helper.make_node("Gemm", ["r\n#error x", "w2"], ["y"], name=EVIL.replace("fc", "fc.2"), transB=1)]
    g = helper.make_graph(nodes, "names", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [w1, w2])
    path = tmp_path / "names.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]), path)
    graph = load(path)
    x = rng.standard_normal((1, 16)).astype(np.float32)
    art = build(graph, "arm-m4", out_dir=tmp_path / "out", sample_input=x)  # compiles and links model.elf
    _check_project(art)
    np.testing.assert_allclose(art.run(x)["y"], reference(graph, [x])["y"], rtol=1e-4, atol=1e-4)


PROTOTXT = """name: "names"
input: "data"
input_shape { dim: 1 dim: 12 }
layer { name: "fc-1 */ int evil = 1; /*" type: "InnerProduct" bottom: "data" top: "a"
        inner_product_param { num_output: 6 } }
layer { name: "fc.1 */ int evil = 1; /*" type: "InnerProduct" bottom: "a" top: "b"
        inner_product_param { num_output: 3 } }
"""


@needs_gcc
def test_prototxt_names_that_collide_as_identifiers_build(tmp_path):
    path = tmp_path / "names.prototxt"
    path.write_text(PROTOTXT)
    graph = load(path, init="random")
    x = np.random.default_rng(1).standard_normal((1, 12)).astype(np.float32)
    art = build(graph, "arm-m4", out_dir=tmp_path / "out", sample_input=x, quantize="q15")
    _check_project(art)
    syms = [line.split()[3].split("[")[0] for line in (art.dir / "model.h").read_text().splitlines()
            if line.startswith("extern const")]
    assert len(syms) == len(set(syms)) and any(s.endswith("_2") for s in syms)
    out = list(art.run(x).values())[0]
    ref = list(reference(art.graph, [x]).values())[0]  # the quantized graph the device runs
    assert np.abs(out - ref).max() <= 0.01 * np.abs(ref).max()
