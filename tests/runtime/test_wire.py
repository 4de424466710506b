"""The binary frame: large buffers travel out of band, tensors and images survive the trip."""

from __future__ import annotations

import numpy as np
import pytest

from slipstream.protocol import wire


def test_large_arrays_travel_out_of_band_without_copies_on_decode():
    arr = np.arange(1_000_000, dtype=np.float32)
    chunks = wire.dumps({"a": arr})
    assert len(chunks) == 3, "header, pickle, one out-of-band buffer"
    assert chunks[2].nbytes == arr.nbytes
    frame = bytearray(b"".join(chunks))
    back = wire.loads(frame)["a"]
    assert np.array_equal(back, arr)
    assert np.shares_memory(back, np.frombuffer(frame, dtype=np.uint8)), "decoded in place"


def test_small_values_stay_in_band():
    assert len(wire.dumps([1, "two", np.zeros(3)])) == 2


def test_tensors_keep_dtype_and_shape_including_bfloat16():
    torch = pytest.importorskip("torch")
    for dtype in (torch.float32, torch.bfloat16, torch.int64):
        t = (torch.arange(200_000).reshape(400, 500) % 97).to(dtype)
        back = wire.loads(wire.dumps_bytes(t))
        assert back.dtype == dtype and back.shape == t.shape and torch.equal(back, t)


def test_pil_images_round_trip():
    Image = pytest.importorskip("PIL.Image")
    img = Image.new("RGB", (300, 200), (10, 20, 30))
    back = wire.loads(wire.dumps_bytes(img))
    assert back.size == (300, 200) and back.getpixel((5, 5)) == (10, 20, 30)


def test_corrupt_frames_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="magic"):
        wire.loads(b"X" * 40)
    good = wire.dumps_bytes([1, 2, 3])
    with pytest.raises(ValueError, match="truncated"):
        wire.loads(good[:-1])


def test_display_form_is_json_for_curl():
    Image = pytest.importorskip("PIL.Image")
    out = wire.to_display(
        {"img": Image.new("L", (4, 2)), "arr": np.ones(3), "big": np.ones(20_000), "x": object()}
    )
    assert out["img"]["$image"]["width"] == 4
    assert out["arr"] == [1.0, 1.0, 1.0]
    assert out["big"] == {"$array": {"shape": [20000], "dtype": "float64"}}
    assert out["x"]["$repr"].startswith("<object")


def test_records_parse_incrementally():
    r = wire.RecordReader()
    data = wire.json_record(wire.REC_LOG, {"text": "hi"}) + b"".join(
        bytes(c) for c in wire.record(wire.REC_RESULT, b"abc")
    )
    got = []
    for i in range(len(data)):
        got += r.feed(data[i : i + 1])
    assert [(k, bytes(p)) for k, p in got] == [
        (wire.REC_LOG, b'{"text":"hi"}'),
        (wire.REC_RESULT, b"abc"),
    ]
