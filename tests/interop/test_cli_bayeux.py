"""``sfstream bayeux`` against a real Faye server over WebSocket, as in docs/bayeux-cli.md."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from ._peers import CometdServer, FayeServer

pytestmark = pytest.mark.interop

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cr3t-token-never-printed"


async def test_trace_and_json_deliveries_over_websocket(faye: FayeServer) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sfstream",
        "bayeux",
        faye.url,
        "--subscribe",
        "/chat/**",
        "--publish",
        "/chat/general",
        '{"user": "ann", "text": "hello"}',
        "--connection-type",
        "websocket",
        "--connection-type",
        "long-polling",
        "--header",
        f"Authorization: Bearer {TOKEN}",
        "--trace",
        "--json",
        "--count",
        "2",
        "--timeout",
        "20",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await faye.wait_for_subscription("/chat/**", within=15)
        await faye.publish("/chat/random/cats", {"user": "bob", "text": "meow"})
        async with asyncio.timeout(30):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, err.decode()
    deliveries = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted(m["channel"] for m in deliveries) == ["/chat/general", "/chat/random/cats"]

    # With --json every stderr line is JSON (as `sfstream listen --json`): notes and the trace.
    lines = [json.loads(line) for line in err.decode().splitlines()]
    trace = [line for line in lines if "direction" in line]
    notes = [line["note"] for line in lines if "note" in line]
    assert len(trace) + len(notes) == len(lines)
    assert any(note.endswith("over websocket") or " over websocket " in note for note in notes)
    connects = [t for t in trace if t["channel"] == "/meta/connect" and t["direction"] == "out"]
    assert connects
    assert {t["message"]["connectionType"] for t in connects} == {"websocket"}
    handshake_reply = next(
        t for t in trace if t["channel"] == "/meta/handshake" and t["direction"] == "in"
    )
    assert handshake_reply["rtt_ms"] is not None
    assert handshake_reply["rtt_ms"] >= 0
    # The delivery of our own publish echoes its id: no round-trip time for it.
    echoed = next(
        t
        for t in trace
        if t["channel"] == "/chat/general" and "data" in t["message"] and t["direction"] == "in"
    )
    assert echoed["rtt_ms"] is None
    assert TOKEN not in out.decode() + err.decode()


async def test_ack_against_the_cometd_server(node_peers: None) -> None:
    server = CometdServer(timeout=2.0, ack=True)
    await server.start()
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "sfstream",
            "bayeux",
            server.url,
            "--subscribe",
            "/acked",
            "--ack",
            "--trace",
            "--json",
            "--count",
            "1",
            "--timeout",
            "20",
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            await server.wait_for_subscription("/acked", within=15)
            await server.publish("/acked", {"n": 1})
            async with asyncio.timeout(30):
                out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    finally:
        await server.stop()
    assert process.returncode == 0, err.decode()
    assert json.loads(out.decode())["data"] == {"n": 1}
    trace = [t for t in map(json.loads, err.decode().splitlines()) if "direction" in t]
    handshake = next(t for t in trace if t["channel"] == "/meta/handshake")
    assert handshake["message"]["ext"] == {"ack": True}
    connects = [t for t in trace if t["channel"] == "/meta/connect" and t["direction"] == "out"]
    assert all(isinstance(t["message"]["ext"]["ack"], int) for t in connects)
