"""Write docs/api.md, the API reference, from the docstrings of mmsim's public
modules: each module's docstring, then each public class (with its public methods)
and function, with its signature and docstring.

    python tools/apidoc.py            # rewrite docs/api.md
    python tools/apidoc.py --check    # exit 1 when docs/api.md is out of date
"""

import importlib
import inspect
import os
import pkgutil
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "docs", "api.md")


def _modules():
    import mmsim
    names = ["mmsim"]
    for info in pkgutil.walk_packages(mmsim.__path__, "mmsim."):
        names.append(info.name)
    return sorted(names)


def _public(module):
    """The module's own public classes and functions, in source order."""
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
            continue
        if inspect.isclass(obj) or inspect.isfunction(obj):
            out.append((name, obj))
    return sorted(out, key=lambda item: _line(item[1]))


def _line(obj):
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 0


def _sig(obj):
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def _doc(obj):
    return inspect.cleandoc(obj.__doc__) if obj.__doc__ else "(no docstring)"


def render():
    """The reference as Markdown text."""
    parts = ["# mmsim API reference", "",
             "Generated from the docstrings by `python tools/apidoc.py`; do not edit by "
             "hand.  Modules are listed by name; lower layers never import higher ones "
             "(README, \"What is here\").", ""]
    for name in _modules():
        module = importlib.import_module(name)
        parts += [f"## `{name}`", "", _doc(module), ""]
        for attr, obj in _public(module):
            if inspect.isclass(obj):
                parts += [f"### class `{attr}{_sig(obj)}`", "", _doc(obj), ""]
                for mname, meth in sorted(vars(obj).items(), key=lambda kv: _line(kv[1])):
                    if mname.startswith("_") or not inspect.isfunction(meth):
                        continue
                    first = _doc(meth).split("\n\n")[0].replace("\n", " ")
                    parts.append(f"- `{mname}{_sig(meth)}`: {first}")
                parts.append("")
            else:
                parts += [f"### `{attr}{_sig(obj)}`", "", _doc(obj), ""]
    return "\n".join(parts).rstrip() + "\n"


def main(argv):
    text = render()
    if "--check" in argv:
        with open(OUT) as f:
            if f.read() != text:
                print("docs/api.md is out of date: run python tools/apidoc.py", file=sys.stderr)
                return 1
        return 0
    with open(OUT, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
