"""Pruning objectives in Wootz's format (Figure 3b), extended for co-design.

    min ModelSize constraint Accuracy > 0.8
    min Cycles[arm-m4] constraint Accuracy >= 0.95 and ModelSize < 200K
    min Cycles[arm-m4, int8] constraint Accuracy >= 0.9
    max Accuracy constraint MACs <= 2M

Metrics: ModelSize (parameters), MACs, Accuracy (test accuracy, 0..1), and the measured
ones neither paper has: Cycles[TARGET] (estimated cycles on an emulated target, arm-m4) and
Latency[TARGET] (wall seconds, x86). Cycles[TARGET, int8|q15] builds each candidate quantized,
as `cococ build --quantize` would deploy it: a float build of a network that only fits the part
in int8 would fail every candidate. Numbers take K/M/G suffixes (powers of 1000).
"""
from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field

from lark import Lark, Transformer, UnexpectedInput

from cococ.ir.core import CococError
from cococ.ir.target import get_target

GRAMMAR = r"""
start: DIRECTION metric ("constraint" constraint ("and" constraint)*)?
constraint: metric CMP number
metric: METRIC ("[" TARGET ("," QUANT)? "]")?
number: SIGNED_NUMBER SUFFIX?
DIRECTION: "min" | "max"
METRIC: "ModelSize" | "MACs" | "Accuracy" | "Cycles" | "Latency"
TARGET: /[A-Za-z0-9_\-]+/
QUANT: "int8" | "q15"
CMP: "<=" | ">=" | "<" | ">"
SUFFIX: "K" | "M" | "G"
%import common.SIGNED_NUMBER
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr")
_CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_SCALE = {"K": 1e3, "M": 1e6, "G": 1e9}
MEASURED = ("Cycles", "Latency")   # metrics that need a build of the candidate
DEFINITIONS = {
    "ModelSize": "parameters of the pruned network (the ops' cost functions)",
    "MACs": "multiply-accumulates of one inference (the ops' cost functions)",
    "Accuracy": "top-1 accuracy on the data set's test split after fine-tuning",
    "Cycles": "estimated cycles of one inference in the emulator, built for",
    "Latency": "median wall seconds of 10 inferences, built for",
}


@dataclass(frozen=True)
class Metric:
    name: str
    target: str | None = None
    quantize: str | None = None     # Cycles[arm-m4, int8]: candidates built with --quantize int8

    def __str__(self) -> str:
        if self.target is None:
            return self.name
        return f"{self.name}[{self.target}, {self.quantize}]" if self.quantize else f"{self.name}[{self.target}]"

    @property
    def measured(self) -> bool:
        return self.name in MEASURED

    @property
    def definition(self) -> str:
        """What a value of this metric means: a run records it, and `--resume` refuses a run whose
        recorded values meant something else (another target's description, another definition)."""
        text = DEFINITIONS[self.name]
        if self.target is None:
            return text
        text = f"{text} {json.dumps(get_target(self.target).facts(), sort_keys=True)}"
        return f"{text}, quantized {self.quantize} (random-input calibration)" if self.quantize else text


@dataclass(frozen=True)
class Constraint:
    metric: Metric
    op: str
    value: float

    def holds(self, metrics: dict[str, float]) -> bool:
        return _CMP[self.op](metrics[str(self.metric)], self.value)

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class Objective:
    direction: str                 # min | max
    metric: Metric
    constraints: tuple[Constraint, ...] = field(default_factory=tuple)

    def satisfied(self, metrics: dict[str, float]) -> bool:
        return all(c.holds(metrics) for c in self.constraints)

    def better(self, a: float, b: float) -> bool:
        return a < b if self.direction == "min" else a > b

    def metrics(self) -> list[Metric]:
        out = [self.metric] + [c.metric for c in self.constraints]
        return list(dict.fromkeys(out))

    def __str__(self) -> str:
        s = f"{self.direction} {self.metric}"
        return s + (" constraint " + " and ".join(map(str, self.constraints)) if self.constraints else "")


class _Build(Transformer):
    def start(self, items):
        return Objective(str(items[0]), items[1], tuple(items[2:]))

    def constraint(self, items):
        return Constraint(items[0], str(items[1]), items[2])

    def metric(self, items):
        name = str(items[0])
        target = str(items[1]) if len(items) > 1 else None
        quantize = str(items[2]) if len(items) > 2 else None
        if name in MEASURED and target is None:
            raise CococError(f"metric {name} needs a target, e.g. {name}[{'arm-m4' if name == 'Cycles' else 'x86'}]")
        if name not in MEASURED and target is not None:
            raise CococError(f"metric {name} takes no target (got {name}[{target}])")
        if target is not None:
            mcu = get_target(target).is_mcu       # an unknown target: refused here, before any work
            if name == "Cycles" and not mcu:
                raise CococError(f"Cycles[{target}]: cycles are counted on an emulated microcontroller "
                                 f"(e.g. Cycles[arm-m4]); use Latency[{target}]")
            if name == "Latency" and mcu:
                raise CococError(f"Latency[{target}]: {target} is emulated, its time is counted in cycles; "
                                 f"use Cycles[{target}]")
            if quantize is not None and name != "Cycles":
                raise CococError(f"{name}[{target}, {quantize}]: only the microcontroller runs quantized "
                                 f"(Cycles[arm-m4, {quantize}]); {target} runs float")
        return Metric(name, target, quantize)

    def number(self, items):
        v = float(items[0])
        return v * _SCALE[str(items[1])] if len(items) > 1 else v


def parse_objective(text: str) -> Objective:
    try:
        return _Build().transform(_PARSER.parse(text))
    except UnexpectedInput as e:
        raise CococError(f"objective '{text}': syntax error at column {e.column}: expected e.g. "
                         "'min ModelSize constraint Accuracy >= 0.95' (metrics: ModelSize, MACs, Accuracy, "
                         "Cycles[arm-m4], Cycles[arm-m4, int8], Latency[x86])") from None
    except Exception as e:  # lark wraps errors raised in the transformer
        inner = getattr(e, "orig_exc", e)
        if isinstance(inner, CococError):
            raise CococError(f"objective '{text}': {inner.message}") from None
        raise
