"""VMs of a node: the record, the table across namespaces, the KVM runtime, ``vm info``."""
