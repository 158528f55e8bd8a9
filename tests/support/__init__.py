"""Test-support code: real etcd servers and fault-injection helpers."""
