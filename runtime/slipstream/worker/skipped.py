"""Say so when user code fails on a path the sync left out.

The SDK sends the paths a sync skipped with the rule that did (".gitignore:3 'data/'",
"[sync] exclude", "a virtualenv (pyvenv.cfg)"...); the runtime passes them to workers with
their code. A FileNotFoundError on one of those paths, or a ModuleNotFoundError for a module
that lies in one, gets that rule and how to sync the path added to its message.
"""

from __future__ import annotations

from collections.abc import Callable


def skip_for(rel: str, skipped: dict[str, str]) -> tuple[str, str] | None:
    """(the skipped path or folder holding rel, its rule), or None when the sync sent rel."""
    rel = rel.strip("/")
    if rel in skipped:
        return rel, skipped[rel]
    parts = rel.split("/")
    for i in range(len(parts) - 1, 0, -1):
        folder = "/".join(parts[:i]) + "/"
        if folder in skipped:
            return folder, skipped[folder]
    if rel + "/" in skipped:
        return rel + "/", skipped[rel + "/"]
    return None


def _how(path: str, why: str) -> str:
    if "[sync] include" in why or "[sync] exclude" in why or "limit" in why:
        return ""  # the rule says what to do
    pattern = f"{path}*" if path.endswith("/") else path
    return f'; to sync it add [sync] include = ["{pattern}"] to slipstream.toml'


def note(
    exc: BaseException,
    skipped: dict[str, str],
    relative: Callable[[str], str | None],
    paths: list[str],
) -> BaseException | None:
    """exc again with the sync's rule in its message, when it failed on a skipped path; else None.
    relative: a file's project-relative path when it lies in this process's code folder."""
    if not skipped:
        return None
    hit: tuple[str, str] | None = None
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        dotted = exc.name.replace(".", "/")
        for base in paths or [""]:
            target = f"{base}/{dotted}" if base else dotted
            for cand in (target + ".py", target + "/__init__.py", target):
                hit = skip_for(cand, skipped)
                if hit:
                    break
            if hit:
                break
    elif isinstance(exc, FileNotFoundError) and isinstance(exc.filename, str):
        rel = relative(exc.filename)
        if rel is None and not exc.filename.startswith("/"):
            rel = exc.filename.removeprefix("./")  # opened relative to the working folder
        hit = skip_for(rel, skipped) if rel else None
    if hit is None:
        return None
    path, why = hit
    text = f"{path} is not on the runtime: the sync left it out ({why}){_how(path, why)}"
    new: BaseException
    if isinstance(exc, ModuleNotFoundError):
        new = ModuleNotFoundError(f"{exc.msg}. {text}", name=exc.name, path=exc.path)
    else:
        assert isinstance(exc, FileNotFoundError)
        new = type(exc)(exc.errno, f"{exc.strerror}: {exc.filename!r}. {text}")
    new.__traceback__ = exc.__traceback__
    new.__cause__, new.__context__ = exc.__cause__, exc.__context__
    return new
