"""User output as the runtime keeps and shows it: progress bars collapsed, tails kept.

A `\\r` progress bar (tqdm) rewrites its line many times a second; kept as written, each
rewrite would be a line of the reply's logs and of /v1/logs. `progress_lines` keeps only each
line's last state, led by `\\r`, so a terminal shows one updating line."""

from __future__ import annotations

__all__ = ["progress_lines", "count_lines", "KEEP_LINES", "not_kept_note"]

KEEP_LINES = 10_000  # the tail of a call's output its reply carries (the rest: live logs)


def progress_lines(text: str) -> str:
    """`text` with every `\\r`-rewritten line reduced to its last state ("\\r" + it): e.g.
    "\\r 10%|#  |\\r 90%|## |\\r100%|###|\\n" -> "\\r100%|###|\\n". Windows' "\\r\\n" stays."""
    if "\r" not in text:
        return text
    parts = text.split("\n")  # not splitlines(): it splits at "\r" too
    out = []
    for i, body in enumerate(parts):
        end = "\n" if i < len(parts) - 1 else ""
        if body.endswith("\r") and end:  # "\r\n": a Windows line ending, not a rewrite
            body, end = body[:-1], "\r\n"
        if "\r" in body:
            body = "\r" + next((p for p in reversed(body.split("\r")) if p), "")
        out.append(body + end)
    return "".join(out)


def count_lines(text: str) -> int:
    return text.count("\n")


def not_kept_note(dropped: int) -> str:
    return (
        f"... {dropped:,} earlier lines not kept (the reply carries the last {KEEP_LINES:,}): "
        "follow them live with `slipstream logs`\n"
    )
