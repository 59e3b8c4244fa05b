"""Id lists decoded a piece at a time: the same ids as a full decode, in 8 bytes each."""

from __future__ import annotations

import array
import json
import tracemalloc
from typing import Any

import orjson
import pytest

from archibald._responses import decode_id_list, decode_json


@pytest.mark.parametrize(
    "body",
    [
        b'{"objectIdFieldName":"OBJECTID","objectIds":[1,2,3]}',
        b'{\n  "objectIdFieldName" : "OBJECTID",\n  "objectIds" : [\n    1,\n    2,\n    3\n  ]\n}',
        b'{"objectIds":[3,1,2],"objectIdFieldName":"FID","exceededTransferLimit":true}',
        b'{"objectIdFieldName":"OBJECTID","objectIds":[]}',
        b'{"objectIdFieldName":"OBJECTID","objectIds":[ ]}',
        b'{"objectIdFieldName":"OBJECTID","objectIds":[-5,0,9223372036854775807]}',
    ],
)
def test_plain_integer_lists_come_as_arrays_equal_to_a_full_decode(body: bytes) -> None:
    decoded = decode_id_list(body)
    assert isinstance(decoded["objectIds"], array.array)
    expected = json.loads(body)
    assert {**decoded, "objectIds": list(decoded["objectIds"])} == expected


@pytest.mark.parametrize(
    "body",
    [
        b'{"objectIds":[1.0,2.0]}',  # floats: read by the caller, which checks them
        b'{"objectIds":["1","2"]}',  # digits in strings, as some servers send
        b'{"objectIds":[true,2]}',  # never taken for id 1
        b'{"objectIds":[18446744073709551616]}',  # beyond 64 bits
        b'{"objectIds":[1,[2]]}',
        b'{"objectIds":null}',
        b'{"objectIdFieldName":"objectIds","objectIds":[1,2]}',  # the name, as a value first
        b'{"error":{"code":400,"message":"Unable to complete operation.","details":[]}}',
        b"[1,2,3]",
        b'{"objectIds":[3],"objectIds":[]}',  # a key given twice: the last one counts
        b'{"objectIds":[],"objectIds":[4]}',
    ],
)
def test_anything_else_is_decoded_as_any_answer(body: bytes) -> None:
    decoded = decode_id_list(body)
    expected = json.loads(body)
    if isinstance(decoded, dict) and isinstance(decoded.get("objectIds"), array.array):
        decoded = {**decoded, "objectIds": list(decoded["objectIds"])}
    assert decoded == expected


def test_not_json_is_refused_as_any_answer_is() -> None:
    trailing = (
        b'{"objectIds":[' + b",".join(b"%d" % i for i in range(12_600)) + b"," + b" " * 2000 + b"]}"
    )
    for body in (b'{"objectIds":[1,2', b"<html>502</html>", b'{"objectIds":[1,,2]}', trailing):
        with pytest.raises(ValueError, match=r"\w"):
            decode_json(body)
        with pytest.raises(ValueError, match=r"\w"):
            decode_id_list(body)


def test_a_million_ids_never_become_a_million_python_ints() -> None:
    """Peak memory of decoding 1,000,000 ids: the array's 8 MB and a piece, not ~45 MB."""
    body = orjson.dumps({"objectIdFieldName": "OBJECTID", "objectIds": list(range(1_000_000))})
    tracemalloc.start()
    try:
        decoded: Any = decode_id_list(body)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert decoded["objectIds"] == array.array("q", range(1_000_000))
    assert peak < 12_000_000, f"{peak / 1e6:.1f} MB"
