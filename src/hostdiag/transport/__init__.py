"""The agent's wire protocol: frames, messages, the server and the client.

docs/protocol.md describes the protocol completely; this package is our
implementation of both ends of it.
"""
