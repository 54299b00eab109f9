"""The node runtime: the process, the dispatcher, the command registry, the context and state.

A node is one process per host (:class:`~megabus.handlers.node.process.Node`).
It serves command requests over the bus, runs each in its own task through
the :class:`~megabus.handlers.node.dispatch.Dispatcher`, and hands every
handler a :class:`~megabus.handlers.node.context.Context` over the node's
:class:`~megabus.handlers.node.state.NodeState`. The cluster services that
commands share live here too: fan-out over a namespace's hosts, the VM
scheduler, status updates, lifecycle events and logs to the bus.
"""
