"""The protobuf text-format reader: lexical forms Caffe files use, and error positions."""
import math

import pytest

from cococ.frontend.prototxt.textformat import Ident, Message, parse_text
from cococ.ir.core import CococError


def test_scalars_lists_and_nesting():
    m = parse_text("""
        # comment { with braces }
        a: -inf  b: nan c: 1e-4 d: 1. e: .5 f: 1.5f g: 0x1F h: 010 i: -3
        s: "x\\n\\101\\x42" 'single \\'q\\'' t: [1, 2, 3]
        msg { x: 1 } msg: { x: 2 }; ang < y: TRUE_ENUM >,
    """)
    assert math.isinf(m.get_float("a")) and m.get_float("a") < 0
    assert math.isnan(m.get_float("b"))
    assert m.get("c") == 1e-4 and m.get("d") == 1.0 and m.get("e") == 0.5 and m.get("f") == 1.5
    assert m.get("g") == 31 and m.get("h") == 8 and m.get("i") == -3
    assert m.get("s") == "x\nABsingle 'q'"  # adjacent strings concatenate
    assert m.get_ints("t") == [1, 2, 3]
    assert [x.get_int("x") for x in m.get_msgs("msg")] == [1, 2]
    assert isinstance(m.get_msg("ang").get("y"), Ident)
    assert m.get_msg("msg").loc[0] == 5  # the last `msg`


def test_last_optional_wins_and_typed_errors():
    m = parse_text('n: 1\nn: 2\nname: "a"\nflag: true\nbad: "x"\n', "f.prototxt")
    assert m.get_int("n") == 2 and m.get_bool("flag") is True and m.get_str("name") == "a"
    with pytest.raises(CococError, match=r"f.prototxt:5:1: field 'bad' must be an integer"):
        m.get_int("bad")
    with pytest.raises(CococError, match="must be one of"):
        m.get_enum("name", ("X", "Y"))


@pytest.mark.parametrize("text,loc,what", [
    ("layer {\n  name: \"a\"\n", "3:1", "end of file"),
    ("a: }", "1:4", "unexpected '}'"),
    ("layer { name: $ }", "1:15", "unexpected character '$'"),
    ('a: "\\q"', "1:4", "unknown escape"),
    ("a b", "1:3", "unexpected 'b'"),
])
def test_syntax_errors_have_line_col(text, loc, what):
    with pytest.raises(CococError) as e:
        parse_text(text, "net.prototxt")
    assert str(e.value).startswith(f"net.prototxt:{loc}: ")
    assert what in str(e.value) and "\n" not in str(e.value)


def test_to_dict_groups_repeats():
    assert parse_text("a: 1 a: 2 b { c: \"x\" }").to_dict() == {"a": [1, 2], "b": {"c": "x"}}
    assert isinstance(parse_text(""), Message)
