"""The handshake of both internal planes: each side proves it knows the job's secret before anything else.

Server → ``Challenge(nonce)``; client → ``Hello(proof of the nonce, its own nonce)``; server →
``Welcome(proof of the client's nonce)``. Proofs are ``auth.prove`` HMACs under a label that names
the plane (``CONTROL_LABEL``; ``data_label`` also binds the attempt and its token), so a proof for
one plane, attempt or direction is worthless for another. The server tells an unauthenticated peer
nothing but a random nonce, reads at most ``Limits.handshake_bytes`` from it, gives it
``Limits.handshake_timeout_s``, and ``HandshakeGate`` caps how many such peers a listener holds.
The client checks the server's proof too, so a slot never takes a deployment or sends records to an
impostor. Used by ``jobmaster/control.py`` and ``slot.py`` (control), ``runtime/network.py`` (data).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from streamjob.worker.protocol.auth import new_nonce, prove, verify
from streamjob.worker.protocol.framing import NO_CHANNEL, FrameKind, Limits, frame, read_frame
from streamjob.worker.protocol.messages import (
    CHALLENGE,
    HELLO,
    PROTOCOL_VERSION,
    WELCOME,
    Challenge,
    Hello,
    ProtocolError,
    Welcome,
    decode,
    encode,
)

log = logging.getLogger(__name__)

CONTROL_LABEL = "streamjob/control/v1"
_SERVER = "/server"
_MIN_NONCE = 16


def data_label(attempt: int, token: str) -> str:
    """The data plane's label for one attempt (its attempt number and random token are proven with the secret)."""
    return f"streamjob/data/v1/attempt={attempt}/token={token}"


class HandshakeError(ProtocolError):
    """The handshake failed; ``before_challenge``: the server closed before saying anything (busy: retry)."""

    def __init__(self, message: str, *, before_challenge: bool = False) -> None:
        super().__init__(message)
        self.before_challenge = before_challenge


def peer_name(writer: asyncio.StreamWriter) -> str:
    """``host:port`` of the other end, for log lines."""
    info = writer.get_extra_info("peername")
    return f"{info[0]}:{info[1]}" if isinstance(info, tuple) and len(info) >= 2 else "an unknown peer"


async def _read_message(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    kind, _, payload = await read_frame(reader, max_bytes)
    if kind != FrameKind.MESSAGE:
        raise HandshakeError(f"expected a handshake message, got a frame of kind {kind}")
    return payload


async def accept(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    secret: str,
    label_for: Callable[[Hello], str],
    limits: Limits,
    admit: Callable[[Hello], None] | None = None,
) -> Hello:
    """Server side: challenges the peer and returns its ``Hello`` once its proof holds.

    ``label_for`` picks the label the proof must be made under; ``admit`` may then refuse a peer
    whose proof holds (one of another attempt) by raising ``HandshakeError``. Every failure is a
    ``ProtocolError`` with one line of explanation: bad bytes, a wrong proof, a timeout, a closed
    connection.
    """
    nonce = new_nonce()
    try:
        async with asyncio.timeout(limits.handshake_timeout_s):
            writer.write(frame(FrameKind.MESSAGE, NO_CHANNEL, encode(Challenge(version=PROTOCOL_VERSION, nonce=nonce))))
            hello = decode(await _read_message(reader, limits.handshake_bytes), HELLO)
            if hello.version != PROTOCOL_VERSION:
                raise HandshakeError(
                    f"the peer speaks protocol version {hello.version}, this process "
                    f"{PROTOCOL_VERSION} (mixed streamjob versions in one job?)"
                )
            label = label_for(hello)
            if not verify(secret, label, nonce, hello.proof):
                raise HandshakeError("wrong proof: the peer does not know the job's secret")
            if len(hello.nonce) < _MIN_NONCE:
                raise HandshakeError(f"the peer's nonce has {len(hello.nonce)} bytes, fewer than {_MIN_NONCE}")
            if admit is not None:
                admit(hello)
            writer.write(
                frame(FrameKind.MESSAGE, NO_CHANNEL, encode(Welcome(proof=prove(secret, label + _SERVER, hello.nonce))))
            )
            await writer.drain()
            return hello
    except TimeoutError:
        raise HandshakeError(f"no handshake within {limits.handshake_timeout_s:g} s") from None
    except (asyncio.IncompleteReadError, ConnectionError):
        raise HandshakeError("the peer closed the connection during the handshake") from None


async def connect(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    secret: str,
    label: str,
    *,
    attempt: int = 0,
    token: str = "",
    limits: Limits | None = None,
    timeout_s: float = 30.0,
) -> None:
    """Client side: answers the server's challenge and checks the server's own proof."""
    limits = limits or Limits()
    challenged = False
    try:
        async with asyncio.timeout(timeout_s):
            challenge = decode(await _read_message(reader, limits.handshake_bytes), CHALLENGE)
            challenged = True
            if challenge.version != PROTOCOL_VERSION:
                raise HandshakeError(
                    f"the server speaks protocol version {challenge.version}, this process "
                    f"{PROTOCOL_VERSION} (mixed streamjob versions in one job?)"
                )
            mine = new_nonce()
            hello = Hello(
                version=PROTOCOL_VERSION,
                nonce=mine,
                proof=prove(secret, label, challenge.nonce),
                attempt=attempt,
                token=token,
            )
            writer.write(frame(FrameKind.MESSAGE, NO_CHANNEL, encode(hello)))
            welcome = decode(await _read_message(reader, limits.handshake_bytes), WELCOME)
            if not verify(secret, label + _SERVER, mine, welcome.proof):
                raise HandshakeError("the server's proof is wrong: it does not know the job's secret")
    except TimeoutError:
        raise HandshakeError(f"no handshake answer within {timeout_s:g} s", before_challenge=not challenged) from None
    except (asyncio.IncompleteReadError, ConnectionError):
        if not challenged:
            raise HandshakeError(
                "the server closed the connection before its challenge (busy)", before_challenge=True
            ) from None
        raise HandshakeError(
            "the server refused the handshake: is STREAMJOB_JOB_SECRET this job's secret, "
            "and do both run the same attempt and streamjob version?"
        ) from None


class HandshakeGate:
    """Caps the connections of one listener that are still in their handshake.

    A connection beyond ``limit`` is refused at once, so idle or slow strangers hold at most
    ``limit`` sockets for at most the handshake timeout each. Refusals are logged at most every 5 s.
    """

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self.pending = 0
        self.refused = 0
        self._logged = 0.0

    def admit(self, peer: str) -> bool:
        """Whether a new connection may start its handshake (then ``release`` it after)."""
        if self.pending >= self.limit:
            self.refused += 1
            now = time.monotonic()
            if now - self._logged >= 5.0:
                self._logged = now
                log.warning(
                    "refused a %s connection from %s: %d handshakes are already pending (%d refused so far)",
                    self.what,
                    peer,
                    self.pending,
                    self.refused,
                )
            return False
        self.pending += 1
        return True

    def release(self) -> None:
        """A connection's handshake ended (either way)."""
        self.pending -= 1
