"""Errors that cross the wire, and how a remote exception is rebuilt locally."""

from __future__ import annotations

import builtins
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .kinds import ErrorKind

__all__ = [
    "index_ranges",
    "SlipstreamError",
    "RemoteError",
    "RemoteTraceback",
    "WorkerCrashed",
    "EndpointTimeout",
    "Overloaded",
    "DeployError",
    "RuntimeUnavailable",
    "MapError",
    "CallCancelled",
    "CallWasCancelled",
    "ErrorInfo",
    "Frame",
    "error_info",
    "rebuild",
]


class SlipstreamError(Exception):
    """Base of the errors Slipstream itself raises."""


class RemoteError(SlipstreamError):
    """An exception raised by endpoint code whose type could not be rebuilt locally."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "") -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.remote_message = message
        self.remote_traceback = traceback_text

    def __reduce__(self) -> tuple[Any, ...]:  # through a nested call: the same error, said once
        return (type(self), (self.type_name, self.remote_message, self.remote_traceback))


class WorkerCrashed(SlipstreamError):
    """The worker running the call died (exit, signal, out of memory); it is replaced."""


class EndpointTimeout(SlipstreamError, TimeoutError):
    """The call ran past the endpoint's timeout; its worker was killed and replaced."""


class Overloaded(SlipstreamError):
    """The endpoint's queue is full; retry later or raise `workers`/the queue size."""


class RuntimeUnavailable(SlipstreamError):
    """No runtime answered at the configured URL."""


class CallCancelled(BaseException):
    """Raised inside a running call whose caller went away (Ctrl-C, a killed process, a closed
    connection, a client-side timeout). A BaseException like KeyboardInterrupt, so that
    `except Exception` in endpoint code does not swallow it: clean up in `finally`. A call
    that has not stopped within the runtime's grace period has its worker replaced."""


class CallWasCancelled(SlipstreamError):
    """`handle.get()` of a spawned call that was cancelled (`handle.cancel()`, or
    `DELETE /v1/calls/{id}`) before it finished."""


class MapError(SlipstreamError):
    """Some items of a `.map` failed; every other item still ran and its result is kept.

    ``errors`` maps each failed item's index to its exception (the same exception a plain call
    would raise); ``results`` is the full list in item order, with None where an item failed.
    The first failure is also the ``__cause__``, so its remote traceback is shown.
    """

    def __init__(self, errors: dict[int, BaseException], results: list[Any]) -> None:
        self.errors = dict(sorted(errors.items()))
        self.results = results
        by_text: dict[str, list[int]] = {}  # the same failure on many items is said once
        for i, e in self.errors.items():
            by_text.setdefault(f"{type(e).__name__}: {e}", []).append(i)
        shown = [f"{_items(idx)}: {text}" for text, idx in list(by_text.items())[:5]]
        more = f"; +{len(by_text) - 5} other failures" if len(by_text) > 5 else ""
        done = self.completed
        kept = (
            f"completed: {_ranges(done)}, their results are in .results"
            if done
            else "none completed"
        )
        super().__init__(
            f"{len(self.errors)} of {len(results)} map items failed ({'; '.join(shown)}{more}); "
            f"{kept}; the failures by index are in .errors"
        )

    @property
    def completed(self) -> list[int]:
        """Indexes of the items whose result came back, in order."""
        return [i for i in range(len(self.results)) if i not in self.errors]

    @property
    def failed(self) -> list[int]:
        """Indexes of the items that failed, in order."""
        return list(self.errors)

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.errors, self.results))


def index_ranges(indexes: list[int], most: int = 6) -> str:
    """Sorted item indexes as ranges: "0-39", "0-3, 7, 9-12"; past `most` ranges, "+N more"."""
    runs: list[tuple[int, int]] = []
    for i in indexes:
        if runs and i == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], i)
        else:
            runs.append((i, i))
    shown = [str(a) if a == b else f"{a}-{b}" for a, b in runs[:most]]
    if len(runs) > most:
        shown.append(f"+{len(runs) - most} more")
    return ", ".join(shown)


def _ranges(indexes: list[int]) -> str:
    """Indexes as "item 3", "items 0-39", "items 0-3, 7, 9-12"."""
    return ("item " if len(indexes) == 1 else "items ") + index_ranges(indexes)


def _items(indexes: list[int]) -> str:
    if len(indexes) == 1:
        return f"item {indexes[0]}"
    listed = ", ".join(map(str, indexes[:5]))
    return f"items {listed}" + (f" and {len(indexes) - 5} more" if len(indexes) > 5 else "")


class DeployError(SlipstreamError):
    """New code was refused by the runtime; the previous generation keeps serving."""

    def __init__(
        self,
        message: str,
        *,
        type: str = "DeployError",
        file: str | None = None,
        line: int | None = None,
        traceback: str = "",
    ) -> None:
        where = f" ({file}:{line})" if file and line else f" ({file})" if file else ""
        super().__init__(f"{type}: {message}{where}")
        self.type = type
        self.message = message
        self.file = file
        self.line = line
        self.traceback = traceback


class RemoteTraceback(Exception):
    """Carries the remote traceback text as the __cause__ of a re-raised exception; `frames`
    are its frames, so that an endpoint that lets a nested call's exception through reports
    the inner endpoint's frames after its own (error_info)."""

    def __init__(self, text: str, frames: list[Frame] | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.frames = list(frames or [])

    def __str__(self) -> str:
        return f"\n\nRemote traceback (most recent call last):\n{self.text}"


@dataclass
class Frame:
    file: str  # project-relative path when the frame is in the user's code
    line: int
    name: str
    code: str = ""
    in_project: bool = False


@dataclass
class ErrorInfo:
    type: str  # qualified: "ValueError", "mypkg.errors.BadPrompt"
    message: str
    traceback: str
    frames: list[Frame] = field(default_factory=list)
    kind: str = (
        ErrorKind.EXCEPTION
    )  # an ErrorKind (a plain string only for a kind this version does not know)
    pickled: bytes | None = None  # the exception itself, when it pickles

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("pickled")
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ErrorInfo:
        frames = [Frame(**f) for f in d.get("frames", [])]
        return cls(
            type=d.get("type", "Error"),
            message=d.get("message", ""),
            traceback=d.get("traceback", ""),
            frames=frames,
            kind=ErrorKind.parse(d.get("kind")),
        )


def _out_of_memory(exc: MemoryError) -> MemoryError:
    """A bare MemoryError says nothing; say what ran out, and the limit when there is one."""
    msg = "the worker ran out of memory"
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
        if limit != resource.RLIM_INFINITY:
            mb = limit // (1024 * 1024)
            msg += f" (its limit is {mb} MB: slipstream serve --worker-memory-mb)"
    except (ImportError, OSError, ValueError):
        pass
    return MemoryError(msg).with_traceback(exc.__traceback__)


def error_info(
    exc: BaseException, relative: Callable[[str], str | None] = lambda f: None
) -> ErrorInfo:
    """Describe exc; relative(filename) gives the project-relative path of the user's files."""
    if isinstance(exc, MemoryError) and type(exc) is MemoryError and not exc.args:
        exc = _out_of_memory(exc)
    frames: list[Frame] = []
    tb_lines: list[str] = []
    for fs in traceback.extract_tb(exc.__traceback__):
        rel = relative(fs.filename)
        in_project = rel is not None
        rel = rel or fs.filename
        if not in_project and "/slipstream/" in fs.filename.replace("\\", "/"):
            continue  # our own plumbing is noise in the user's traceback
        frames.append(Frame(rel, fs.lineno or 0, fs.name, (fs.line or "").strip(), in_project))
    cause = exc.__cause__
    if isinstance(cause, RemoteTraceback):
        frames += cause.frames  # a nested call's exception: the inner endpoint's frames follow
    for fr in frames:
        tb_lines.append(f'  File "{fr.file}", line {fr.line}, in {fr.name}\n')
        if fr.code:
            tb_lines.append(f"    {fr.code}\n")
    cls = type(exc)
    qual = (
        cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    )
    notes = getattr(exc, "__notes__", None)
    if (
        isinstance(notes, list) and _NOTE in notes
    ):  # rebuilt from a nested call: said once, by the caller
        notes.remove(_NOTE)
        if not notes:
            del exc.__notes__
    text = "".join(tb_lines) + "".join(traceback.format_exception_only(cls, exc))
    if isinstance(exc, RemoteError):  # a nested call's error that could not be rebuilt: as it was
        qual, message = exc.type_name, exc.remote_message
        text = "".join(tb_lines) + f"{qual}: {message}\n"
    else:
        message = str(exc)
    pickled = None
    try:
        import cloudpickle

        exc = exc.with_traceback(None)
        pickled = cloudpickle.dumps(_restorable(exc) if not isinstance(exc, RemoteError) else exc)
    except Exception:
        pass
    return ErrorInfo(qual, message, text, frames, pickled=pickled)


_NOTE = "(raised on the Slipstream runtime; remote traceback above)"


class _Restore:
    """Pickles an exception whose class keeps BaseException's own pickling as a call to
    restore_exception: a custom __init__ that takes other arguments than `args` still arrives."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def __reduce__(self) -> tuple[Any, ...]:
        exc = self.exc
        return (restore_exception, (type(exc), exc.args, dict(getattr(exc, "__dict__", {}))))


def _restorable(exc: BaseException) -> Any:
    cls = type(exc)
    default = (
        cls.__reduce_ex__ is BaseException.__reduce_ex__
        and cls.__reduce__ is BaseException.__reduce__
    )
    return _Restore(exc) if default and cls.__getstate__ is object.__getstate__ else exc


def restore_exception(
    cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]
) -> BaseException:
    """The exception rebuilt as pickle would (cls(*args)), else, when its __init__ takes other
    arguments, made without __init__ and given its args and attributes back."""
    try:
        exc = cls(*args)
    except Exception:
        exc = cls.__new__(cls, *args)
    exc.args = args  # what it said on the runtime, whatever __init__ made of them here
    if state:
        try:
            exc.__dict__.update(state)
        except AttributeError:
            pass
    return exc


def rebuild(info: ErrorInfo, local_root: Path | None = None) -> BaseException:
    """The exception to raise locally: the original type where it can be rebuilt."""
    text = info.traceback
    if local_root is not None:
        for fr in info.frames:
            if fr.in_project:
                text = text.replace(f'File "{fr.file}"', f'File "{local_root / fr.file}"')
    exc: BaseException | None = None
    why = ""
    if info.pickled:
        try:
            import pickle

            exc = pickle.loads(info.pickled)
        except Exception as e:  # noqa: BLE001 - any failure: the clear RemoteError below
            exc = None
            why = f"{type(e).__name__}: {e}"
    if exc is None and "." not in info.type:
        cls = getattr(builtins, info.type, None)
        if isinstance(cls, type) and issubclass(cls, BaseException):
            try:
                exc = cls(info.message)
            except Exception:
                exc = None
    if exc is None:
        exc = RemoteError(info.type, info.message, text)
        if why:  # say why it is not the original class, once
            exc.add_note(
                f"(its class {info.type} cannot be rebuilt here: {why}; "
                "catch RemoteError and read .type_name, or make the class importable here)"
            )
    exc.__cause__ = RemoteTraceback(text, info.frames)
    if _NOTE not in (getattr(exc, "__notes__", None) or []):
        exc.add_note(_NOTE)
    return exc


class MissingBlobs(DeployError):
    """A commit named files the runtime lacks (their hashes in .missing): upload, then commit again."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message, type="MissingBlobs")
        self.missing = missing
