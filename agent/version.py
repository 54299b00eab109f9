"""The megabus guest agent (2.8's miniccc): its version.

The agent (``megabus agent`` or ``python -m megabus.agent``) runs inside
guests on Python 3.9 or later with msgspec as its only dependency: nothing in
``agent/`` imports nats-py, rich or the node. It dials its node over
virtio-serial, a unix socket or TCP, says who it is, runs the commands it is
handed and sends back their output, files and exit codes. Linux-only calls
live in :mod:`megabus.agent.sysinfo_linux` alone.
"""

VERSION = "0.1.0"
