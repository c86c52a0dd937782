"""The DNS interface: real `dig` and dnspython resolvers against a server on loopback."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import re
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import dns.asyncquery
import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.resolver
import dns.rrset
import dns.tsig
import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dmsc.dns
from dmsc.dns import EDNS_PAYLOAD, DnsServer, _UdpProtocol

LOOPBACK = "127.0.0.1"
TTL = 5
BIG = [(f"127.0.1.{i}", 1000 + i) for i in range(100)]
SRV10 = [(f"127.0.2.{i}", 2000 + i) for i in range(10)]
TABLE: dict[str, list[tuple[str, int]]] = {
    "web.service.dmsc": [("127.0.0.1", 8080), ("127.0.0.2", 8081)],
    "v1.web.service.dmsc": [("127.0.0.1", 8080)],
    "v6.service.dmsc": [("::1", 9000)],
    "mixed.service.dmsc": [("127.0.0.3", 1), ("::2", 2), ("db.example.internal", 3)],
    "shared.service.dmsc": [("127.0.0.4", 1), ("127.0.0.4", 2)],
    "empty.service.dmsc": [],
    "big.service.dmsc": BIG,
    "srv10.service.dmsc": SRV10,
    "pay.v2.service.dmsc": [("127.0.0.9", 9)],
}
ROTATING = [("127.0.3.1", 1), ("127.0.3.2", 2), ("127.0.3.3", 3), ("127.0.3.4", 4)]


class FakeRegistry:
    """A dict standing in for the mesh, remembering what it was asked and answered."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.last: list[tuple[str, int]] | None = None
        self._turn = 0

    def __call__(self, qname: str) -> list[tuple[str, int]] | None:
        self.calls.append(qname)
        if qname == "boom.service.dmsc":
            raise RuntimeError("registry failure")
        if qname == "rotating.service.dmsc":
            self._turn += 1
            shift = self._turn % len(ROTATING)
            self.last = ROTATING[shift:] + ROTATING[:shift]
        else:
            self.last = TABLE.get(qname)
        return self.last


@dataclass
class Running:
    server: DnsServer
    registry: FakeRegistry
    loop: asyncio.AbstractEventLoop
    port: int


@pytest.fixture(scope="module")
def served() -> Iterator[Running]:
    """A DnsServer on a uvloop loop in a thread, so tests can run blocking clients."""
    loop = uvloop.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    registry = FakeRegistry()
    server = DnsServer(registry, "dmsc", ttl=TTL)
    asyncio.run_coroutine_threadsafe(server.start(LOOPBACK, 0), loop).result(5)
    try:
        yield Running(server, registry, loop, server.port)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


# ---- helpers --------------------------------------------------------------------------


def ask(
    port: int,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    **options: object,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype, **options)  # type: ignore[arg-type]
    if tcp:
        return dns.query.tcp(query, LOOPBACK, timeout=2, port=port)
    return dns.query.udp(query, LOOPBACK, timeout=2, port=port)


def exchange(port: int, wire: bytes, timeout: float = 0.5) -> bytes | None:
    """Sends one raw datagram; the reply, or None when none comes within `timeout`."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(wire, (LOOPBACK, port))
        try:
            return sock.recv(65535)
        except TimeoutError:
            return None


def rcode_of(reply: bytes) -> int:
    return dns.message.from_wire(reply, keyring=False).rcode()


def addresses(message: dns.message.Message) -> list[str]:
    return [
        rdata.address
        for rrset in message.answer
        if rrset.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA)
        for rdata in rrset
    ]


def srv_records(message: dns.message.Message) -> list[tuple[int, int, int, str]]:
    return [
        (rdata.priority, rdata.weight, rdata.port, rdata.target.to_text())
        for rrset in message.answer
        if rrset.rdtype == dns.rdatatype.SRV
        for rdata in rrset
    ]


def header(query_id: int, flags: int, counts: tuple[int, int, int, int]) -> bytes:
    return struct.pack("!HHHHHH", query_id, flags, *counts)


def question(name: str, rdtype: int = 1, rdclass: int = 1) -> bytes:
    wire = dns.name.from_text(name).to_wire()
    assert wire is not None
    return wire + struct.pack("!HH", rdtype, rdclass)


def opt_record(version: int = 0, payload: int = 1232) -> bytes:
    return b"\x00" + struct.pack("!HHIH", dns.rdatatype.OPT, payload, version << 16, 0)


# ---- dig ------------------------------------------------------------------------------

needs_dig = pytest.mark.skipif(shutil.which("dig") is None, reason="dig (dnsutils) is missing")


def dig(port: int, *args: str) -> str:
    command = ["dig", f"@{LOOPBACK}", "-p", str(port), "+time=2", "+tries=1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=15).stdout


def dig_status(output: str) -> str:
    found = re.findall(r"status: (\w+)", output)
    assert found, output
    return str(found[-1])


def dig_flags(output: str) -> set[str]:
    found = re.findall(r";; flags: ([a-z ]+);", output)
    assert found, output
    return set(found[-1].split())


@needs_dig
@pytest.mark.parametrize("transport", ["UDP", "TCP"])
def test_dig_answers_a_records_of_healthy_instances(served: Running, transport: str) -> None:
    extra = ["+tcp"] if transport == "TCP" else []
    short = dig(served.port, "web.service.dmsc", "A", "+short", *extra)
    assert sorted(short.split()) == ["127.0.0.1", "127.0.0.2"]
    full = dig(served.port, "web.service.dmsc", "A", *extra)
    assert dig_status(full) == "NOERROR"
    assert "aa" in dig_flags(full) and "ra" not in dig_flags(full)
    assert f"({transport})" in full
    assert re.search(r"web\.service\.dmsc\.\s+5\s+IN\s+A\s+127\.0\.0\.1", full)


@needs_dig
def test_dig_srv_targets_are_resolvable_addr_names(served: Running) -> None:
    short = dig(served.port, "web.service.dmsc", "SRV", "+short").splitlines()
    assert sorted(short) == ["1 1 8080 127-0-0-1.addr.dmsc.", "1 1 8081 127-0-0-2.addr.dmsc."]
    assert dig(served.port, "127-0-0-2.addr.dmsc", "A", "+short").split() == ["127.0.0.2"]
    full = dig(served.port, "web.service.dmsc", "SRV", "+tcp")
    assert re.search(r"127-0-0-1\.addr\.dmsc\.\s+5\s+IN\s+A\s+127\.0\.0\.1", full)


@needs_dig
def test_dig_versioned_and_unknown_names(served: Running) -> None:
    assert dig(served.port, "v1.web.service.dmsc", "+short").split() == ["127.0.0.1"]
    unknown = dig(served.port, "nope.service.dmsc")
    assert dig_status(unknown) == "NXDOMAIN"
    assert re.search(r"dmsc\.\s+5\s+IN\s+SOA\s+ns\.dmsc\. hostmaster\.dmsc\.", unknown)
    assert dig_status(dig(served.port, "web.service.elsewhere")) == "NXDOMAIN"
    assert dig_status(dig(served.port, "empty.service.dmsc")) == "NOERROR"


@needs_dig
def test_dig_retries_a_truncated_answer_over_tcp(served: Running) -> None:
    output = dig(served.port, "big.service.dmsc", "+noedns")
    assert "Truncated, retrying in TCP mode" in output
    assert "ANSWER: 100," in output and "(TCP)" in output


@needs_dig
def test_dig_refused_and_badvers(served: Running) -> None:
    assert dig_status(dig(served.port, "-c", "CH", "version.bind", "TXT")) == "REFUSED"
    assert dig_status(dig(served.port, "web.service.dmsc", "+edns=1", "+noednsneg")) == "BADVERS"
    # dig negotiates down to EDNS 0 after BADVERS, as resolvers do.
    negotiated = dig(served.port, "web.service.dmsc", "+edns=1")
    assert dig_status(negotiated) == "NOERROR" and "ANSWER: 2," in negotiated
    assert "Transfer failed" in dig(served.port, "dmsc", "AXFR")


# ---- dnspython as a resolver -----------------------------------------------------------


def stub(port: int) -> dns.resolver.Resolver:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [LOOPBACK]
    resolver.port = port
    resolver.lifetime = 3
    resolver.cache = None
    return resolver


def test_stub_resolver_gets_a_srv_aaaa_and_negative_answers(served: Running) -> None:
    resolver = stub(served.port)
    a = resolver.resolve("web.service.dmsc", "A")
    assert sorted(r.address for r in a) == ["127.0.0.1", "127.0.0.2"]
    assert a.rrset is not None and a.rrset.ttl == TTL
    srv = resolver.resolve("web.service.dmsc", "SRV")
    assert sorted((r.port, r.target.to_text()) for r in srv) == [
        (8080, "127-0-0-1.addr.dmsc."),
        (8081, "127-0-0-2.addr.dmsc."),
    ]
    assert [r.address for r in resolver.resolve("v6.service.dmsc", "AAAA")] == ["::1"]
    with pytest.raises(dns.resolver.NXDOMAIN):
        resolver.resolve("nope.service.dmsc", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("empty.service.dmsc", "A")
    with pytest.raises(dns.resolver.NoAnswer):
        resolver.resolve("v6.service.dmsc", "A")


def test_query_name_case_is_echoed_and_lowercased_for_resolve(served: Running) -> None:
    reply = ask(served.port, "WeB.SeRvIcE.DmSc.")
    assert reply.question[0].name.to_text() == "WeB.SeRvIcE.DmSc."
    assert reply.answer[0].name == dns.name.from_text("web.service.dmsc")
    assert served.registry.calls[-1] == "web.service.dmsc"


def test_answers_keep_the_registry_order(served: Running) -> None:
    orders = []
    for _ in range(3):
        reply = ask(served.port, "rotating.service.dmsc")
        assert served.registry.last is not None
        assert addresses(reply) == [host for host, _ in served.registry.last]
        orders.append(tuple(addresses(reply)))
    assert len(set(orders)) == 3


def test_header_flags_and_ttl(served: Running) -> None:
    reply = ask(served.port, "web.service.dmsc", flags=dns.flags.RD | dns.flags.CD)
    assert reply.flags & dns.flags.AA and reply.flags & dns.flags.QR
    assert reply.flags & dns.flags.RD and reply.flags & dns.flags.CD
    assert not reply.flags & dns.flags.RA and not reply.flags & dns.flags.TC
    assert all(rrset.ttl == TTL for rrset in reply.answer)
    assert reply.edns == -1  # no OPT unless asked
    edns = ask(served.port, "web.service.dmsc", use_edns=0, want_dnssec=True, payload=4096)
    assert edns.edns == 0 and edns.payload == EDNS_PAYLOAD
    assert edns.ednsflags & dns.flags.DO


def test_srv_of_mixed_hosts(served: Running) -> None:
    reply = ask(served.port, "mixed.service.dmsc", "SRV")
    assert sorted(srv_records(reply)) == [
        (1, 1, 1, "127-0-0-3.addr.dmsc."),
        (1, 1, 2, "00000000000000000000000000000002.addr.dmsc."),
        (1, 1, 3, "db.example.internal."),
    ]
    glue = {rrset.name.to_text(): [r.address for r in rrset] for rrset in reply.additional}
    assert glue == {
        "127-0-0-3.addr.dmsc.": ["127.0.0.3"],
        "00000000000000000000000000000002.addr.dmsc.": ["::2"],
    }
    assert addresses(ask(served.port, "mixed.service.dmsc", "A")) == ["127.0.0.3"]
    assert addresses(ask(served.port, "mixed.service.dmsc", "AAAA")) == ["::2"]
    v6 = ask(served.port, "00000000000000000000000000000002.addr.dmsc", "AAAA")
    assert addresses(v6) == ["::2"]


def test_instances_sharing_a_host_share_one_a_record(served: Running) -> None:
    assert addresses(ask(served.port, "shared.service.dmsc")) == ["127.0.0.4"]
    assert len(srv_records(ask(served.port, "shared.service.dmsc", "SRV"))) == 2


def test_negative_answers_carry_the_soa(served: Running) -> None:
    for name, rdtype, rcode in [
        ("empty.service.dmsc", "A", dns.rcode.NOERROR),
        ("nope.service.dmsc", "A", dns.rcode.NXDOMAIN),
        ("service.dmsc", "A", dns.rcode.NOERROR),  # an empty non-terminal exists
        ("addr.dmsc", "A", dns.rcode.NOERROR),
        ("other.dmsc", "A", dns.rcode.NXDOMAIN),
        ("web.service.dmsc", "TXT", dns.rcode.NOERROR),  # exists, without TXT records
        ("dmsc", "NS", dns.rcode.NOERROR),
    ]:
        reply = ask(served.port, name, rdtype)
        assert reply.rcode() == rcode, name
        assert not reply.answer and reply.flags & dns.flags.AA, name
        (soa,) = reply.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa[0].minimum == TTL, name
    outside = ask(served.port, "example.com")
    assert outside.rcode() == dns.rcode.NXDOMAIN and not outside.flags & dns.flags.AA
    assert not outside.authority


def test_apex_soa_and_any(served: Running) -> None:
    soa = ask(served.port, "dmsc", "SOA")
    assert soa.answer[0].rdtype == dns.rdatatype.SOA and soa.answer[0][0].serial == 1
    anything = ask(served.port, "web.service.dmsc", "ANY", tcp=True)
    assert {rrset.rdtype for rrset in anything.answer} == {dns.rdatatype.A, dns.rdatatype.SRV}
    assert len(srv_records(anything)) == 2 and len(addresses(anything)) == 2


def test_dotted_service_names_and_rfc2782_names(served: Running) -> None:
    assert addresses(ask(served.port, "pay.v2.service.dmsc")) == ["127.0.0.9"]
    rfc2782 = ask(served.port, "_web._tcp.service.dmsc", "SRV")
    assert sorted(port for _, _, port, _ in srv_records(rfc2782)) == [8080, 8081]
    assert served.registry.calls[-1] == "web.service.dmsc"
    # A label no registered name could have never reaches the registry.
    before = len(served.registry.calls)
    assert ask(served.port, "we\\032b.service.dmsc").rcode() == dns.rcode.NXDOMAIN
    assert len(served.registry.calls) == before


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("10-0-1-5.addr.dmsc", "10.0.1.5"),
        ("127-0-0-1.ADDR.dmsc", "127.0.0.1"),
        ("300-0-0-1.addr.dmsc", None),
        ("010-0-0-1.addr.dmsc", None),
        ("1-2-3.addr.dmsc", None),
        ("x.10-0-1-5.addr.dmsc", None),
    ],
)
def test_addr_names(served: Running, name: str, expected: str | None) -> None:
    reply = ask(served.port, name)
    if expected is None:
        assert reply.rcode() == dns.rcode.NXDOMAIN
    else:
        assert addresses(reply) == [expected]
        assert not ask(served.port, name, "AAAA").answer


# ---- truncation -----------------------------------------------------------------------


def test_udp_answers_are_truncated_to_the_requesters_size(served: Running) -> None:
    big = {host for host, _ in BIG}
    for options, limit in [
        ({}, 512),
        ({"use_edns": 0, "payload": 1000}, 1000),
        ({"use_edns": 0, "payload": 65000}, EDNS_PAYLOAD),
        ({"use_edns": 0, "payload": 100}, 512),  # below 512 counts as 512 (RFC 6891)
    ]:
        query = dns.message.make_query("big.service.dmsc", "A", **options)  # type: ignore[arg-type]
        wire = exchange(served.port, query.to_wire())
        assert wire is not None and len(wire) <= limit
        reply = dns.message.from_wire(wire)
        assert reply.flags & dns.flags.TC
        got = addresses(reply)
        assert 0 < len(got) < len(BIG) and set(got) <= big
        assert len(wire) > limit - 16  # the records that fit are all there
    full = ask(served.port, "big.service.dmsc", tcp=True)
    assert not full.flags & dns.flags.TC and sorted(addresses(full)) == sorted(big)
    query = dns.message.make_query("big.service.dmsc", "A")
    reply, used_tcp = dns.query.udp_with_fallback(query, LOOPBACK, timeout=2, port=served.port)
    assert used_tcp and len(addresses(reply)) == len(BIG)


def test_glue_that_does_not_fit_is_dropped_without_tc(served: Running) -> None:
    query = dns.message.make_query("srv10.service.dmsc", "SRV")
    wire = exchange(served.port, query.to_wire())
    assert wire is not None and len(wire) <= 512
    reply = dns.message.from_wire(wire)
    assert not reply.flags & dns.flags.TC
    assert len(srv_records(reply)) == len(SRV10)
    assert len(reply.additional) < len(SRV10)


# ---- bad and unsupported messages -----------------------------------------------------

QUERY = header(0x1234, dns.flags.RD, (1, 0, 0, 0)) + question("web.service.dmsc.")


@pytest.mark.parametrize(
    ("wire", "rcode"),
    [
        (b"\x12\x34\x01", None),  # shorter than a header: nothing to answer
        (header(0x1234, dns.flags.QR, (1, 0, 0, 0)) + question("web.service.dmsc."), None),
        (QUERY[:-3], dns.rcode.FORMERR),  # cut inside the question
        (QUERY + b"junk", dns.rcode.FORMERR),
        (header(0x1234, 0, (0, 0, 0, 0)), dns.rcode.FORMERR),
        (
            header(0x1234, 0, (2, 0, 0, 0)) + question("web.service.dmsc.") + question("a.b."),
            dns.rcode.FORMERR,
        ),
        (header(0x1234, 0, (1, 0, 0, 1)) + question("dmsc.") + opt_record() * 2, dns.rcode.FORMERR),
        (header(0x1234, 0, (1, 1, 0, 0)) + question("dmsc.") + opt_record(), dns.rcode.FORMERR),
        (header(0x1234, 0, (1, 0, 0, 0)) + b"\xc0\x0c\x00\x01\x00\x01", dns.rcode.FORMERR),
        (header(0x1234, 0, (1, 0, 0, 0)) + question("dmsc.", 41), dns.rcode.FORMERR),
        (header(0x1234, 0, (1, 0, 0, 0)) + question("dmsc.", 252), dns.rcode.REFUSED),
        (header(0x1234, 0, (1, 0, 0, 0)) + question("dmsc.", 251), dns.rcode.REFUSED),
        (header(0x1234, 0, (1, 0, 0, 0)) + question("dmsc.", 253), dns.rcode.NOTIMP),
        (header(0x1234, 0, (1, 0, 0, 0)) + question("web.service.dmsc.", 1, 3), dns.rcode.REFUSED),
        (
            header(0x1234, 0, (1, 0, 0, 0)) + question("web.service.dmsc.", 1, 255),
            dns.rcode.REFUSED,
        ),
        (header(0x1234, 1 << 11, (1, 0, 0, 0)) + question("dmsc."), dns.rcode.NOTIMP),  # IQUERY
        (header(0x1234, 2 << 11, (0, 0, 0, 0)), dns.rcode.NOTIMP),  # STATUS
        (header(0x1234, 4 << 11, (1, 0, 0, 0)) + question("dmsc.", 6), dns.rcode.NOTIMP),
        (header(0x1234, 5 << 11, (1, 0, 0, 0)) + question("dmsc.", 6), dns.rcode.NOTIMP),
        (header(0x1234, 15 << 11, (9, 9, 9, 9)) + b"\xff" * 7, dns.rcode.NOTIMP),
    ],
    ids=[
        "short",
        "response",
        "cut",
        "trailing-junk",
        "no-question",
        "two-questions",
        "two-opt",
        "opt-in-answer",
        "compression-loop",
        "qtype-opt",
        "axfr",
        "ixfr",
        "mailb",
        "class-chaos",
        "class-any",
        "iquery",
        "status",
        "notify",
        "update",
        "unknown-opcode-garbage",
    ],
)
def test_bad_and_unsupported_messages(served: Running, wire: bytes, rcode: int | None) -> None:
    reply = exchange(served.port, wire, timeout=0.3 if rcode is None else 2)
    if rcode is None:
        assert reply is None
    else:
        assert reply is not None
        assert reply[:2] == b"\x12\x34" and reply[2] & 0x80
        assert (reply[2] >> 3) & 0xF == (wire[2] >> 3) & 0xF  # the opcode is echoed
        assert rcode_of(reply) == rcode
        assert not reply[2] & 0x04  # never authoritative for what it refuses
    assert addresses(ask(served.port, "web.service.dmsc"))  # still serving


def test_edns_version_above_zero_gets_badvers(served: Running) -> None:
    wire = header(7, 0, (1, 0, 0, 1)) + question("web.service.dmsc.") + opt_record(version=1)
    reply = exchange(served.port, wire)
    assert reply is not None
    message = dns.message.from_wire(reply)
    assert message.rcode() == dns.rcode.BADVERS and message.edns == 0 and not message.answer


def test_tsig_signed_queries_get_notauth_badkey(served: Running) -> None:
    query = dns.message.make_query("web.service.dmsc", "A")
    query.use_tsig(dns.tsig.Key("key.", base64.b64encode(b"k" * 32).decode()))
    reply = exchange(served.port, query.to_wire())
    assert reply is not None
    message = dns.message.from_wire(reply, keyring=False)
    assert message.rcode() == dns.rcode.NOTAUTH
    assert message.tsig_error == dns.rcode.BADKEY and not message.answer


def test_a_failing_registry_gets_servfail_and_the_server_goes_on(served: Running) -> None:
    assert ask(served.port, "boom.service.dmsc").rcode() == dns.rcode.SERVFAIL
    assert ask(served.port, "boom.service.dmsc", tcp=True).rcode() == dns.rcode.SERVFAIL
    assert addresses(ask(served.port, "v1.web.service.dmsc")) == ["127.0.0.1"]


def test_sources_on_port_zero_are_not_answered() -> None:
    server = DnsServer(FakeRegistry(), "dmsc")
    # Such datagrams cannot be sent from a socket: the protocol is driven directly instead.
    sent: list[tuple[bytes, object]] = []

    class Transport:
        def sendto(self, data: bytes, addr: object) -> None:
            sent.append((data, addr))

    protocol = _UdpProtocol(server)
    protocol.connection_made(Transport())  # type: ignore[arg-type]
    protocol.datagram_received(QUERY, ("127.0.0.1", 0))
    assert sent == []
    protocol.datagram_received(QUERY, ("127.0.0.1", 5353))
    assert len(sent) == 1 and sent[0][1] == ("127.0.0.1", 5353)


# ---- TCP ------------------------------------------------------------------------------


def framed(message: bytes) -> bytes:
    return len(message).to_bytes(2, "big") + message


def read_framed(sock: socket.socket) -> bytes:
    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    return exactly(int.from_bytes(exactly(2), "big"))


def test_tcp_pipelined_queries_are_answered_in_order(served: Running) -> None:
    first = dns.message.make_query("web.service.dmsc", "A")
    second = dns.message.make_query("v6.service.dmsc", "AAAA")
    with socket.create_connection((LOOPBACK, served.port), timeout=2) as sock:
        sock.sendall(framed(first.to_wire()) + framed(second.to_wire()))
        replies = [dns.message.from_wire(read_framed(sock)) for _ in range(2)]
        assert [reply.id for reply in replies] == [first.id, second.id]
        assert addresses(replies[1]) == ["::1"]
        # A message without even a header ends the stream.
        sock.sendall(framed(b"abc"))
        assert sock.recv(10) == b""
    with socket.create_connection((LOOPBACK, served.port), timeout=2) as sock:
        sock.sendall(b"\x00\x40half")  # then the client goes away mid-message
    assert addresses(ask(served.port, "web.service.dmsc", tcp=True))


def test_tcp_idle_connections_are_closed_and_their_number_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dmsc.dns, "TCP_IDLE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(dmsc.dns, "MAX_TCP_CONNECTIONS", 2)

    async def main() -> None:
        server = DnsServer(FakeRegistry(), "dmsc")
        await server.start(LOOPBACK, 0)
        kept = [await asyncio.open_connection(LOOPBACK, server.port) for _ in range(2)]
        refused_reader, refused_writer = await asyncio.open_connection(LOOPBACK, server.port)
        assert await asyncio.wait_for(refused_reader.read(), 1) == b""  # over the limit
        query = dns.message.make_query("dmsc", "SOA")
        reader, writer = kept[0]
        writer.write(framed(query.to_wire()))
        size = int.from_bytes(await reader.readexactly(2), "big")
        assert dns.message.from_wire(await reader.readexactly(size)).answer
        # Then the idle timeout ends both kept connections.
        for reader, _ in kept:
            assert await asyncio.wait_for(reader.read(), 2) == b""
        for _, writer in [*kept, (refused_reader, refused_writer)]:
            writer.close()
        await server.close()

    uvloop.run(main())


# ---- fuzzing --------------------------------------------------------------------------

PROBE = dns.message.make_query("v1.web.service.dmsc", "A", id=0xBEEF)
SEEDS = [
    QUERY,
    dns.message.make_query("web.service.dmsc", "SRV", use_edns=0, payload=1232).to_wire(),
    dns.message.make_query("big.service.dmsc", "A", want_dnssec=True).to_wire(),
    dns.message.make_query("10-0-1-5.addr.dmsc", "A").to_wire(),
    dns.message.make_query("mixed.service.dmsc", "ANY").to_wire(),
]


@st.composite
def mutated_queries(draw: st.DrawFn) -> bytes:
    wire = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        # Half the changes hit the header (flags, opcode, counts), where parsing diverges.
        where = draw(st.one_of(st.integers(2, 11), st.integers(0, len(wire) - 1)))
        wire[where] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del wire[draw(st.integers(0, len(wire))) :]
    return bytes(wire) + draw(st.binary(max_size=8))


def check_survives(port: int, fuzz: bytes) -> None:
    """Sends `fuzz`, then a probe from another socket: the probe is answered, and the fuzz
    got one well-formed reply if it had a query header (handled first, so already delivered)."""
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as fuzzer,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as prober,
    ):
        fuzzer.sendto(fuzz, (LOOPBACK, port))
        prober.settimeout(2)
        prober.sendto(PROBE.to_wire(), (LOOPBACK, port))
        probe_reply = dns.message.from_wire(prober.recv(65535))
        fuzzer.setblocking(False)
        replies: list[bytes] = []
        with contextlib.suppress(BlockingIOError):
            while True:
                replies.append(fuzzer.recv(65535))
    assert probe_reply.id == PROBE.id and addresses(probe_reply) == ["127.0.0.1"]
    # Only what has no header, or is itself a response, goes unanswered.
    answerable = len(fuzz) >= 12 and not fuzz[2] & 0x80
    assert len(replies) == (1 if answerable else 0)
    for reply in replies:
        assert len(reply) >= 12 and reply[:2] == fuzz[:2] and reply[2] & 0x80
        assert len(reply) <= EDNS_PAYLOAD
        dns.message.from_wire(reply, keyring=False)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fuzz=st.binary(max_size=300))
def test_fuzz_random_bytes_over_udp(served: Running, fuzz: bytes) -> None:
    check_survives(served.port, fuzz)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(fuzz=mutated_queries())
def test_fuzz_mutated_queries_over_udp(served: Running, fuzz: bytes) -> None:
    check_survives(served.port, fuzz)


@settings(max_examples=300, deadline=None)
@given(wire=st.one_of(st.binary(max_size=200), mutated_queries()))
def test_respond_never_raises_and_replies_are_well_formed(wire: bytes) -> None:
    server = DnsServer(FakeRegistry(), "dmsc")
    reply = server.respond(wire)
    if reply is None:
        assert len(wire) < 12 or wire[2] & 0x80
        return
    message = dns.message.from_wire(reply, keyring=False)
    assert message.id == int.from_bytes(wire[:2], "big") and message.flags & dns.flags.QR
    assert len(reply) <= EDNS_PAYLOAD


# ---- lifecycle, arguments ---------------------------------------------------------------


def test_start_serves_udp_and_tcp_on_one_port_and_close_stops_both() -> None:
    async def main() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        server = DnsServer(FakeRegistry(), "Mesh.Local.", ttl=30)
        assert server.domain == "mesh.local" and server.ttl == 30
        await server.start(LOOPBACK, 0)
        port = server.port
        assert port > 0
        # The same name through dnspython's asyncio transports, UDP then TCP.
        query = dns.message.make_query("web.service.mesh.local", "A")
        for reply in [
            await dns.asyncquery.udp(query, LOOPBACK, timeout=2, port=port),
            await dns.asyncquery.tcp(query, LOOPBACK, timeout=2, port=port),
        ]:
            assert reply.rcode() == dns.rcode.NXDOMAIN and reply.flags & dns.flags.AA
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        await server.close()
        assert await reader.read() == b""  # open connections are closed too
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection(LOOPBACK, port)
        with pytest.raises(RuntimeError):
            _ = server.port

    uvloop.run(main())


def test_start_rules() -> None:
    async def main() -> None:
        server = DnsServer(FakeRegistry(), "dmsc")
        with pytest.raises(RuntimeError, match="not started"):
            _ = server.port
        with pytest.raises(ValueError, match=r"^port"):
            await server.start(LOOPBACK, 70000)
        await server.start(LOOPBACK, 0)
        with pytest.raises(RuntimeError, match="already started"):
            await server.start(LOOPBACK, 0)
        # A fixed port that is taken is reported, not silently replaced.
        other = DnsServer(FakeRegistry(), "dmsc")
        with pytest.raises(OSError):
            await other.start(LOOPBACK, server.port)
        await server.close()
        await server.close()  # closing twice is harmless

    uvloop.run(main())


@pytest.mark.parametrize(
    ("domain", "ttl", "field"),
    [
        ("", 0, "domain"),
        (".", 0, "domain"),
        ("bad domain", 0, "domain"),
        ("a..b", 0, "domain"),
        ("dmsc", -1, "ttl"),
        ("dmsc", 2**31, "ttl"),
        ("dmsc", 1.5, "ttl"),
        ("dmsc", True, "ttl"),
    ],
)
def test_bad_arguments_name_the_field(domain: str, ttl: object, field: str) -> None:
    with pytest.raises(ValueError, match=f"^{field}: "):
        DnsServer(FakeRegistry(), domain, ttl)  # type: ignore[arg-type]


def test_addresses_in_answers_are_canonical(served: Running) -> None:
    for text in addresses(ask(served.port, "mixed.service.dmsc", "ANY", tcp=True)):
        assert str(ipaddress.ip_address(text)) == text
