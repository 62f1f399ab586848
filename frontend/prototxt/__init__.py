"""Caffe prototxt frontend: protobuf text -> message tree (textformat) -> layer IR (translate)."""
from cococ.frontend.prototxt.textformat import Message, parse_file, parse_text
from cococ.frontend.prototxt.translate import load_prototxt, load_prototxt_text, net_to_graph

__all__ = ["Message", "parse_text", "parse_file", "load_prototxt", "load_prototxt_text", "net_to_graph"]
