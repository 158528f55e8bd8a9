"""The kernel projection: desired state, a pure plan and its netlink apply (coming issue)."""
