"""Test harness: a real kube-apiserver + etcd, and helpers around it."""
