"""Protocol framing and the agent's behaviour on malformed, oversized and fuzzed input."""

from __future__ import annotations

import base64
import hashlib
import io
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from device_agents import protocol
from device_agents.service import Agent
from device_agents.transports import serve_stream
from tests.support.models import conv_relu_onnx


def serve(lines: list[bytes], max_bytes: int = 1 << 20) -> list[dict]:
    """Feed raw lines to a real Agent through the stream server; return its replies."""
    out = io.BytesIO()
    serve_stream(Agent(), io.BytesIO(b"".join(lines)), out.write, max_bytes)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def req(op: str, rid: int = 1, **fields) -> bytes:
    return protocol.encode({"v": 1, "id": rid, "op": op, **fields})


def test_read_line_bounds_and_resyncs() -> None:
    stream = io.BytesIO(b"a" * 50 + b"\nok\n")
    with pytest.raises(protocol.MessageTooLarge):
        protocol.read_line(stream, 10)
    assert protocol.read_line(stream, 10) == b"ok"
    assert protocol.read_line(stream, 10) is None


def test_round_trip_hello_and_fingerprint() -> None:
    replies = serve([req("hello", 1), req("fingerprint", 2)])
    assert [r["id"] for r in replies] == [1, 2]
    assert all(r["ok"] and r["v"] == 1 for r in replies)
    assert replies[0]["result"]["protocol_version"] == 1
    assert "onnxruntime" in replies[0]["result"]["runtimes"]
    fp = replies[1]["result"]
    for key in ("cpu_model", "machine", "cores_logical", "os", "python", "runtimes"):
        assert key in fp


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"not json", "bad_json"),
        (b"[1, 2]", "bad_request"),
        (b'{"v": 2, "id": 3, "op": "hello"}', "bad_version"),
        (b'{"v": 1, "id": 4}', "bad_request"),
        (b'{"v": 1, "id": 5, "op": "format_disk"}', "unknown_op"),
        (b'{"v": 1, "id": 6, "op": "measure"}', "bad_request"),
        (b'{"v": 1, "id": 7, "op": "measure", "model": {"data_b64": "***"}}', "bad_request"),
        (b'{"v": 1, "id": 8, "op": "measure", "model": {"sha256": "ab"}}', "unknown_model"),
        (
            b'{"v": 1, "id": 9, "op": "measure", "repeats": 0, "model": {"sha256": "ab"}}',
            "bad_request",
        ),
        (
            b'{"v": 1, "id": 10, "op": "measure", "core": 999, "model": {"sha256": "ab"}}',
            "bad_core",
        ),
        (b'{"v": 1, "id": 11, "op": "measure", "model": {"data_b64": "AAAA"}}', "bad_model"),
        (b'{"v": 1, "id": 12, "op": "measure", "model": {"path": "/etc/passwd"}}', "bad_request"),
    ],
)
def test_malformed_requests_get_errors_and_agent_keeps_serving(line: bytes, code: str) -> None:
    replies = serve([line + b"\n", req("hello", 99)])
    assert len(replies) == 2
    assert replies[0]["ok"] is False and replies[0]["error"]["code"] == code
    assert replies[0]["error"]["message"]
    assert replies[1]["ok"] is True and replies[1]["id"] == 99


def test_oversized_message_is_refused_and_stream_stays_in_sync() -> None:
    big = req("hello", 1, padding="x" * 5000)
    replies = serve([big, req("hello", 2)], max_bytes=1000)
    assert replies[0]["error"]["code"] == "message_too_large"
    assert replies[1]["ok"] and replies[1]["id"] == 2


def test_measure_returns_raw_samples_with_settings() -> None:
    model = conv_relu_onnx()
    data = base64.b64encode(model).decode()
    replies = serve([req("measure", 1, model={"data_b64": data}, warmup=2, repeats=7)])
    result = replies[0]["result"]
    assert len(result["samples_ms"]) == 7
    assert all(s > 0 for s in result["samples_ms"])
    assert result["settings"]["threads"] == 1
    assert result["settings"]["affinity"] == [result["settings"]["core"]]
    assert result["runtime"]["name"] == "onnxruntime"
    assert result["fingerprint"]["core"] == result["settings"]["core"]


def test_min_time_ms_adds_runs_to_a_fast_model_until_they_add_up() -> None:
    data = base64.b64encode(conv_relu_onnx(size=8)).decode()
    replies = serve(
        [
            req("measure", 1, model={"data_b64": data}, warmup=1, repeats=3, min_time_ms=20),
            req("measure", 2, model={"data_b64": data}, warmup=1, repeats=3),
            req("measure", 3, model={"data_b64": data}, repeats=3, min_time_ms=-1),
        ]
    )
    more, exact, bad = replies[0]["result"], replies[1]["result"], replies[2]
    assert sum(more["samples_ms"]) >= 20 and len(more["samples_ms"]) > 3
    assert more["settings"]["min_time_ms"] == 20 and not more["truncated"]
    assert len(exact["samples_ms"]) == 3 and exact["settings"]["min_time_ms"] == 0
    assert bad["ok"] is False and bad["error"]["code"] == "bad_request"


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=300).filter(lambda b: b"\n" not in b), min_size=1, max_size=5))
def test_fuzzed_lines_each_get_one_reply_and_agent_survives(lines: list[bytes]) -> None:
    nonblank = [line for line in lines if line.strip()]
    replies = serve([line + b"\n" for line in lines] + [req("hello", "last")], max_bytes=200)
    assert len(replies) == len(nonblank) + 1
    assert replies[-1]["ok"] and replies[-1]["id"] == "last"


@settings(max_examples=100, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "id",
                "op",
                "model",
                "repeats",
                "warmup",
                "core",
                "threads",
                "inputs",
                "min_time_ms",
            ]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.text(max_size=20),
            st.lists(st.integers(), max_size=3),
        ),
    )
)
def test_fuzzed_json_requests_never_crash(message: dict) -> None:
    replies = serve([json.dumps(message).encode() + b"\n", req("hello", "after")])
    assert replies[-1]["ok"] and replies[-1]["id"] == "after"
    assert isinstance(replies[0]["ok"], bool)


def test_session_cache_is_bounded_by_memory_and_evicted_models_still_measure() -> None:
    from device_agents.service import physical_memory

    assert physical_memory() > 64 * 2**20
    models = [conv_relu_onnx(size=8 + i) for i in range(4)]
    biggest = max(len(m) for m in models)
    # sessions get 3/4 of the cache and cost 1.5x their file: room for two, not three
    agent = Agent(cache_bytes=int(1.5 * biggest * 2.4 / 0.75))
    lines = [
        req("measure", i, model={"data_b64": base64.b64encode(m).decode()}, warmup=0, repeats=2)
        for i, m in enumerate(models + models[:1])
    ]
    out = io.BytesIO()
    serve_stream(agent, io.BytesIO(b"".join(lines)), out.write, 1 << 20)
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert all(r["ok"] and len(r["result"]["samples_ms"]) == 2 for r in replies)
    cached = {key[0] for key in agent._sessions}
    sha = [hashlib.sha256(m).hexdigest() for m in models]
    assert cached == {sha[3], sha[0]}  # the first was evicted, measured again, cached again
    assert sum(agent._session_bytes.values()) <= agent.session_cache_bytes
    assert Agent().session_cache_bytes > 0 and Agent().model_cache_bytes <= 256 * 2**20
