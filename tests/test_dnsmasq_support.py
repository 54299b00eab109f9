"""The DNS packets of ``dnslab.py``'s test client and server."""

from __future__ import annotations

from dnslab import _qname, dns_answer, dns_query, parse_answer


def test_dns_packets_round_trip() -> None:
    q = dns_query("web.test", 7)
    assert _qname(q)[0] == "web.test"
    assert parse_answer(dns_answer(q, "10.1.2.3")) == (0, ["10.1.2.3"])
    assert parse_answer(dns_answer(q, None)) == (3, [])
