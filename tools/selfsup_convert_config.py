#!/usr/bin/env python3
"""Turns an mmengine `.py` config and its `_base_` chain into one self-contained JSON config.

Run by `selfsup convert-config FILE.py [-o OUT.json]`; usable on its own too:

    python3 selfsup_convert_config.py FILE.py [-o OUT.json] [--keep-keys k1,k2,...]

Only the standard library is used and nothing in a config is executed: the file is parsed with
`ast` and each module-level assignment is evaluated by a small interpreter that knows literals,
`dict(...)`, lists, tuples (written as JSON arrays), names of earlier variables, arithmetic on
numbers, string and list concatenation, f-strings, subscripts, a few builtins (round, int,
float, str, bool, len, min, max, abs, sum, range, list, tuple, sorted) and list
comprehensions. The bases are merged with mmengine 0.8.4's rules: bases in order, a key defined
by two bases is an error; a dict merges into the dict it overrides unless it holds a truthy
`_delete_`; a dict over a value that is not a dict is an error; anything else (lists too)
replaces. `{{_base_.a.b}}` and the variable form `_base_.a.b` read the merged bases, as do the
predefined `{{fileBasename}}`, `{{fileBasenameNoExtension}}`, `{{fileDirname}}` and
`{{fileExtname}}`.

Anything else (imports, functions, Python objects such as `torch.optim.SGD`, sets, `{{$ENV}}`
templates, configs of other packages `mmcls::...`) is an error naming the file, the line and the
expression. Exit status: 0 converted, 2 the config cannot be converted, 1 usage or I/O error.
"""

import argparse
import ast
import json
import math
import os
import re
import sys

BASE_KEY = "_base_"
DELETE_KEY = "_delete_"
BASE_REF_CALL = "__selfsup_base_ref__"
BASE_REF_RE = re.compile(r"\{\{\s*" + BASE_KEY + r"\.([\w\.]+)\s*\}\}")
PREDEFINED_RE = re.compile(
    r"\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)\s*\}\}")
TEMPLATE_RE = re.compile(r"\{\{[^{}]*\}\}")


class ConvertError(Exception):
    """A config that cannot be converted; the message names the file and the line."""


def _restore_refs(text):
    """Writes the `{{_base_.x}}` references back in an expression shown in an error."""
    return re.sub(BASE_REF_CALL + r"\('([\w\.]+)'\)", r"{{_base_.\1}}", text)


def _type_name(value):
    if isinstance(value, dict):
        return "dict"
    if isinstance(value, (list, tuple)):
        return "list" if isinstance(value, list) else "tuple"
    if value is None:
        return "None"
    return type(value).__name__


class Interpreter:
    """Evaluates the expressions of one config file; `env` holds its module-level variables."""

    BUILTINS = ("dict", "list", "tuple", "round", "int", "float", "str", "bool", "len", "min",
                "max", "abs", "sum", "range", "sorted", BASE_REF_CALL)

    def __init__(self, filename, base):
        self.filename = filename
        self.base = base
        self.env = {}
        self.scopes = []  # comprehension variables, innermost last

    def fail(self, node, reason):
        expr = _restore_refs(ast.unparse(node)) if node is not None else ""
        if len(expr) > 120:
            expr = expr[:117] + "..."
        line = getattr(node, "lineno", 0)
        raise ConvertError(f"{self.filename}:{line}: cannot evaluate `{expr}`: {reason}")

    # -- names -----------------------------------------------------------------------------

    def lookup(self, node, name):
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in self.env:
            return self.env[name]
        if name == BASE_KEY:
            if self.base is None:
                self.fail(node, "this file has no _base_")
            return self.base
        self.fail(node, f"name '{name}' is not defined before this line (Python objects such "
                  "as modules, classes and functions cannot be written to JSON)")

    def defined(self, name):
        return (any(name in scope for scope in self.scopes) or name in self.env or
                (name == BASE_KEY and self.base is not None))

    def base_ref(self, node, path):
        if self.base is None:
            self.fail(node, "a {{_base_...}} reference in a file without _base_")
        value = self.base
        walked = BASE_KEY
        for part in path.split("."):
            if isinstance(value, dict) and part in value:
                value = value[part]
            elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                known = ", ".join(map(str, value.keys())) if isinstance(value, dict) else ""
                self.fail(node, f"{walked} has no '{part}'" +
                          (f" (it has: {known})" if known else f" (it is a {_type_name(value)})"))
            walked += "." + part
        return value

    # -- expressions -----------------------------------------------------------------------

    def eval(self, node):
        method = getattr(self, "eval_" + type(node).__name__, None)
        if method is None:
            self.fail(node, f"{type(node).__name__} expressions are not supported in a config "
                      "that becomes JSON")
        value = method(node)
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, "the value is not a finite number (JSON has no infinity or NaN)")
        return value

    def eval_Constant(self, node):
        if node.value is None or isinstance(node.value, (bool, int, float, str)):
            if isinstance(node.value, float) and not math.isfinite(node.value):
                self.fail(node, "JSON has no infinity or NaN")
            return node.value
        self.fail(node, f"a {type(node.value).__name__} constant is not a JSON value")

    def eval_Name(self, node):
        return self.lookup(node, node.id)

    def eval_Attribute(self, node):
        root = node.value
        while isinstance(root, ast.Attribute):
            root = root.value
        if isinstance(root, ast.Name) and not self.defined(root.id):
            self.fail(node, f"name '{root.id}' is not defined before this line (Python objects "
                      "such as modules, classes and functions cannot be written to JSON)")
        value = self.eval(node.value)
        if not isinstance(value, dict):
            self.fail(node, f"attribute '{node.attr}' of a {_type_name(value)} (only dicts are "
                      "read by attribute)")
        if node.attr not in value:
            self.fail(node, f"no key '{node.attr}' (keys: {', '.join(map(str, value))})")
        return value[node.attr]

    def eval_Subscript(self, node):
        value = self.eval(node.value)
        if isinstance(node.slice, ast.Slice):
            parts = [None if p is None else self.eval(p)
                     for p in (node.slice.lower, node.slice.upper, node.slice.step)]
            if not isinstance(value, (list, tuple, str)):
                self.fail(node, f"a slice of a {_type_name(value)}")
            return value[slice(*parts)]
        key = self.eval(node.slice)
        try:
            return value[key]
        except (KeyError, IndexError, TypeError) as e:
            self.fail(node, f"{type(e).__name__}: {e}")

    def eval_List(self, node):
        return self.elements(node.elts)

    def eval_Tuple(self, node):
        return tuple(self.elements(node.elts))

    def elements(self, nodes):
        out = []
        for elt in nodes:
            if isinstance(elt, ast.Starred):
                value = self.eval(elt.value)
                if not isinstance(value, (list, tuple)):
                    self.fail(elt, f"*{_type_name(value)} (only lists and tuples unpack)")
                out.extend(value)
            else:
                out.append(self.eval(elt))
        return out

    def eval_Dict(self, node):
        out = {}
        for key, value in zip(node.keys, node.values):
            if key is None:  # {**other}
                other = self.eval(value)
                if not isinstance(other, dict):
                    self.fail(value, f"** of a {_type_name(other)}")
                out.update(other)
                continue
            k = self.eval(key)
            if not isinstance(k, str):
                self.fail(key, f"a {_type_name(k)} key (JSON keys are strings)")
            out[k] = self.eval(value)
        return out

    def eval_Set(self, node):
        self.fail(node, "a set is not a JSON value (a {{_base_.x}} reference must hold a "
                  "dotted name only)")

    def eval_UnaryOp(self, node):
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if not isinstance(value, (int, float)) or (isinstance(node.op, ast.Invert) and
                                                   not isinstance(value, int)):
            self.fail(node, f"unary operator on a {_type_name(value)}")
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        return ~value

    BINOPS = {
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b,
        ast.FloorDiv: lambda a, b: a // b,
        ast.Mod: lambda a, b: a % b,
        ast.Pow: lambda a, b: a**b,
    }

    def eval_BinOp(self, node):
        left, right = self.eval(node.left), self.eval(node.right)
        op = self.BINOPS.get(type(node.op))
        numbers = all(isinstance(v, (int, float)) for v in (left, right))
        sequences = (type(left) is type(right) and isinstance(left, (str, list, tuple)) and
                     isinstance(node.op, ast.Add))
        repeat = (isinstance(node.op, ast.Mult) and
                  {type(left), type(right)} & {str, list, tuple} and
                  (isinstance(left, int) or isinstance(right, int)) and
                  not isinstance(left, bool) and not isinstance(right, bool))
        if op is None or not (numbers or sequences or repeat):
            self.fail(node, f"operator {type(node.op).__name__} on {_type_name(left)} and "
                      f"{_type_name(right)} (numbers, or + on two strings, lists or tuples)")
        try:
            value = op(left, right)
        except (ArithmeticError, ValueError) as e:
            self.fail(node, str(e))
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(node, "the result is not a finite number")
        return value

    def eval_BoolOp(self, node):
        value = None
        for v in node.values:
            value = self.eval(v)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    COMPARES = {
        ast.Eq: lambda a, b: a == b,
        ast.NotEq: lambda a, b: a != b,
        ast.Lt: lambda a, b: a < b,
        ast.LtE: lambda a, b: a <= b,
        ast.Gt: lambda a, b: a > b,
        ast.GtE: lambda a, b: a >= b,
        ast.In: lambda a, b: a in b,
        ast.NotIn: lambda a, b: a not in b,
        ast.Is: lambda a, b: a is b,
        ast.IsNot: lambda a, b: a is not b,
    }

    def eval_Compare(self, node):
        left = self.eval(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.eval(comparator)
            try:
                if not self.COMPARES[type(op)](left, right):
                    return False
            except TypeError as e:
                self.fail(node, str(e))
            left = right
        return True

    def eval_IfExp(self, node):
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def eval_JoinedStr(self, node):
        out = []
        for part in node.values:
            if isinstance(part, ast.Constant):
                out.append(part.value)
                continue
            value = self.eval(part.value)
            if isinstance(value, (dict, list, tuple)):
                self.fail(part, f"a {_type_name(value)} inside an f-string")
            if part.conversion == ord("r"):
                value = repr(value)
            elif part.conversion == ord("a"):
                value = ascii(value)
            spec = self.eval(part.format_spec) if part.format_spec is not None else ""
            try:
                out.append(format(value, spec))
            except (ValueError, TypeError) as e:
                self.fail(part, str(e))
        return "".join(out)

    def eval_ListComp(self, node):
        out = []
        self.comprehension(node, node.generators, 0, lambda: out.append(self.eval(node.elt)))
        return out

    def comprehension(self, node, generators, i, emit):
        if i == len(generators):
            emit()
            return
        gen = generators[i]
        if gen.is_async:
            self.fail(node, "async comprehension")
        iterable = self.eval(gen.iter)
        if not isinstance(iterable, (list, tuple, str, dict)):
            self.fail(gen.iter, f"iterating over a {_type_name(iterable)}")
        for item in iterable:
            scope = {}
            self.bind(gen.target, item, scope)
            self.scopes.append(scope)
            try:
                if all(self.eval(cond) for cond in gen.ifs):
                    self.comprehension(node, generators, i + 1, emit)
            finally:
                self.scopes.pop()

    def bind(self, target, value, scope):
        if isinstance(target, ast.Name):
            scope[target.id] = value
        elif isinstance(target, (ast.Tuple, ast.List)):
            if not isinstance(value, (list, tuple)) or len(value) != len(target.elts):
                self.fail(target, f"cannot unpack a {_type_name(value)} into {len(target.elts)}")
            for t, v in zip(target.elts, value):
                self.bind(t, v, scope)
        else:
            self.fail(target, "only names are assigned in a config")

    def eval_Call(self, node):
        if not isinstance(node.func, ast.Name) or node.func.id not in self.BUILTINS:
            self.fail(node, "only dict(), list(), tuple(), round(), int(), float(), str(), "
                      "bool(), len(), min(), max(), abs(), sum(), range() and sorted() are "
                      "called in a config that becomes JSON")
        name = node.func.id
        if name in self.env or any(name in s for s in self.scopes):
            self.fail(node, f"'{name}' was redefined in the config and is not callable")
        args = self.elements(node.args)
        kwargs = {}
        for kw in node.keywords:
            if kw.arg is None:
                other = self.eval(kw.value)
                if not isinstance(other, dict):
                    self.fail(kw.value, f"** of a {_type_name(other)}")
                kwargs.update(other)
            else:
                kwargs[kw.arg] = self.eval(kw.value)
        if name == BASE_REF_CALL:
            return self.base_ref(node, args[0])
        if name == "dict":
            if len(args) > 1 or (args and not isinstance(args[0], dict)):
                self.fail(node, "dict() takes keywords, or one dict and keywords")
            out = dict(args[0]) if args else {}
            out.update(kwargs)
            return out
        if kwargs and name != "sorted":
            self.fail(node, f"{name}() with keyword arguments")
        try:
            if name == "list":
                return list(*args)
            if name == "tuple":
                return tuple(*args)
            if name == "range":
                return list(range(*args))
            if name == "sorted":
                if set(kwargs) - {"reverse"}:
                    self.fail(node, "sorted() takes only reverse=")
                return sorted(*args, **kwargs)
            return {"round": round, "int": int, "float": float, "str": str, "bool": bool,
                    "len": len, "min": min, "max": max, "abs": abs, "sum": sum}[name](*args)
        except (TypeError, ValueError, ArithmeticError) as e:
            self.fail(node, str(e))


# -- files and merging ---------------------------------------------------------------------


def merge_into(child, base, where):
    """mmengine's Config._merge_a_into_b(child, base), without changing either."""
    out = dict(base)
    for key, value in child.items():
        if isinstance(value, dict):
            delete = value.get(DELETE_KEY, False)
            if key in out and not delete:
                if not isinstance(out[key], dict):
                    raise ConvertError(
                        f"{where}: '{key}' is a dict here but a {_type_name(out[key])} in the "
                        f"_base_ files; set {DELETE_KEY}=True in it to replace the inherited "
                        "value")
                own = {k: v for k, v in value.items() if k != DELETE_KEY}
                out[key] = merge_into(own, out[key], f"{where} (in '{key}')")
            elif key in out:
                out[key] = {k: v for k, v in value.items() if k != DELETE_KEY}
            else:
                out[key] = value
        else:
            out[key] = value
    return out


PACKAGES = {}  # package name -> its configs folder (--package), for "pkg::path" bases


def _base_files(filename, tree, interp):
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and
                isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id == BASE_KEY):
            value = interp.eval(stmt.value)
            files = [value] if isinstance(value, str) else value
            if not isinstance(files, (list, tuple)) or not all(isinstance(f, str) for f in files):
                interp.fail(stmt.value, "_base_ must be a file name or a list of file names")
            return stmt, list(files)
    return None, []


def _check_whole_references(filename, tree):
    """A {{_base_.x}} must be a whole value, as in mmengine: it substitutes a placeholder
    string that is replaced after the file ran, so an expression on it would compute with
    that string (the variable form _base_.x is evaluated in place and may be computed with)."""
    whole = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            whole.add(id(node.value))
        elif isinstance(node, (ast.List, ast.Tuple)):
            whole.update(id(e) for e in node.elts)
        elif isinstance(node, ast.Dict):
            whole.update(id(v) for v in node.values)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and
              node.func.id == "dict"):
            whole.update(id(k.value) for k in node.keywords if k.arg is not None)
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and
                node.func.id == BASE_REF_CALL and id(node) not in whole):
            ref = _restore_refs(ast.unparse(node))
            raise ConvertError(
                f"{filename}:{node.lineno}: {ref} must be a whole value (mmengine puts a "
                "placeholder string there and substitutes it after the file ran, so an "
                f"expression on it is wrong); compute with {ref[2:-2]} instead")


def load(filename, stack=()):
    """The merged config dict of `filename` (its bases first)."""
    filename = os.path.abspath(filename)
    if filename in stack:
        chain = " -> ".join(list(stack) + [filename])
        raise ConvertError(f"{filename}: _base_ files include each other: {chain}")
    try:
        with open(filename, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        where = f" (a _base_ of {stack[-1]})" if stack else ""
        raise ConvertError(f"{filename}: cannot read{where}: {e.strerror}") from None
    if not filename.endswith(".py"):
        raise ConvertError(f"{filename}: only .py configs are converted (a JSON _base_ is "
                           "read by selfsup directly)")

    name = os.path.basename(filename)
    predefined = {
        "fileDirname": os.path.dirname(filename),
        "fileBasename": name,
        "fileBasenameNoExtension": os.path.splitext(name)[0],
        "fileExtname": os.path.splitext(name)[1],
    }
    text = PREDEFINED_RE.sub(lambda m: predefined[m.group(1)], text)
    text = BASE_REF_RE.sub(lambda m: f"{BASE_REF_CALL}('{m.group(1)}')", text)
    leftover = TEMPLATE_RE.search(text)
    if leftover:
        line = text.count("\n", 0, leftover.start()) + 1
        raise ConvertError(f"{filename}:{line}: cannot convert the template "
                           f"`{leftover.group(0)}` (only {{{{_base_.x}}}} and the file-name "
                           "variables are substituted; not environment variables)")
    try:
        tree = ast.parse(text, filename=filename)
    except SyntaxError as e:
        raise ConvertError(f"{filename}:{e.lineno}: syntax error: {e.msg}") from None

    _check_whole_references(filename, tree)
    interp = Interpreter(filename, None)
    base_stmt, files = _base_files(filename, tree, interp)
    base = None
    if base_stmt is not None:
        base = {}
        owner = {}
        for f in files:
            if "::" in f:
                package, _, rel = f.partition("::")
                if package not in PACKAGES:
                    interp.fail(base_stmt.value, f"'{f}' is a config of the package '{package}':"
                                f" name its configs folder with --package {package}=DIR")
                path = os.path.join(PACKAGES[package], rel)
            else:
                path = os.path.join(os.path.dirname(filename), f)
            cfg = load(path, stack + (filename,))
            for key in cfg:
                if key in base:
                    raise ConvertError(
                        f"{filename}:{base_stmt.lineno}: _base_ files {owner[key]} and {f} both "
                        f"define '{key}' (mmengine refuses duplicate keys among bases)")
                owner[key] = f
            base.update(cfg)
        interp.base = base

    for stmt in tree.body:
        if stmt is base_stmt:
            continue
        if isinstance(stmt, ast.Assign):
            value = interp.eval(stmt.value)
            for target in stmt.targets:
                if isinstance(target, ast.Name) and target.id == BASE_KEY:
                    interp.fail(stmt, "_base_ is assigned twice")
                if not isinstance(target, (ast.Name, ast.Tuple, ast.List)):
                    interp.fail(stmt, "only names are assigned in a config (not attributes or "
                                "items)")
                interp.bind(target, value, interp.env)
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
            if stmt.value is not None:
                interp.env[stmt.target.id] = interp.eval(stmt.value)
        elif isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
            continue  # a docstring or a bare constant
        elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
            interp.fail(stmt, "imports are not supported (a config that becomes JSON holds "
                        "values only)")
        else:
            interp.fail(stmt, f"{type(stmt).__name__} statements are not supported in a config")

    own = {k: v for k, v in interp.env.items() if not k.startswith("__")}
    return merge_into(own, base, filename) if base is not None else own


def to_json(value, path):
    """Plain JSON values: tuples become lists, `_delete_` keys go."""
    if isinstance(value, dict):
        return {k: to_json(v, f"{path}.{k}" if path else k)
                for k, v in value.items() if k != DELETE_KEY}
    if isinstance(value, (list, tuple)):
        return [to_json(v, f"{path}.{i}") for i, v in enumerate(value)]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConvertError(f"{path}: {value} is not a JSON number")
        return value
    raise ConvertError(f"{path}: a {_type_name(value)} is not a JSON value")


def convert(filename, keep_keys=None):
    """(the JSON text, the top-level names left out because they are not in `keep_keys`)."""
    cfg = load(filename)
    dropped = []
    if keep_keys is not None:
        dropped = [k for k in cfg if k not in keep_keys]
        cfg = {k: v for k, v in cfg.items() if k in keep_keys}
    return json.dumps(to_json(cfg, ""), indent=4) + "\n", dropped


def main(argv):
    parser = argparse.ArgumentParser(
        prog="selfsup convert-config",
        description="Turns an mmengine .py config and its _base_ chain into one JSON config.")
    parser.add_argument("config", help="the .py config")
    parser.add_argument("-o", "--output", help="the JSON file to write (default: stdout)")
    parser.add_argument("--keep-keys", help="comma-separated top-level keys to keep; other "
                        "module-level variables (data_root, train_pipeline, ...) are left out "
                        "and named on stderr")
    parser.add_argument("--package", action="append", default=[], metavar="NAME=DIR",
                        help="where the configs of package NAME are, for _base_ files written "
                        "'NAME::path' (e.g. mmcls=/path/to/mmcls/configs)")
    args = parser.parse_args(argv)
    for spec in args.package:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            parser.error(f"--package {spec}: expected NAME=DIR")
        PACKAGES[name] = folder
    keep = None if args.keep_keys is None else set(filter(None, args.keep_keys.split(",")))
    try:
        text, dropped = convert(args.config, keep)
    except ConvertError as e:
        print(f"selfsup convert-config: {e}", file=sys.stderr)
        return 2
    except RecursionError:
        print(f"selfsup convert-config: {args.config}: nested too deeply", file=sys.stderr)
        return 2
    if dropped:
        print(f"note: {args.config}: left out module-level variables that are not selfsup "
              f"config keys (their values are already substituted where used): "
              f"{', '.join(dropped)}", file=sys.stderr)
    if args.output:
        try:
            tmp = args.output + ".tmp"
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(tmp, args.output)
        except OSError as e:
            print(f"selfsup convert-config: {args.output}: cannot write: {e.strerror}",
                  file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
