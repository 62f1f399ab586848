"""The pass manager: pipeline parsing and typed options, errors, instruments, reproducers, docs."""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

import cococ.passes as passes
from cococ.ir.core import CococError, Graph
from cococ.ir.parser import parse_file
from cococ.ir.printer import print_graph
from cococ.passes.manager import PASS_MODULES, PASSES, module_of, register_pass
from cococ.passes.pipeline import format_pass, parse_pipeline, parse_pipeline_text

ROOT = Path(__file__).resolve().parents[2]
BN_NET = ROOT / "examples" / "ir" / "bn_net.ir"


def bn_net() -> Graph:
    return parse_file(BN_NET)


@pytest.fixture
def scratch_passes():
    """Passes registered inside a test are removed afterwards."""
    before = dict(PASSES)
    yield
    PASSES.clear()
    PASSES.update(before)


# ---- parsing ------------------------------------------------------------------------------------

def test_parse_text_forms():
    assert parse_pipeline_text("") == []
    assert parse_pipeline_text(" a , b ") == [("a", {}), ("b", {})]
    assert parse_pipeline_text("a,b{opt=1,flag=true,rates=[0.3,0.5]},c") == [
        ("a", {}), ("b", {"opt": "1", "flag": "true", "rates": ["0.3", "0.5"]}), ("c", {})]
    # MLIR separates options with spaces; a bare name is a flag; quotes keep commas and braces
    assert parse_pipeline_text("p{x=1 y name='a,b{c}' z=[[1,2],[]]}") == [
        ("p", {"x": "1", "y": "true", "name": "a,b{c}", "z": [["1", "2"], []]})]


def test_typed_options():
    (c,) = parse_pipeline("canonicalize{fold_scale=false,drop-dropout=0}")
    assert c.fold_scale is False and c.drop_dropout is False and c.fold_batchnorm is True
    (p,) = parse_pipeline("prune-filters{rates=[0.3,0.5],round_to=4,criterion=l2,rate=1}")
    assert p.rates == (0.3, 0.5) and p.round_to == 4 and p.criterion == "l2"
    assert p.rate == 1.0 and isinstance(p.rate, float)
    (p,) = parse_pipeline("prune-filters{rates=0.25}")  # a scalar where a list goes: one element
    assert p.rates == (0.25,)
    (p,) = parse_pipeline("simd-group{layers=[ip1,ip2]}")
    assert p.layers == ("ip1", "ip2")


@pytest.mark.parametrize("text, message", [
    ("canonicalise", r"unknown pass 'canonicalise' \(did you mean 'canonicalize'\?\); known passes: .*dce"),
    ("nosuchpass", r"unknown pass 'nosuchpass'; known passes: canonicalize, dce"),
    ("canonicalize{fold=1}", r"unknown option 'fold' for pass 'canonicalize' \(options: drop_dropout, "),
    ("canonicalize{fold_scale=maybe}", r"option 'fold_scale' of pass 'canonicalize' must be true or false"),
    ("prune-filters{round_to=2.5}", r"option 'round_to' of pass 'prune-filters' must be an integer, got '2.5'"),
    ("prune-filters{rate=x}", r"must be a number, got 'x'"),
    ("prune-filters{rate=[1]}", r"must be float, got \['1'\]"),
    ("canonicalize{", r"bad pipeline 'canonicalize\{' at column 14: expected '}'"),
    ("a,,b", r"at column 3: expected a pass name, found ','"),
    ("dce dce", r"at column 5: expected ',', found 'd'"),
    ("dce{x=1,x=2}", r"option 'x' given twice"),
    ("dce{x='1}", r"unterminated string"),
])
def test_pipeline_errors(text, message):
    with pytest.raises(CococError, match=message):
        parse_pipeline(text)


def test_format_pass_round_trips():
    for text in ["canonicalize", "canonicalize{fold_scale=false}", "prune-filters{rate=0.5,rates=[0.1,0.2]}",
                 "infer-shapes{reset=true},dce"]:
        ps = parse_pipeline(text)
        assert ",".join(format_pass(p) for p in ps) == text
        assert [vars(p) for p in parse_pipeline(",".join(map(format_pass, ps)))] == [vars(p) for p in ps]


def test_register_pass_checks(scratch_passes):
    with pytest.raises(TypeError, match="kebab-case"):
        @register_pass
        @dataclass(frozen=True)
        class Bad:
            name: ClassVar[str] = "Bad_Name"
            in_place: ClassVar[bool] = True

            def apply(self, graph, ctx):
                return graph

    with pytest.raises(RuntimeError, match="registered twice"):
        @register_pass
        @dataclass(frozen=True)
        class Dup:
            name: ClassVar[str] = "dce"
            in_place: ClassVar[bool] = True

            def apply(self, graph, ctx):
                return graph

    with pytest.raises(TypeError, match="must be a frozen dataclass"):
        @register_pass
        @dataclass
        class Thawed:
            name: ClassVar[str] = "test-thawed"
            in_place: ClassVar[bool] = True

            def apply(self, graph, ctx):
                return graph

    with pytest.raises(TypeError, match="must declare `in_place"):
        @register_pass
        @dataclass(frozen=True)
        class Undeclared:
            name: ClassVar[str] = "test-undeclared"

            def apply(self, graph, ctx):
                return graph

    with pytest.raises(TypeError, match="option 'rates' of pass 'test-listy' is a <class 'list'>: write it as a tuple"):
        @register_pass
        @dataclass(frozen=True)
        class Listy:
            name: ClassVar[str] = "test-listy"
            in_place: ClassVar[bool] = True
            rates: list[float] = ()

            def apply(self, graph, ctx):
                return graph


def test_every_registering_module_is_in_the_lazy_table():
    """A pass lives in passes/<snake_name>.py, or (one that trains) in the driver package
    runtime/compress/, listed by its full module path."""
    listed = {module_of(name) for name in PASS_MODULES}
    for folder in ("passes", "runtime/compress"):
        for path in (ROOT / folder).glob("*.py"):
            if re.search(r"^@register_pass", path.read_text(encoding="utf-8"), re.M):
                module = "cococ." + f"{folder}/{path.stem}".replace("/", ".")
                assert module in listed, f"{folder}/{path.name} registers a pass but is not in PASS_MODULES"
    for name in PASS_MODULES:
        assert passes.get_pass(name).__module__ == module_of(name)
        assert module_of(name).rsplit(".", 1)[-1] == name.replace("-", "_")


def test_every_pass_keeps_the_contract():
    """Frozen, typed tuple options, in_place declared; the ones that say they leave their input
    alone do (checked on a graph with modules, where teacher-student has something to do)."""
    for name, cls in passes.all_passes().items():
        assert cls.__dataclass_params__.frozen, name
        assert isinstance(cls.__dict__.get("in_place"), bool), name
    g = passes.run(bn_net(), "canonicalize")   # one module, block1
    before = print_graph(g, weights="inline")
    for name, cls in passes.all_passes().items():
        if not cls.in_place:
            passes.run(g, name, reproducer=None)
            assert print_graph(g, weights="inline") == before, f"{name} changed the graph it was given"


# ---- running and instruments -------------------------------------------------------------------

class Recorder(passes.PassInstrument):
    def __init__(self):
        self.events = []

    def run_before_pass(self, graph, info):
        self.events.append(("before", info.name, info.index, info.total))

    def run_after_pass(self, graph, info):
        self.events.append(("after", info.name, len(graph.layers)))

    def exit_pipeline(self, graph):
        self.events.append(("exit",))


def test_run_calls_user_instruments_in_order():
    rec = Recorder()
    g = passes.run(bn_net(), "infer-shapes,canonicalize,dce", instruments=[rec])
    assert [l.op for l in g.layers] == ["input", "conv2d", "relu", "max_pool", "flatten", "dense", "softmax"]
    assert rec.events == [("before", "infer-shapes", 1, 3), ("after", "infer-shapes", 10),
                          ("before", "canonicalize", 2, 3), ("after", "canonicalize", 7),
                          ("before", "dce", 3, 3), ("after", "dce", 7), ("exit",)]


def test_run_accepts_pass_objects_and_empty_pipeline():
    from cococ.passes.canonicalize import Canonicalize
    g = passes.run(bn_net(), [Canonicalize(fold_scale=False)])
    assert [l.op for l in g.layers].count("scale") == 1
    assert len(passes.run(bn_net(), "").layers) == 10


def test_dump_ir_modes():
    out = io.StringIO()
    passes.run(bn_net(), "infer-shapes,canonicalize,dce", instruments=[passes.DumpIR("after-all", stream=out)])
    heads = re.findall(r"^// ----- IR (\w+) (\S+) \((\d) of 3\) ----- //$", out.getvalue(), re.M)
    assert heads == [("after", "infer-shapes", "1"), ("after", "canonicalize", "2"), ("after", "dce", "3")]
    assert out.getvalue().count("graph @bn_net {") == 3

    out = io.StringIO()
    passes.run(bn_net(), "infer-shapes,canonicalize,dce",
               instruments=[passes.DumpIR(["before:canonicalize", "after:dce"], stream=out)])
    assert re.findall(r"IR (\w+) (\S+) \(", out.getvalue()) == [("before", "canonicalize"), ("after", "dce")]
    assert "batchnorm" in out.getvalue().split("IR after")[0]

    out = io.StringIO()  # after-change: infer-shapes and dce change nothing in an inferred graph
    passes.run(bn_net(), "infer-shapes,canonicalize,dce", instruments=[passes.DumpIR("after-change", stream=out)])
    assert re.findall(r"IR (\w+) (\S+) \(", out.getvalue()) == [("after", "canonicalize")]

    with pytest.raises(CococError, match="unknown IR dump mode 'after-some'"):
        passes.DumpIR("after-some")
    with pytest.raises(CococError, match="IR dump mode 'after:nope': unknown pass 'nope'"):
        passes.DumpIR("after:nope")


def test_dump_ir_to_directory(tmp_path):
    dump = passes.DumpIR("before:canonicalize,after-all", directory=tmp_path / "dumps")
    passes.run(bn_net(), "infer-shapes,canonicalize,dce", instruments=[dump])
    names = sorted(p.name for p in (tmp_path / "dumps").iterdir())
    assert names == ["001_after_infer-shapes.ir", "002_after_canonicalize.ir", "002_before_canonicalize.ir",
                     "003_after_dce.ir"]
    text = (tmp_path / "dumps" / "002_after_canonicalize.ir").read_text()
    assert text.startswith("// IR after canonicalize (2 of 3) in: infer-shapes,canonicalize,dce\n")
    from cococ.ir.parser import parse_ir
    assert len(parse_ir(text).layers) == 7  # a dump is IR that reads back


def test_pass_timing_table():
    out = io.StringIO()
    timing = passes.PassTiming(stream=out)
    passes.run(bn_net(), "infer-shapes,canonicalize{fold_scale=false}", instruments=[timing])
    assert [spec for spec, _ in timing.rows] == ["infer-shapes", "canonicalize{fold_scale=false}"]
    assert all(s >= 0 for _, s in timing.rows)
    table = out.getvalue()
    assert "pass timing" in table and "canonicalize{fold_scale=false}" in table and "total" in table


# ---- failures and reproducers -------------------------------------------------------------------

@dataclass(frozen=True)
class _Crash:
    name: ClassVar[str] = "test-crash"
    in_place: ClassVar[bool] = True
    after: int = 0

    def apply(self, graph, ctx):
        graph.layers.pop()  # changes the graph before failing: the reproducer must hold the IR before
        raise ZeroDivisionError("boom")


@dataclass(frozen=True)
class _Breaks:
    name: ClassVar[str] = "test-breaks-ir"
    in_place: ClassVar[bool] = True
    layers: tuple[str, ...] = ()

    def apply(self, graph, ctx):
        graph.layers = [l for l in graph.layers if l.op != "relu"]  # readers of relu's output dangle
        return graph


def test_crash_writes_reproducer(tmp_path, scratch_passes):
    register_pass(_Crash)
    with pytest.raises(CococError) as e:
        passes.run(bn_net(), "infer-shapes,test-crash{after=2},dce", reproducer=tmp_path)
    msg = str(e.value)
    repro = tmp_path / "cococ-reproducer-test-crash.ir"
    assert "\n" not in msg
    assert msg == (f"pass 'test-crash' (2 of 3) crashed: ZeroDivisionError: boom; reproducer: {repro} "
                   f"(run: cococ opt {repro} -p 'test-crash{{after=2}},dce')")
    assert isinstance(e.value.__cause__, ZeroDivisionError)
    lines = repro.read_text().splitlines()
    assert lines[0].startswith("// cococ reproducer: pass 'test-crash' (2 of 3) crashed")
    assert lines[1] == "// full pipeline: infer-shapes,test-crash{after=2},dce"
    assert lines[2] == "// RUN: cococ opt %s -p 'test-crash{after=2},dce'"
    g = parse_file(repro)  # the IR before the pass, whole, with its weights in the side-car
    assert len(g.layers) == 10 and g.layers[1].params["weight"].has_data

    from cococ.cli import main  # and it reproduces
    with pytest.raises(CococError, match="crashed: ZeroDivisionError: boom"):
        main(["--debug", "opt", str(repro), "-p", "test-crash{after=2},dce", "--reproducer-dir", str(tmp_path / "r")])


def test_invalid_ir_after_pass_is_caught_by_verify(tmp_path, scratch_passes):
    register_pass(_Breaks)
    with pytest.raises(CococError, match=r"pass 'test-breaks-ir' \(1 of 1\) left invalid IR: .*layer 'pool1'.*"
                                         r"reproducer: .*cococ-reproducer-test-breaks-ir.ir"):
        passes.run(bn_net(), "test-breaks-ir", reproducer=tmp_path)
    assert (tmp_path / "cococ-reproducer-test-breaks-ir.ir").exists()
    g = passes.run(bn_net(), "test-breaks-ir", verify=False, reproducer=None)  # unchecked: goes through
    assert "relu" not in [l.op for l in g.layers]


def test_diagnosed_errors_in_a_pass_write_no_reproducer(tmp_path):
    with pytest.raises(CococError, match=r"prune-filters: 2 rates given, the graph has 1 modules"):
        passes.run(bn_net(), "prune-filters{rates=[0.5,0.5]}", reproducer=tmp_path)
    assert not list(tmp_path.iterdir())


# ---- docs ------------------------------------------------------------------------------------------

def test_docs_cover_every_pass_and_are_current():
    from cococ.passes.docs import render
    text = render()
    for name, cls in passes.all_passes().items():
        assert f"## `{name}`" in text
    assert "| `fold_scale` | `bool` | `true` | fold scale and bias layers" in text
    assert (ROOT / "docs" / "passes.md").read_text(encoding="utf-8") == text, \
        "docs/passes.md is stale: python -m cococ.passes.docs > docs/passes.md"
