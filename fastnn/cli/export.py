"""``fastnn export``: a saved model as an ONNX graph (``fastnn.to_onnx``), its inputs listed."""
import fastnn
from fastnn.interop.onnx_export import to_onnx
from fastnn.cli.common import UsageError


def run_export(args):
    if args.output is None:
        raise UsageError("name the graph's file with --output, e.g. --output model.onnx")
    try:
        model = fastnn.load(args.model)
        proto = to_onnx(model, args.output, opset=args.opset)
    except ImportError as exc:
        raise UsageError(str(exc)) from None
    names = {1: "float", 11: "double", 8: "string"}
    inputs = []
    pre = getattr(model, "preprocessor_", None)
    kinds = {c.name: c.kind for c in pre.columns} if pre is not None else {}
    for value in proto.graph.input:
        elem = names.get(value.type.tensor_type.elem_type, "?")
        note = ": days since 1970-01-01" if kinds.get(value.name) == "date" else ""
        inputs.append(f"{value.name} ({elem}{note})")
    print(f"wrote the ONNX graph to {args.output} (inputs {', '.join(inputs)}; outputs "
          f"{', '.join(o.name for o in proto.graph.output)})")
    return 0
