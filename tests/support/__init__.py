"""Test-support code: real etcd servers, fault injection, network namespaces and the multi-host rig."""
