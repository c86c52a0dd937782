"""The DNS interface of the registry: A, AAAA and SRV records of healthy instances.

`DnsServer` answers, over UDP and TCP on one port, for the names

- `<service>.service.<domain>` and `<version>.<service>.service.<domain>`: A records for
  instances whose host is an IPv4 literal, AAAA for IPv6 literals, and SRV records (priority 1,
  weight 1) for all of them. An SRV target is the host when it is a DNS name, otherwise the
  synthesised `<ip>.addr.<domain>` (`10-0-1-5` for IPv4, 32 hex digits for IPv6), whose
  address record comes in the additional section and is also answered on its own, as Consul
  does. `_<service>._tcp.service.<domain>` (RFC 2782 spelling) is the same as the plain name.
- `<domain>` itself (SOA), with `service.<domain>` and `addr.<domain>` as empty names.

Which instances a name has is asked of a `resolve` callable (the registry), in the order it
returns them (shuffled by the registry): `[]` for a service with no healthy instance (NOERROR
with no records), `None` for an unknown name (NXDOMAIN). Negative answers carry the zone's SOA
(RFC 2308) whose minimum is the record TTL, so a TTL of 0 keeps resolvers from caching them.

What the server refuses, per RFC 1035, 6891, 6895 and 8945: messages too short for a header
and responses are dropped; undecodable messages, zero or several questions and OPT as a
question get FORMERR; opcodes other than QUERY and unimplemented meta types get NOTIMP;
classes other than IN and zone transfers get REFUSED; EDNS versions above 0 get BADVERS;
TSIG-signed queries get NOTAUTH/BADKEY (no keys are configured). Over UDP an answer that does
not fit 512 bytes (or the requester's EDNS size, at most 1232) first loses the SRV targets'
addresses (no TC), then keeps the answer records that fit and sets TC, so that resolvers retry
over TCP and clients that cannot still get some instances.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import struct
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple, cast

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TSIG
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset

__all__ = ["EDNS_PAYLOAD", "DnsServer", "Resolve"]

Resolve = Callable[[str], list[tuple[str, int]] | None]
"""Instances of a DNS name: healthy `(host, port)` pairs, `[]` for none, `None` if unknown."""

EDNS_PAYLOAD = 1232
"""Largest UDP answer sent and the EDNS payload advertised (the 2020 DNS flag day value)."""

UDP_PAYLOAD_NO_EDNS = 512
"""Largest UDP answer to a requester without EDNS (RFC 1035)."""

TCP_IDLE_TIMEOUT_S = 10.0
"""A TCP connection without a complete query for this long is closed (RFC 7766 6.2.3)."""

MAX_TCP_CONNECTIONS = 256
"""TCP connections served at once; more are closed as soon as they are accepted."""
_PORT_ATTEMPTS = 20

_log = logging.getLogger(__name__)

_IN = dns.rdataclass.IN
_A = dns.rdatatype.A
_AAAA = dns.rdatatype.AAAA
_SRV = dns.rdatatype.SRV
_SOA = dns.rdatatype.SOA
_ANY = dns.rdatatype.ANY
_NONE = dns.rdatatype.NONE
# The smallest answer record: a compressed owner, type, class, TTL, length and 4 bytes of A.
_MIN_RECORD_BYTES = 16
_CACHE_SIZE = 65536
_HEADER = struct.Struct("!HH")
# Service-name labels (the registry's DNS-safe names) once lower-cased.
_SAFE_LABEL = re.compile(rb"[a-z0-9_-]{1,63}\Z")
_HOST_LABEL = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME = re.compile(rf"{_HOST_LABEL}(?:\.{_HOST_LABEL})*\.?\Z")
_HEX_LABEL = re.compile(rb"[0-9a-f]{32}\Z")
# Meta query types (RFC 6895 section 3.1) this server treats specially.
_META_TYPES = range(128, 256)
_TRANSFER_TYPES = frozenset({dns.rdatatype.AXFR, dns.rdatatype.IXFR})
_FORMERR_TYPES = frozenset({dns.rdatatype.NONE, dns.rdatatype.OPT})
_SOA_REFRESH_S, _SOA_RETRY_S, _SOA_EXPIRE_S = 3600, 600, 86400


class _Host(NamedTuple):
    """How one registered host appears in DNS."""

    address: str  # the IP literal, normalised; "" for a name
    rdata: dns.rdata.Rdata | None  # its A or AAAA record data; None for a name
    target: dns.name.Name | None  # the SRV target; None when the host cannot be one


def _address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> _Host:
    text = str(address)
    rdata: dns.rdata.Rdata
    if isinstance(address, ipaddress.IPv4Address):
        rdata = dns.rdtypes.IN.A.A(_IN, _A, text)  # type: ignore[no-untyped-call]
    else:
        rdata = dns.rdtypes.IN.AAAA.AAAA(_IN, _AAAA, text)  # type: ignore[no-untyped-call]
    return _Host(text, rdata, None)


def _classify(host: str, origin: dns.name.Name) -> _Host:
    """How `host` appears in DNS, with the SRV target that names it."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if len(host) > 253 or not _HOST_NAME.match(host):
            return _Host("", None, None)
        return _Host("", None, dns.name.from_text(host))
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id is not None:
        return _Host("", None, None)  # a zone index means nothing to a remote resolver
    if isinstance(address, ipaddress.IPv4Address):
        label = str(address).replace(".", "-").encode()
    else:
        label = address.packed.hex().encode()
    return _address(address)._replace(target=dns.name.Name((label, b"addr", *origin.labels)))


def _addr_label(label: bytes) -> _Host | None:
    """The address a `<ip>.addr.<domain>` label encodes, if it is one this server writes."""
    if _HEX_LABEL.match(label):
        return _address(ipaddress.IPv6Address(bytes.fromhex(label.decode())))
    parts = label.split(b"-")
    if len(parts) != 4 or not all(part.isdigit() for part in parts):
        return None
    try:
        return _address(ipaddress.IPv4Address(b".".join(parts).decode()))
    except ValueError:  # out of range or leading zeros: not a name this server writes
        return None


def _header_only(wire: bytes, rcode: int) -> bytes:
    """A reply with no sections, for a message too broken to answer otherwise."""
    query_id, flags = _HEADER.unpack_from(wire)
    flags = dns.flags.QR | (flags & (0xF << 11)) | (flags & (dns.flags.RD | dns.flags.CD)) | rcode
    return struct.pack("!HHHHHH", query_id, flags, 0, 0, 0, 0)


class DnsServer:
    """Serves the registry's healthy instances as DNS records, over UDP and TCP on one port.

    `resolve(qname)` receives the query name lower-cased and without its trailing dot (for
    example `v1.web.service.dmsc`) and returns the healthy `(host, port)` pairs to answer in
    that order, `[]` for a known service without healthy instances, or `None` for an unknown
    name. It is called on the event loop, so it must be quick; if it raises, the query gets
    SERVFAIL. `ttl` (seconds) applies to every record and to negative caching.
    """

    def __init__(self, resolve: Resolve, domain: str, ttl: int = 0) -> None:
        text = domain.strip().rstrip(".").lower()
        if (
            not text
            or len(text) > 200
            or not all(_SAFE_LABEL.match(label.encode()) for label in text.split("."))
        ):
            raise ValueError(
                f"domain: must be a DNS name of letters, digits, '-' and '_', got {domain!r}"
            )
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 0x7FFFFFFF:
            raise ValueError(f"ttl: must be an integer of seconds in [0, 2^31 - 1], got {ttl!r}")
        self._resolve = resolve
        self._ttl = ttl
        self._domain_text = text
        self._origin = dns.name.from_text(text)
        self._zone_labels = len(self._origin.labels)
        self._soa = dns.rrset.from_rdata(
            self._origin,
            ttl,
            dns.rdtypes.ANY.SOA.SOA(  # type: ignore[no-untyped-call]
                _IN,
                _SOA,
                dns.name.Name((b"ns", *self._origin.labels)),
                dns.name.Name((b"hostmaster", *self._origin.labels)),
                1,
                _SOA_REFRESH_S,
                _SOA_RETRY_S,
                _SOA_EXPIRE_S,
                ttl,
            ),
        )
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._port = 0
        # Record data per host and per instance, kept across queries: building it is most
        # of the cost of an answer, and the same instances are asked for again and again.
        self._hosts: dict[str, _Host] = {}
        self._srvs: dict[tuple[str, int], dns.rdata.Rdata] = {}

    @property
    def domain(self) -> str:
        """The domain served, lower-case and without a trailing dot."""
        return self._domain_text

    @property
    def ttl(self) -> int:
        """The TTL of every record, in seconds."""
        return self._ttl

    @property
    def port(self) -> int:
        """The port the server listens on (UDP and TCP); the chosen one after `start(.., 0)`."""
        if self._udp is None:
            raise RuntimeError("the DNS server is not started")
        return self._port

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listens on `host:port` (an IP address) over UDP and TCP; port 0 picks a port free
        for both, which `port` then tells."""
        if self._udp is not None:
            raise RuntimeError("the DNS server is already started")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port: must be in [0, 65535], got {port!r}")
        loop = asyncio.get_running_loop()
        # Port 0 picks a free UDP port, which TCP may already use: then pick another.
        for attempt in range(_PORT_ATTEMPTS if port == 0 else 1):
            udp, _ = await loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            bound = int(udp.get_extra_info("sockname")[1])
            try:
                self._tcp = await asyncio.start_server(self._serve_tcp, host, bound)
            except OSError:
                udp.close()
                if port != 0 or attempt == _PORT_ATTEMPTS - 1:
                    raise
                continue
            self._udp, self._port = udp, bound
            return

    async def close(self) -> None:
        """Stops listening and closes open TCP connections."""
        udp, tcp = self._udp, self._tcp
        self._udp, self._tcp = None, None
        if udp is not None:
            udp.close()
        if tcp is not None:
            tcp.close()
        for writer in list(self._connections):
            writer.close()
        if tcp is not None:
            await tcp.wait_closed()

    # ---- transports ------------------------------------------------------------------

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answers length-prefixed queries in order until the client stops (RFC 7766)."""
        if len(self._connections) >= MAX_TCP_CONNECTIONS:
            writer.close()
            return
        self._connections.add(writer)
        try:
            while True:
                async with asyncio.timeout(TCP_IDLE_TIMEOUT_S):
                    (size,) = struct.unpack("!H", await reader.readexactly(2))
                    message = await reader.readexactly(size)
                reply = self.respond(message, tcp=True)
                if reply is None:  # nothing sensible to say: end the stream, as BIND does
                    break
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
            pass
        finally:
            self._connections.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    # ---- answering -------------------------------------------------------------------

    def respond(self, wire: bytes, *, tcp: bool = False) -> bytes | None:
        """The reply to the DNS message `wire`, or None when it gets none.

        Over UDP (`tcp=False`) the reply fits the requester's size (512 bytes without EDNS).
        Never raises: a failure while answering becomes SERVFAIL.
        """
        if len(wire) < 12 or wire[2] & 0x80:  # no header to answer, or itself a response
            return None
        try:
            return self._respond(wire, tcp)
        except Exception:  # a bug or a failing resolve must cost one answer, not the server
            _log.exception("answering a DNS query failed")
            return _header_only(wire, dns.rcode.SERVFAIL)

    def _respond(self, wire: bytes, tcp: bool) -> bytes:
        opcode = (wire[2] >> 3) & 0xF
        try:
            # keyring=False: read a TSIG record without validating it, to refuse it properly.
            query = dns.message.from_wire(wire, keyring=False)
        except Exception:  # any decoding failure is the sender's format error
            return _header_only(
                wire, dns.rcode.FORMERR if opcode == dns.opcode.QUERY else dns.rcode.NOTIMP
            )
        response = self._reply_to(query)
        limit = 65535 if tcp else self._udp_limit(query)
        if opcode != dns.opcode.QUERY:
            response.set_rcode(dns.rcode.NOTIMP)
            return self._render(response, limit)
        response.question = list(query.question)
        if query.had_tsig:
            self._refuse_tsig(query, response)
        elif query.edns > 0:
            response.set_rcode(dns.rcode.BADVERS)
        elif len(query.question) != 1:
            response.set_rcode(dns.rcode.FORMERR)
        else:
            self._answer(query.question[0], response, limit)
        return self._render(response, limit)

    def _reply_to(self, query: dns.message.Message) -> dns.message.Message:
        """An empty reply: same id and opcode, RD and CD copied, OPT (with DO) if asked."""
        response = dns.message.Message(id=query.id)
        response.flags = dns.flags.QR | (query.flags & (dns.flags.RD | dns.flags.CD))
        response.set_opcode(query.opcode())
        if query.edns >= 0:
            response.use_edns(0, query.ednsflags & dns.flags.DO, EDNS_PAYLOAD)
        return response

    @staticmethod
    def _udp_limit(query: dns.message.Message) -> int:
        if query.edns < 0:
            return UDP_PAYLOAD_NO_EDNS
        return max(UDP_PAYLOAD_NO_EDNS, min(query.payload, EDNS_PAYLOAD))

    @staticmethod
    def _refuse_tsig(query: dns.message.Message, response: dns.message.Message) -> None:
        """NOTAUTH with an unsigned BADKEY TSIG (RFC 8945 section 5.2.2): no keys here."""
        assert query.tsig is not None
        signed = query.tsig[0]
        response.set_rcode(dns.rcode.NOTAUTH)
        response.tsig = dns.rrset.from_rdata(
            query.tsig.name,
            0,
            dns.rdtypes.ANY.TSIG.TSIG(  # type: ignore[no-untyped-call]
                dns.rdataclass.ANY,
                dns.rdatatype.TSIG,
                signed.algorithm,
                int(time.time()),
                signed.fudge,
                b"",
                query.id,
                dns.rcode.BADKEY,
                b"",
            ),
        )

    def _answer(self, question: dns.rrset.RRset, response: dns.message.Message, limit: int) -> None:
        qtype = question.rdtype
        if question.rdclass != _IN:
            response.set_rcode(dns.rcode.REFUSED)
            return
        if qtype in _FORMERR_TYPES:
            response.set_rcode(dns.rcode.FORMERR)
            return
        if qtype in _TRANSFER_TYPES:
            response.set_rcode(dns.rcode.REFUSED)
            return
        if qtype in _META_TYPES and qtype != _ANY:
            response.set_rcode(dns.rcode.NOTIMP)
            return
        labels = tuple(label.lower() for label in question.name.labels)
        if labels[-self._zone_labels :] != self._origin.labels:
            response.set_rcode(dns.rcode.NXDOMAIN)  # outside the zone: not ours to vouch for
            return
        response.flags |= dns.flags.AA
        relative = labels[: -self._zone_labels]
        if not relative:
            if qtype in (_SOA, _ANY):
                response.answer.append(self._soa)
        elif relative in ((b"service",), (b"addr",)):
            pass  # empty non-terminals: they exist, without records
        elif len(relative) == 2 and relative[1] == b"addr":
            address = _addr_label(relative[0])
            if address is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            elif address.rdata is not None and qtype in (address.rdata.rdtype, _ANY):
                response.answer.append(
                    dns.rrset.from_rdata(question.name, self._ttl, address.rdata)
                )
        elif relative[-1] == b"service":
            instances = self._instances(relative[:-1])
            if instances is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                self._records(question.name, qtype, instances, response, limit)
        else:
            response.set_rcode(dns.rcode.NXDOMAIN)
        if not response.answer:
            response.authority.append(self._soa)

    def _instances(self, head: tuple[bytes, ...]) -> list[tuple[str, int]] | None:
        """Asks `resolve` about `<head>.service.<domain>`; None when it cannot be a service."""
        if len(head) == 2 and head[1] in (b"_tcp", b"_udp") and head[0].startswith(b"_"):
            head = (head[0][1:],)  # RFC 2782: _service._proto.name
        if not head or not all(_SAFE_LABEL.match(label) for label in head):
            return None
        qname = b".".join(head).decode("ascii") + ".service." + self._domain_text
        return self._resolve(qname)

    def _host(self, host: str) -> _Host:
        info = self._hosts.get(host)
        if info is None:
            if len(self._hosts) >= _CACHE_SIZE:  # hosts come and go: start over, rarely
                self._hosts.clear()
            info = self._hosts[host] = _classify(host, self._origin)
        return info

    def _srv(self, host: str, port: int, target: dns.name.Name) -> dns.rdata.Rdata:
        rdata = self._srvs.get((host, port))
        if rdata is None:
            if len(self._srvs) >= _CACHE_SIZE:
                self._srvs.clear()
            rdata = dns.rdtypes.IN.SRV.SRV(  # type: ignore[no-untyped-call]
                _IN, _SRV, 1, 1, port, target
            )
            self._srvs[host, port] = rdata
        return rdata

    def _records(
        self,
        owner: dns.name.Name,
        qtype: int,
        instances: Iterable[tuple[str, int]],
        response: dns.message.Message,
        limit: int,
    ) -> None:
        """Fills the answer (and SRV targets' addresses) from `instances`, in their order.

        Each record is its own RRset so that rendering can stop at any record; records that
        could not fit in `limit` bytes anyway are not built.
        """
        want_a = qtype in (_A, _ANY)
        want_aaaa = qtype in (_AAAA, _ANY)
        want_srv = qtype in (_SRV, _ANY)
        if not (want_a or want_aaaa or want_srv):
            return
        ttl, room = self._ttl, (limit - 12) // _MIN_RECORD_BYTES
        srv: list[dns.rrset.RRset] = []
        addresses: list[dns.rrset.RRset] = []
        glue: list[dns.rrset.RRset] = []
        seen: set[str] = set()  # two instances on one host share its address record
        for host, port in instances:
            if len(srv) + len(addresses) >= room:
                break
            info = self._host(host)
            rdata = info.rdata
            if (
                rdata is not None
                and ((want_a and rdata.rdtype == _A) or (want_aaaa and rdata.rdtype == _AAAA))
                and info.address not in seen
            ):
                seen.add(info.address)
                addresses.append(dns.rrset.from_rdata(owner, ttl, rdata))
            if want_srv and info.target is not None:
                srv.append(dns.rrset.from_rdata(owner, ttl, self._srv(host, port, info.target)))
                if rdata is not None and qtype == _SRV:
                    glue.append(dns.rrset.from_rdata(info.target, ttl, rdata))
        response.answer.extend(srv)
        response.answer.extend(addresses)
        response.additional.extend(glue)

    @staticmethod
    def _render(response: dns.message.Message, limit: int) -> bytes:
        """The wire form within `limit` bytes.

        Records that do not fit are left out: additional ones silently, answers with TC set
        (RFC 2181 section 9 allows a partial RRset), so that resolvers retry over TCP and
        clients without TCP still get some instances.
        """
        return response.to_wire(max_size=limit, prefer_truncation=True)


class _UdpProtocol(asyncio.DatagramProtocol):
    """Hands each datagram to the server and sends its reply back to the sender."""

    def __init__(self, server: DnsServer) -> None:
        self._server = server
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's UDP transport does not subclass asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if addr[1] == 0 or self._transport is None:  # port 0 cannot be answered
            return
        reply = self._server.respond(data)
        if reply is not None:
            self._transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for earlier replies (a client gone away): nothing to do.
        _log.debug("DNS UDP error: %s", exc)
