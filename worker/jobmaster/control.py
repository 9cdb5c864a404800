"""The JobMaster's control port: where slots authenticate, register and report (``JobConfig.control_port``).

A TCP listener of its own, apart from the REST API: every connection must first pass the
handshake (``protocol.handshake``, the control label) within the handshake limits, and only then
may it register; a stranger is dropped having learnt nothing but a nonce, so no deployment, token
or peer address ever reaches it. After that the connection carries typed messages
(``protocol.messages``) in MESSAGE frames of at most ``Limits.message_bytes``. A message that does
not parse is dropped with one log line naming the peer; bytes that are not frames, or silence for
the heartbeat timeout, close the connection (for a registered slot: the slot is lost). Started by
``local.py`` and ``cli.py`` (``streamjob jobmaster``) beside the REST server. With ``JobConfig.internal_tls``
the listener is mutual TLS (``protocol/tls.py``) under the same handshake.
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from streamjob.worker.errors import ConfigError
from streamjob.worker.jobmaster.jobmaster import JobMaster
from streamjob.worker.jobmaster.slots import ControlLink, SlotConnection, SpareSlot
from streamjob.worker.protocol.framing import FrameKind, Limits, read_frame
from streamjob.worker.protocol.handshake import CONTROL_LABEL, HandshakeGate, accept, peer_name
from streamjob.worker.protocol.listen import numeric_listener
from streamjob.worker.protocol.messages import TO_JOBMASTER, ProtocolError, Register, decode

log = logging.getLogger(__name__)

# A crashed slot is noticed at once (its connection closes); the heartbeat only catches a hung one.
# It is long because user code may hold a slot's event loop for seconds (a slow function over a batch);
# a slot reports its metrics every second, which is what the JobMaster hears in the meantime.
HEARTBEAT_S = 60.0


class ControlServer:
    """Serves the slots' control connections of one JobMaster."""

    def __init__(
        self, jm: JobMaster, secret: str, limits: Limits | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        """``tls``: a server context (``protocol.tls.internal_server_context``) to require mutual TLS."""
        self.jm = jm
        self.tls = tls
        self.secret = secret
        self.limits = limits or Limits()
        self.gate = HandshakeGate(self.limits.pending_handshakes, "control")
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listens on ``host:port`` (0: any free port); returns the bound port."""
        try:
            listener = numeric_listener(host, port)  # no resolver thread for an IP address
            self._server = await asyncio.start_server(
                self._serve,
                None if listener else host,
                None if listener else port,
                sock=listener,
                ssl=self.tls,
                ssl_handshake_timeout=self.limits.handshake_timeout_s if self.tls else None,
            )
        except OSError as err:
            raise ConfigError(
                f"cannot open the control port {host}:{port} ({err.strerror}); pass --control-port 0 "
                "for a free port or another port number"
            ) from err
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stops accepting connections."""
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = peer_name(writer)
        if not self.gate.admit(peer):
            writer.transport.abort()
            return
        try:
            await accept(reader, writer, self.secret, lambda _hello: CONTROL_LABEL, self.limits)
        except ProtocolError as err:
            log.warning("refused a control connection from %s: %s", peer, err)
            writer.transport.abort()
            return
        finally:
            self.gate.release()
        link = ControlLink(writer, peer)
        state = _Conversation(link)
        try:
            await self._converse(reader, state)
        except (asyncio.IncompleteReadError, ConnectionError):
            log.debug("the control connection from %s closed", peer)
        except TimeoutError:
            log.warning("no word from the slot at %s for %.0f s: closing its connection", peer, HEARTBEAT_S)
        except ProtocolError as err:
            log.warning("dropped the control connection from %s: %s", peer, err)
        finally:
            self.jm.registry.spares.pop(link, None)
            link.sender.cancel()
            writer.transport.abort()
            slot = state.slot or (state.spare.promoted if state.spare is not None else None)
            if slot is not None:
                self.jm.on_slot_lost(slot)

    async def _converse(self, reader: asyncio.StreamReader, state: _Conversation) -> None:
        """Registration, then every message to the JobMaster, until the connection ends (an exception)."""
        jm = self.jm
        link = state.link
        while True:
            kind, _, payload = await asyncio.wait_for(read_frame(reader, self.limits.message_bytes), HEARTBEAT_S)
            if kind != FrameKind.MESSAGE:
                raise ProtocolError(f"a slot sent a frame of kind {kind} on the control channel")
            try:
                message = decode(payload, TO_JOBMASTER)
            except ProtocolError as err:
                log.warning("ignored a control message from %s: %s", link.peer, err)
                continue
            if state.slot is None and state.spare is not None and state.spare.promoted is not None:
                state.slot, state.spare = state.spare.promoted, None  # a rescale up made it a slot
            if state.slot is not None:
                jm.on_slot_message(state.slot, message)
            elif state.spare is not None:
                continue
            elif not isinstance(message, Register):
                log.warning("ignored a '%s' message from %s before it registered", message.t, link.peer)
            else:
                await jm.registry.wait_open(jm.config.worker_register_timeout_ms / 1000)
                state.slot = jm.registry.register(link, (message.data_host, message.data_port), message.pid)
                if state.slot is None:
                    log.info("a spare slot registered: the attempt has all its slots; it stays idle")
                    state.spare = jm.registry.add_spare(link, (message.data_host, message.data_port), message.pid)


class _Conversation:
    """One authenticated connection: its link and whether it registered as a slot or a spare."""

    def __init__(self, link: ControlLink) -> None:
        self.link = link
        self.slot: SlotConnection | None = None
        self.spare: SpareSlot | None = None
