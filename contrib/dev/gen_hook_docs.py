"""Write docs/hooks.md from the docstrings of registry/hookspecs.py (the docstrings are the reference).

Run: ``python contrib/dev/gen_hook_docs.py`` (``--check`` exits 1 when docs/hooks.md is stale).
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

from registry import hookspecs

HEADER = """# Hook reference

Generated from `registry/hookspecs.py` by `contrib/dev/gen_hook_docs.py`; do not edit by hand.
Plugins implement hooks with `@registry.hookimpl` and register through the `registry.plugins`
entry-point group. An implementation may take any subset of a hook's arguments.

"""


def hook_names() -> list[str]:
    return [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if name.startswith("registry_")]


def render() -> str:
    out = [HEADER, inspect.cleandoc(hookspecs.__doc__ or ""), "\n"]
    source_order = sorted(hook_names(), key=lambda n: inspect.getsourcelines(getattr(hookspecs, n))[1])
    for name in source_order:
        fn = getattr(hookspecs, name)
        opts = getattr(fn, "registry_spec", {}) or {}
        first = " (firstresult: stops at the first non-`None` result)" if opts.get("firstresult") else ""
        sig = str(inspect.signature(fn))
        out.append(f"\n## `{name}`{first}\n\n```python\ndef {name}{sig}\n```\n\n{inspect.cleandoc(fn.__doc__ or '')}\n")
    return "".join(out)


def main() -> int:
    target = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"
    text = render()
    if "--check" in sys.argv:
        return 0 if target.exists() and target.read_text() == text else 1
    target.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
