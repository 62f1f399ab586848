"""Broken IR text: each kind of mistake gives a CococError that names the place (line:col, layer)."""
from __future__ import annotations

import pytest

from cococ.ir.core import CococError, Graph, Layer, Param, TensorType, Value
from cococ.ir.parser import parse_ir
from cococ.ir.verify import infer_shapes, verify

HEAD = 'graph @g {\n  %x: f32[1,3,8,8] = input "x" {shape = [1, 3, 8, 8]}\n'
CONV = ('  %c: f32[1,4,6,6] = conv2d "conv" (%x) {out_channels = 4, kernel = [3, 3]}\n'
        '      [weight: f32[4,3,3,3] #00000000]\n')

# (name, text, regex the one-line message must match)
CASES = [
    ("undefined value", HEAD + '  %y: f32[1,3,8,8] = relu "r" (%nope)\n  return %y\n}\n',
     r"^t\.ir:3:\d+: layer 'r': use of undefined value %nope$"),
    ("duplicate value", HEAD + '  %x: f32[1,3,8,8] = relu "r" (%x)\n  return %x\n}\n',
     r"^t\.ir:3:3: layer 'r': value %x is defined twice \(first at line 2:3\)$"),
    ("duplicate layer name", HEAD + '  %y: f32[1,3,8,8] = relu "x" (%x)\n  return %y\n}\n',
     r"^t\.ir:3:3: layer 'x': layer name 'x' is used twice at line 2:3$"),
    ("wrong param shape", HEAD + CONV.replace("f32[4,3,3,3]", "f32[4,3,5,5]") + "  return %c\n}\n",
     r"^t\.ir:3:3: layer 'conv': param 'weight' has shape \[4, 3, 5, 5\], conv2d needs \[4, 3, 3, 3\]$"),
    ("missing param", HEAD + CONV.split("\n")[0] + "\n  return %c\n}\n",
     r"^t\.ir:3:3: layer 'conv': conv2d requires param 'weight'"),
    ("unknown param", HEAD + CONV.replace("#00000000]", "#00000000, gamma: f32[4] #00000000]")
     + "  return %c\n}\n", r"^t\.ir:3:3: layer 'conv': unknown param 'gamma' for conv2d"),
    ("unknown op", HEAD + '  %y: f32[1,3,8,8] = frobnicate "f" (%x)\n  return %y\n}\n',
     r"^t\.ir:3:22: layer 'f': unknown op 'frobnicate' \(known ops: .*conv2d"),
    ("bad attr type", HEAD + CONV.replace("out_channels = 4", 'out_channels = "four"') + "  return %c\n}\n",
     r"^t\.ir:3:3: layer 'conv': attribute 'out_channels' of conv2d must be int, got 'four'$"),
    ("unknown attr", HEAD + '  %y: f32[1,3,8,8] = relu "r" (%x) {slope = 0.1}\n  return %y\n}\n',
     r"^t\.ir:3:3: layer 'r': unknown attribute 'slope' for relu"),
    ("missing attr", HEAD + CONV.replace("out_channels = 4, ", "") + "  return %c\n}\n",
     r"^t\.ir:3:3: layer 'conv': conv2d requires attribute 'out_channels'$"),
    ("cycle", HEAD + '  %a: f32[1,3,8,8] = relu "a" (%b)\n  %b: f32[1,3,8,8] = relu "b" (%a)\n'
     '  return %b\n}\n', r"^t\.ir:3:3: layer 'a': the graph has a cycle: 'a' -> 'b' -> 'a'$"),
    ("use before definition", HEAD + '  %a: f32[1,3,8,8] = relu "a" (%b)\n  %b: f32[1,3,8,8] = relu "b" (%x)\n'
     '  return %a\n}\n', r"^t\.ir:3:3: layer 'a': uses value %b before the layer that defines it \('b'\)"),
    ("syntax error", HEAD + '  %y: f32[1,3,8,8] = relu "r" (%x\n  return %y\n}\n',
     r"^t\.ir:4:3: unexpected 'return', expected .*','"),
    ("bad character", HEAD + '  %y: f32[1,3,8,8] = relu "r" (%x) $\n  return %y\n}\n',
     r"^t\.ir:3:36: unexpected character '\$'"),
    ("unexpected end", HEAD, r"^t\.ir:3:1: unexpected end of input, expected .*'return'"),
    ("wrong arity", HEAD + '  %y: f32[1,3,8,8] = eltwise "e" (%x)\n  return %y\n}\n',
     r"^t\.ir:3:3: layer 'e': eltwise takes 2..n inputs, got 1$"),
    ("wrong number of outputs", HEAD + '  %a: f32[1,1,8,8], %b: f32[1,2,8,8] = relu "r" (%x)\n  return %a\n}\n',
     r"^t\.ir:3:3: layer 'r': relu has 1 outputs, got 2$"),
    ("module not contiguous", HEAD + '  module "m" {\n    %a: f32[1,3,8,8] = relu "a" (%x)\n  }\n'
     '  %b: f32[1,3,8,8] = relu "b" (%a)\n  module "m" {\n    %c: f32[1,3,8,8] = relu "c" (%b)\n  }\n'
     '  return %c\n}\n', r"^t\.ir:7:3: module 'm' appears twice \(first at line 3:3\)"),
    ("empty module", HEAD + '  module "m" {\n  }\n  return %x\n}\n', r"^t\.ir: module 'm' has no layers$"),
    ("output undefined", HEAD + "  return %nope\n}\n", r"^t\.ir:3:10: use of undefined value %nope$"),
    ("type mismatch", HEAD + '  %y: f32[1,3,4,4] = relu "r" (%x)\n  return %y\n}\n',
     r"^t\.ir:3:3: layer 'r': value %y is typed f32\[1,3,4,4\] but shape inference gives f32\[1,3,8,8\]$"),
    ("bad dtype", HEAD + '  %y: f33[1,3,8,8] = relu "r" (%x)\n  return %y\n}\n',
     r"^t\.ir:3:7: unknown dtype 'f33'"),
    ("op-specific check", HEAD + CONV.replace("kernel = [3, 3]", "kernel = [9, 9]")
     .replace("f32[4,3,3,3]", "f32[4,3,9,9]") + "  return %c\n}\n",
     r"^t\.ir:3:3: layer 'conv': kernel 9x9 does not fit input 8x8"),
    ("bad string escape", HEAD + '  %y: f32[1,3,8,8] = relu "r\\q" (%x)\n  return %y\n}\n',
     r"^t\.ir:3:\d+: bad escape in string"),
    ("inline value count", HEAD + '  %b: f32[1,3,8,8] = scale "s" (%x) [scale: f32[3] = [1.0, 2.0]]\n'
     "  return %b\n}\n", r"^t\.ir:3:\d+: layer 's': param 'scale' of type f32\[3\] needs 3 values, got 2$"),
]


@pytest.mark.parametrize("text,pattern", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_text_names_the_place(text, pattern):
    with pytest.raises(CococError) as e:
        parse_ir(text, "t.ir")
    msg = str(e.value)
    assert "\n" not in msg
    assert __import__("re").search(pattern, msg), msg


def test_at_least_ten_kinds():
    """Ten or more different checks answer: the cases' messages, with the place cut off, differ."""
    msgs = set()
    for _, text, _ in CASES:
        with pytest.raises(CococError) as e:
            parse_ir(text, "t.ir")
        msgs.add(str(e.value).split(": ", 1)[1])
    assert len(msgs) == len(CASES) >= 10, sorted(msgs)


# ---- graphs built in memory (no text, so no line:col) ------------------------------------------

def chain() -> Graph:
    x, y = Value("x"), Value("y")
    return Graph("g", [Layer("input", "x", [], [x], {"shape": [1, 2, 4, 4]}),
                       Layer("relu", "r", [x], [y])], [y])


def test_verify_does_not_change_the_graph():
    g = chain()
    infer_shapes(g)
    g.layers[0].attrs = {"shape": [1, 2, 4, 4]}
    verify(g)
    assert g.layers[0].attrs == {"shape": [1, 2, 4, 4]}  # infer_shapes fills dtype, verify does not


def test_value_from_outside_the_graph():
    g = chain()
    infer_shapes(g)
    g.layers[1].inputs = [Value("ghost", TensorType((1, 2, 4, 4)))]
    with pytest.raises(CococError, match=r"layer 'r': uses value %ghost, which no layer of the graph defines"):
        verify(g)


def test_layer_in_undeclared_module():
    g = chain()
    infer_shapes(g)
    g.layers[1].module = "m"
    with pytest.raises(CococError, match=r"layer 'r': is in module 'm', which the graph does not declare"):
        verify(g)


def test_duplicate_module_declaration():
    g = chain()
    infer_shapes(g)
    g.layers[1].module = "m"
    g.modules = ["m", "m"]
    with pytest.raises(CococError, match="module 'm' is declared twice"):
        verify(g)


def test_infer_shapes_rejects_conflicting_type():
    g = chain()
    g.layers[1].outputs[0].type = TensorType((9,))
    with pytest.raises(CococError, match=r"layer 'r': value %y is typed f32\[9\]"):
        infer_shapes(g)


def test_param_data_must_match_its_type():
    import numpy as np
    x, y = Value("x"), Value("y")
    p = Param(TensorType((2,)), np.zeros(3, np.float32))
    g = Graph("g", [Layer("input", "x", [], [x], {"shape": [1, 2, 4, 4]}),
                    Layer("scale", "s", [x], [y], params={"scale": p})], [y])
    with pytest.raises(CococError, match=r"param 'scale' is typed f32\[2\] but holds an array of shape \[3\]"):
        infer_shapes(g)


def test_no_outputs():
    g = chain()
    infer_shapes(g)
    g.outputs = []
    with pytest.raises(CococError, match="has no outputs"):
        verify(g)
