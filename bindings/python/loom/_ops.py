"""Operator functions generated at import time from the registry's metadata
(MXNet's approach): one function per registered op, with a signature and a
docstring built from the op's inputs, parameters and documentation."""
import inspect
import types


def _doc(op):
    lines = [op["doc"], "", "Inputs: %s%s." % (", ".join(op["inputs"]) or "none",
                                                " (one or more)" if op["variadic"] else "")]
    if op["params"]:
        lines += ["", "Parameters", "----------"]
        for p in op["params"]:
            default = "required" if p["required"] else "default %s" % (p["default"] or "''")
            choices = " One of: %s." % ", ".join(p["choices"]) if p["choices"] else ""
            lines.append("%s : %s (%s)" % (p["name"], p["type"], default))
            lines.append("    %s%s" % (p["doc"], choices))
    return "\n".join(lines)


def _signature(op, inputs_kind, extra):
    P = inspect.Parameter
    params = []
    if op["variadic"]:
        params.append(P(op["inputs"][0] if op["inputs"] else "data", P.VAR_POSITIONAL))
    else:
        params += [P(n, P.POSITIONAL_OR_KEYWORD, default=None) for n in op["inputs"]]
    for p in op["params"]:
        params.append(P(p["name"], P.KEYWORD_ONLY, default=P.empty if p["required"] else None))
    params += [P(n, P.KEYWORD_ONLY, default=None) for n in extra]
    return inspect.Signature(params)


def _split(op, args, kwargs):
    """Inputs (positional, or by input name) and parameters from a call."""
    if op["variadic"]:
        return list(args), kwargs
    names = op["inputs"]
    if len(args) > len(names):
        raise TypeError("%s takes at most %d inputs (%s), got %d" % (op["name"], len(names), ", ".join(names), len(args)))
    inputs = list(args)
    for n in names[len(args):]:
        if n in kwargs:
            v = kwargs.pop(n)
            if v is not None:
                if len(inputs) != names.index(n):
                    raise TypeError("%s: input %s given but an earlier input is missing" % (op["name"], n))
                inputs.append(v)
    return inputs, kwargs


def make_nd_module(ops, invoke, ndarray_type):
    mod = types.ModuleType("loom.nd", "Imperative operators, generated from the native registry.")

    def make(op):
        def fn(*args, out=None, **kwargs):
            inputs, params = _split(op, args, kwargs)
            return invoke(op["name"], inputs, params, out)
        fn.__name__ = fn.__qualname__ = op["name"]
        fn.__doc__ = _doc(op)
        fn.__signature__ = _signature(op, ndarray_type, ["out"])
        return fn

    for op in ops:
        setattr(mod, op["name"], make(op))
    return mod


def make_sym_module(ops, symbol_type):
    mod = types.ModuleType("loom.sym", "Symbolic operators, generated from the native registry.")

    def make(op):
        def fn(*args, name=None, **kwargs):
            if op["variadic"]:
                inputs, params = list(args), kwargs
                named = None
            else:
                named = {}
                for n, a in zip(op["inputs"], args):
                    named[n] = a
                for n in op["inputs"]:
                    if n in kwargs:
                        v = kwargs.pop(n)
                        if v is not None:
                            named[n] = v
                params = kwargs
                inputs = None
            return symbol_type.create(op["name"], name, inputs, named, params)
        fn.__name__ = fn.__qualname__ = op["name"]
        fn.__doc__ = _doc(op)
        fn.__signature__ = _signature(op, symbol_type, ["name"])
        return fn

    for op in ops:
        setattr(mod, op["name"], make(op))
    mod.Variable = symbol_type.variable
    mod.Group = symbol_type.group
    return mod
