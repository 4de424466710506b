"""Payload encoding: a binary frame for the SDK, a JSON display form for plain HTTP clients.

The binary frame is pickle protocol 5 with large buffers carried out of band, so numpy arrays,
tensors and images cross the wire without being copied into the pickle stream:

    b"SLP1" | u32 nbuf | u64 len(pickle) | u64 len(buf_i) ... | pickle | buf_0 | buf_1 ...
"""

from __future__ import annotations

import base64
import io
import json
import math
import pickle
import struct
from collections.abc import Iterable
from typing import Any

import cloudpickle

__all__ = [
    "CONTENT_TYPE",
    "dumps",
    "dumps_bytes",
    "loads",
    "frame_length",
    "to_display",
    "json_dumps",
]

CONTENT_TYPE = "application/x-slipstream-pickle"
MAGIC = b"SLP1"
_HEAD = struct.Struct("<4sIQ")
_LEN = struct.Struct("<Q")
INBAND_LIMIT = 64 * 1024  # smaller buffers are cheaper inside the pickle stream


def _rebuild_tensor(array: Any, dtype: str, shape: tuple[int, ...]) -> Any:
    import torch

    t = torch.from_numpy(array)
    if dtype != str(t.dtype).removeprefix("torch."):
        t = t.view(getattr(torch, dtype))
    return t.reshape(shape)


def _rebuild_image(mode: str, size: tuple[int, int], data: Any, info: dict | None = None) -> Any:
    from PIL import Image

    img = Image.frombytes(mode, size, data)
    img.info.update(info or {})
    return img


class _Pickler(cloudpickle.Pickler):
    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        mod = cls.__module__
        if mod == "torch" and cls.__name__ in ("Tensor", "Parameter"):
            return self._reduce_tensor(obj)
        if mod.startswith("PIL.") and hasattr(obj, "tobytes") and hasattr(obj, "mode"):
            if obj.mode in ("1", "L", "P", "RGB", "RGBA", "CMYK", "I", "F", "LA"):
                if obj.mode == "P":
                    return super().reducer_override(obj)
                info = {
                    k: v
                    for k, v in obj.info.items()
                    if isinstance(k, str) and isinstance(v, (str, int, float))
                }
                return _rebuild_image, (
                    obj.mode,
                    obj.size,
                    pickle.PickleBuffer(obj.tobytes()),
                    info,
                )
        return super().reducer_override(obj)

    @staticmethod
    def _reduce_tensor(t: Any) -> Any:
        import torch

        t = t.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        dtype = str(t.dtype).removeprefix("torch.")
        if t.dtype == torch.bfloat16:
            arr = t.view(torch.int16).numpy()
        elif t.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            arr = t.view(torch.uint8).numpy()
        else:
            arr = t.numpy()
        return _rebuild_tensor, (arr, dtype, tuple(t.shape))


def dumps(obj: Any) -> list[bytes | memoryview]:
    """Encode obj as a list of chunks (header, pickle, out-of-band buffers) ready to send."""
    buffers: list[memoryview] = []

    def keep_out_of_band(buf: pickle.PickleBuffer) -> bool:
        try:
            raw = buf.raw()
        except BufferError:  # non-contiguous: let pickle copy it in band
            return True
        if raw.nbytes < INBAND_LIMIT:
            return True
        buffers.append(raw)
        return False

    out = io.BytesIO()
    _Pickler(out, protocol=5, buffer_callback=keep_out_of_band).dump(obj)
    main = out.getbuffer()
    header = bytearray(_HEAD.pack(MAGIC, len(buffers), main.nbytes))
    for b in buffers:
        header += _LEN.pack(b.nbytes)
    return [bytes(header), main, *buffers]


def dumps_bytes(obj: Any) -> bytes:
    return b"".join(dumps(obj))


def frame_length(chunks: Iterable[bytes | memoryview]) -> int:
    return sum(memoryview(c).nbytes for c in chunks)


def loads(data: bytes | bytearray | memoryview) -> Any:
    """Decode a frame made by dumps; buffers are views into data (no copy)."""
    view = memoryview(data)
    if view.nbytes < _HEAD.size:
        raise ValueError("payload too short to be a Slipstream frame")
    magic, nbuf, main_len = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError("payload is not a Slipstream frame (bad magic)")
    pos = _HEAD.size
    lens = []
    for _ in range(nbuf):
        lens.append(_LEN.unpack_from(view, pos)[0])
        pos += _LEN.size
    if pos + main_len + sum(lens) != view.nbytes:
        raise ValueError("Slipstream frame is truncated or has trailing bytes")
    main = view[pos : pos + main_len]
    pos += main_len
    bufs = []
    for n in lens:
        bufs.append(view[pos : pos + n])
        pos += n
    return pickle.loads(main, buffers=bufs)


# --- JSON display form -------------------------------------------------------------------

MAX_JSON_ARRAY = 10_000


def to_display(obj: Any, _depth: int = 0) -> Any:
    """A JSON-able rendering of a result for curl, the dev server and the editor's panel.

    Images become {"$image": {png, width, height}}; arrays and tensors small enough become
    lists, larger ones a summary; anything else unknown becomes {"$repr": ...}.
    """
    if _depth > 20:
        return {"$repr": "..."}
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else {"$float": str(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_display(x, _depth + 1) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_display(v, _depth + 1) for k, v in obj.items()}
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode()}
    mod = type(obj).__module__
    if mod.startswith("PIL.") and hasattr(obj, "save"):
        buf = io.BytesIO()
        obj.save(buf, format="PNG")
        return {
            "$image": {
                "png": base64.b64encode(buf.getvalue()).decode(),
                "width": obj.width,
                "height": obj.height,
            }
        }
    if mod == "torch" and type(obj).__name__ in ("Tensor", "Parameter"):
        obj = obj.detach().cpu().float().numpy() if obj.is_floating_point() else obj.cpu().numpy()
        mod = "numpy"
    if mod == "numpy" and hasattr(obj, "tolist"):
        if getattr(obj, "size", 1) <= MAX_JSON_ARRAY:
            return to_display(obj.tolist(), _depth + 1)
        return {"$array": {"shape": list(obj.shape), "dtype": str(obj.dtype)}}
    if hasattr(obj, "__dataclass_fields__") and not isinstance(obj, type):
        import dataclasses

        return to_display(dataclasses.asdict(obj), _depth + 1)
    if callable(getattr(obj, "model_dump", None)) and not isinstance(obj, type):  # a pydantic model
        try:
            return to_display(obj.model_dump(mode="json"), _depth + 1)
        except Exception:  # noqa: BLE001 - a field pydantic cannot serialise: show the repr
            pass
    import enum

    if isinstance(obj, enum.Enum):
        return to_display(obj.value, _depth + 1)
    return {"$repr": repr(obj)[:2000]}


def json_dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


# --- response records (SDK call responses) --------------------------------------------------
# A call's response body is a sequence of records: u8 kind | u64 length | payload.
REC_LOG, REC_ITEM, REC_RESULT, REC_ERROR, REC_META = 1, 2, 3, 4, 5
_REC = struct.Struct("<BQ")


def record(
    kind: int, payload: bytes | bytearray | memoryview
) -> list[bytes | bytearray | memoryview]:
    return [_REC.pack(kind, memoryview(payload).nbytes), payload]


def json_record(kind: int, obj: Any) -> bytes:
    payload = json_dumps(obj)
    return _REC.pack(kind, len(payload)) + payload


class RecordReader:
    """Incremental parser for a stream of records (feed chunks, take complete records)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: tuple[int, int] | None = None
        self._body: bytearray | None = None
        self._got = 0

    def feed(self, chunk: bytes) -> list[tuple[int, bytearray]]:
        out: list[tuple[int, bytearray]] = []
        view = memoryview(chunk)
        while view.nbytes:
            if self._need is None:
                take = min(_REC.size - len(self._buf), view.nbytes)
                self._buf += view[:take]
                view = view[take:]
                if len(self._buf) == _REC.size:
                    kind, n = _REC.unpack(self._buf)
                    self._buf.clear()
                    self._need, self._body, self._got = (kind, n), bytearray(n), 0
                    if n == 0:
                        out.append((kind, bytearray()))
                        self._need = None
            else:
                kind, n = self._need
                assert self._body is not None
                take = min(n - self._got, view.nbytes)
                self._body[self._got : self._got + take] = view[:take]
                self._got += take
                view = view[take:]
                if self._got == n:
                    out.append((kind, self._body))
                    self._need, self._body = None, None
        return out

    @property
    def pending(self) -> bool:
        return self._need is not None or bool(self._buf)


def parse_records(buf: bytes | bytearray | memoryview) -> list[tuple[int, memoryview]]:
    view = memoryview(buf)
    out, pos = [], 0
    head = _REC
    while pos < view.nbytes:
        kind, n = head.unpack_from(view, pos)
        pos += head.size
        out.append((kind, view[pos : pos + n]))
        pos += n
    return out
