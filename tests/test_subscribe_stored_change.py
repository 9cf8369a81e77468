"""A live subscriber's delta frames may reuse the change the history stored
for the record (Server.publish's ``stored``): what the client rebuilds from
them is the record the history keeps (the same map, key order aside, as for
any delta frame), across keyframes, tables null between samples, and key
orders that change."""

import os
import shutil
import socket
import tempfile

import msgpack

from hostdiag.encode.delta import apply
from hostdiag.encode.tablecompare import same
from hostdiag.encode.wire import encode_msgpack
from hostdiag.store import History, Record
from hostdiag.transport.flow import Limits
from hostdiag.transport.framing import FrameDecoder, encode_frame
from hostdiag.transport.listeners import Listener
from hostdiag.transport.server import AgentServer

from test_history import BOOT, SECOND, table_doc


def frames(s, decoder, count):
    out = []
    while len(out) < count:
        data = s.recv(1 << 16)
        assert data, "the server closed the subscription"
        out.extend(decoder.feed(data))
    return out


def test_live_frames_from_the_stored_change_rebuild_every_payload():
    directory = tempfile.mkdtemp(prefix="hd-", dir="/tmp")
    path = os.path.join(directory, "agent.sock")
    history = History(None, boot_id=BOOT, keyframe_every=7)
    server = AgentServer(history, [Listener("unix", path=path)], Limits())
    server.start()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(10)
        s.connect(path)
        decoder = FrameDecoder(64 << 20)
        s.sendall(encode_frame({"type": "hello", "versions": [1]}))
        assert frames(s, decoder, 1)[0]["type"] == "hello"
        s.sendall(encode_frame({"type": "subscribe", "full_every": 25}))
        assert frames(s, decoder, 1)[0]["type"] == "subscribed"
        payloads, reused = {}, 0
        for seq in range(1, 41):
            doc = table_doc(seq)
            payload = encode_msgpack(doc)
            assert history.append(seq * SECOND, payload, doc) == seq
            stored = history.newest_change(seq)
            reused += stored is not None
            payloads[seq] = payload
            server.publish(Record(history.boot_id, seq, seq * SECOND, payload), doc, stored)
        assert reused > 20
        held, prior = None, {}
        for message in frames(s, decoder, 40):
            if message["type"] == "snapshot":
                held = message["snapshot"]
            else:
                assert message["type"] == "delta" and message["base_seq"] == message["seq"] - 1
                for key, seq in message.get("prior", {}).items():
                    assert prior[key][0] == seq
                held = apply(message["delta"], held, {key: value for key, (_, value) in prior.items()})
            # The same map, types and all; a subscriber's frames do not restore key order.
            assert same(held, msgpack.unpackb(payloads[message["seq"]]))
            prior.update((key, (message["seq"], value)) for key, value in held.items() if value is not None)
    finally:
        s.close()
        server.stop()
        history.close()
        shutil.rmtree(directory, ignore_errors=True)
