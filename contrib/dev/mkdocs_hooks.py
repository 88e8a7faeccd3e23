"""MkDocs hooks (mkdocs.yml ``hooks:``): links from docs/ to the repository's own files.

The pages link to source files with relative paths (``../contrib/nginx/registry-tls.conf``), which
work where the Markdown is read in the repository. MkDocs only knows the files under docs/, so it
would warn about each; here each such link is checked against the checkout (a missing file fails the
strict build, like any broken link) and rewritten to ``repo_url`` when mkdocs.yml sets one, else to
the path as code.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mkdocs.exceptions import PluginError

# [text](../path) or [text](../path#anchor); images and in-site links are MkDocs's own business.
_OUTSIDE = re.compile(r"(?<!!)\[([^\]]+)\]\((\.\./[^)\s#]+)(#[^)\s]*)?\)")


class OutsideLinkError(PluginError):
    """A page links to a repository file that does not exist (a build error, without a traceback)."""


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    docs_dir = Path(os.path.abspath(config["docs_dir"]))
    root = docs_dir.parent
    page_dir = (docs_dir / page.file.src_path).parent
    repo_url = (config.get("repo_url") or "").rstrip("/")
    missing: list[str] = []

    def rewrite(match: re.Match[str]) -> str:
        text, target, anchor = match.group(1), match.group(2), match.group(3) or ""
        path = Path(os.path.normpath(page_dir / target))  # lexically: a symlinked folder stays inside
        try:
            rel = path.relative_to(root)
        except ValueError:
            missing.append(f"{target} (outside the repository)")
            return match.group(0)
        if not path.exists():
            missing.append(target)
            return match.group(0)
        if repo_url:
            kind = "tree" if path.is_dir() else "blob"
            return f"[{text}]({repo_url}/{kind}/main/{rel.as_posix()}{anchor})"
        return text if text.startswith("`") else f"{text} (`{rel.as_posix()}`)"

    out = _OUTSIDE.sub(rewrite, markdown)
    if missing:
        raise OutsideLinkError(f"{page.file.src_path} links to missing repository files: {', '.join(missing)}")
    return out
