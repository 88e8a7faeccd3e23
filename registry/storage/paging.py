"""A page of a directory in name order, from an object store's delimited listing in key order.

Object stores (S3's ``ListObjectsV2``, Azure's ``List Blobs``, with delimiter ``/``) list a
directory's children as keys: a file as ``name``, a directory as the common prefix ``name/``, sorted
by key. That is not name order: ``/`` sorts after ``-`` and ``.``, so the directory ``a`` (key
``a/``) comes after ``a-b`` and ``a.b`` although the name ``a`` sorts first. Only a directory whose
name is a proper start of another name followed by ``-`` or ``.`` is out of place, and only later
in the listing, never earlier.

:func:`delimited_page` turns such a listing into :meth:`StorageDriver.list_page`'s answer with a
bounded amount of work: it reads entries until the page is full plus one, then asks ``is_dir`` about
the few names that could still be out of place. Those are the starts of the last key read that end
before a ``-`` or ``.`` (any name after the last key read yet sorting before a name read must be one),
so a page costs its listing call(s) plus at most one check per ``-`` or ``.`` in one name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


def delimited_page(
    entries: Iterable[str],
    is_dir: Callable[[str], bool],
    after: str | None,
    limit: int,
    keep: Callable[[str], bool] = bool,
) -> tuple[list[str], bool, bool]:
    """One page of names from ``entries``, a directory's children in key order (``name/`` for a
    directory), read lazily and starting anywhere at or before the first name after ``after``
    (``StartAfter=after`` does). ``is_dir(name)`` tells whether a directory of that name exists;
    ``keep(name)`` whether a name is shown (a driver hides its own keys).

    Returns ``(names, more, any_entry)``: at most ``limit`` names after ``after`` in name order,
    whether more follow, and whether ``entries`` gave anything at all (hidden or not: the directory
    exists).
    """
    found: set[str] = set()
    last = None
    exhausted = True
    for entry in entries:
        last = entry
        name = entry[:-1] if entry.endswith("/") else entry
        if name and keep(name) and (after is None or name > after):
            found.add(name)
            if len(found) > limit:
                exhausted = False
                break
    if not exhausted and last is not None:
        # Unread keys sort after `last`; one of them sorts before a name read only if it is a
        # directory named by a start of `last` that ends before a character below "/".
        for i in range(1, len(last)):
            if last[i] < "/":
                candidate = last[:i]
                if candidate in found or not keep(candidate) or (after is not None and candidate <= after):
                    continue
                if is_dir(candidate):
                    found.add(candidate)
    names = sorted(found)
    return names[:limit], len(names) > limit, last is not None
