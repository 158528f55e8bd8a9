"""The kernel projection: this host's desired kernel state and the pure plan to reach it.

`desired(snapshot, host)` derives what the host should hold from the views;
`plan(desired, observed)` gives the ordered operations. Reading the kernel
(observe), carrying the operations out through netlink (apply) and the reconciler
that loops over them are the shell, still to come (issue "The kernel projection").
"""
