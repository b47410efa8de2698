"""The ``modelroute-operator`` command: flags → Settings → kopf.run."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Sequence

from modelroute import logs, routing
from modelroute.api.base import DNS_SUBDOMAIN_PATTERN
from modelroute.kube import selector
from modelroute.probing.session import CaBundleError, ssl_context
from modelroute.settings import Settings
from modelroute.version import version

_DEFAULTS = Settings()


def parse_args(argv: Sequence[str] | None = None) -> tuple[Settings, argparse.Namespace]:
    """Flags to Settings; defaults come from the Settings dataclass."""
    parser = argparse.ArgumentParser(
        prog="modelroute-operator",
        description="Keep one stable Service pointed at the best healthy LLM backend.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    _add_scope(parser)
    _add_endpoints_and_probes(parser)
    _add_api_client(parser)
    _add_leader_election(parser)
    parser.add_argument("--log-format", choices=("json", "text"), default=_DEFAULTS.log_format)
    parser.add_argument(
        "--log-level", default=_DEFAULTS.log_level, choices=("DEBUG", "INFO", "WARNING", "ERROR")
    )
    args = parser.parse_args(argv)
    _check(parser, args)
    settings = Settings(
        namespaces=tuple(dict.fromkeys(args.namespaces)),
        routing_drivers=args.routing_drivers,
        label_selector=args.label_selector,
        metrics_port=args.metrics_port,
        health_port=args.health_port,
        bind_address=args.bind_address,
        cluster_domain=args.cluster_domain,
        max_connections_per_host=args.max_connections_per_host,
        ca_bundle=args.ca_bundle,
        status_defer_seconds=args.status_defer_seconds,
        first_status_hold_seconds=args.first_status_hold_seconds,
        api_max_in_flight=args.api_max_in_flight,
        api_routing_extra_in_flight=args.api_routing_extra_in_flight,
        api_credentials_refresh_seconds=args.api_credentials_refresh_seconds,
        leader_election=args.leader_election,
        leader_election_namespace=args.leader_election_namespace,
        leader_election_lease=args.leader_election_lease,
        kubeconfig=args.kubeconfig,
        log_format=args.log_format,
        log_level=args.log_level,
    )
    return settings, args


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for port in (args.metrics_port, args.health_port):
        if not 0 <= port <= 65535:
            parser.error(f"port {port} is out of range 0-65535")
    if args.metrics_port and args.metrics_port == args.health_port:
        parser.error(f"--metrics-port and --health-port are both {args.metrics_port}")
    if args.status_defer_seconds < 0:
        parser.error("--status-defer-seconds must be at least 0")
    if args.first_status_hold_seconds < 0:
        parser.error("--first-status-hold-seconds must be at least 0")
    if args.max_connections_per_host < 1:
        parser.error("--max-connections-per-host must be at least 1")
    if args.api_max_in_flight < 1:
        parser.error("--api-max-in-flight must be at least 1")
    if args.api_routing_extra_in_flight < 0:
        parser.error("--api-routing-extra-in-flight must be at least 0")
    domain = args.cluster_domain
    if len(domain) > 253 or not re.fullmatch(DNS_SUBDOMAIN_PATTERN, domain):
        parser.error(f"--cluster-domain {args.cluster_domain!r} is not a DNS domain name")
    if not args.api_credentials_refresh_seconds >= 0:  # NaN too
        parser.error("--api-credentials-refresh-seconds must be at least 0")
    args.routing_drivers = _routing_drivers(parser, args.routing_drivers)
    if args.ca_bundle:
        try:
            ssl_context(args.ca_bundle)
        except CaBundleError as exc:
            parser.error(str(exc))
    try:
        args.label_selector = selector.canonical(args.label_selector)
    except selector.SelectorError as exc:
        parser.error(f"--label-selector: {exc}")
    if args.leader_election_lease is None:
        # Flux's way: a shard's Lease is named after its selector, so shards never share one.
        base = _DEFAULTS.leader_election_lease
        suffix = selector.lease_suffix(args.label_selector) if args.label_selector else ""
        args.leader_election_lease = f"{base}-{suffix}" if suffix else base


def _routing_drivers(parser: argparse.ArgumentParser, value: str | None) -> tuple[str, ...]:
    """``--routing-drivers A,B`` as a tuple of registered driver names (empty: every one)."""
    if value is None:
        return ()
    names = tuple(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    available = ", ".join(routing.names())
    if not names:
        parser.error(f"--routing-drivers needs at least one driver (available: {available})")
    for name in names:
        if name not in routing.names():
            parser.error(
                f"--routing-drivers: unknown routing driver {name!r} (available: {available})"
            )
    return names


def _add_scope(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[],
        dest="namespaces",
        help="watch only this namespace (repeatable; default: all namespaces)",
    )
    parser.add_argument(
        "--routing-drivers",
        default=None,
        metavar="NAME[,NAME...]",
        help="routing drivers to serve, comma-separated, e.g. Service,HTTPRoute; routes asking "
        f"for another are Ready=False (available: {', '.join(routing.names())}; "
        "default: all of them)",
    )
    parser.add_argument(
        "--label-selector",
        default="",
        metavar="SELECTOR",
        help="serve only the ModelRoutes matching this Kubernetes label selector (sharding), "
        "e.g. modelroute.dev/shard=a, or !modelroute.dev/shard for every unlabelled route "
        "(default: all)",
    )
    parser.add_argument(
        "--cluster-domain",
        default=_DEFAULTS.cluster_domain,
        help="the cluster's DNS domain, for ExternalName stable Services (default %(default)s)",
    )


def _add_endpoints_and_probes(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=_DEFAULTS.metrics_port,
        help="Prometheus /metrics port, 0 to disable (default %(default)s)",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=_DEFAULTS.health_port,
        help="/healthz and /readyz port, 0 to disable (default %(default)s)",
    )
    parser.add_argument(
        "--bind-address",
        default=_DEFAULTS.bind_address,
        help="address for the metrics and health endpoints; empty: every IPv4 and IPv6 "
        "address (default %(default)s)",
    )
    parser.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: in-cluster, then $KUBECONFIG)"
    )
    parser.add_argument(
        "--max-connections-per-host",
        type=int,
        default=_DEFAULTS.max_connections_per_host,
        help="probe connections kept per backend host (default %(default)s)",
    )
    parser.add_argument(
        "--status-defer-seconds",
        type=float,
        default=_DEFAULTS.status_defer_seconds,
        help="longest wait for a status change that decides nothing (a counter below its "
        "threshold), written with the next decisive one (default %(default)s)",
    )
    parser.add_argument(
        "--first-status-hold-seconds",
        type=float,
        default=_DEFAULTS.first_status_hold_seconds,
        help="longest wait of a new route's first status for every backend's first probe "
        "verdict: one write instead of one per backend (default %(default)s: no wait)",
    )
    parser.add_argument(
        "--ca-bundle",
        default=None,
        metavar="PEM",
        help="PEM file of extra CA certificates that probes trust besides the system store "
        "(private CAs of vendors or egress gateways)",
    )


def _add_api_client(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-max-in-flight",
        type=int,
        default=_DEFAULTS.api_max_in_flight,
        help="the operator's requests in flight to the API server at once, routing writes "
        "first (default %(default)s)",
    )
    parser.add_argument(
        "--api-routing-extra-in-flight",
        type=int,
        default=_DEFAULTS.api_routing_extra_in_flight,
        help="slots beyond --api-max-in-flight that only routing writes (and the reads they "
        "wait on) may take, as in a mass failover (default %(default)s; 0: none)",
    )
    parser.add_argument(
        "--api-credentials-refresh-seconds",
        type=float,
        default=_DEFAULTS.api_credentials_refresh_seconds,
        help="refresh a rotating API token at most this often, and after a 401 "
        "(seconds, default %(default)s; 0: before every request)",
    )


def _add_leader_election(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--leader-election",
        action="store_true",
        help="run probes and writes only while holding a coordination.k8s.io Lease "
        "(for more than one replica)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=_DEFAULTS.leader_election_namespace,
        help="namespace of the Lease (default: $POD_NAMESPACE, else default)",
    )
    parser.add_argument(
        "--leader-election-lease",
        default=None,
        help=f"name of the Lease (default {_DEFAULTS.leader_election_lease}, or with "
        f"--label-selector {_DEFAULTS.leader_election_lease}-<8 hex digits of the selector>)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the operator until SIGINT/SIGTERM."""
    settings, _ = parse_args(argv)
    logs.configure(settings.log_format, settings.log_level)
    if settings.kubeconfig:
        # kopf's login (through the kubernetes client's loader) reads $KUBECONFIG.
        os.environ["KUBECONFIG"] = settings.kubeconfig
    import kopf

    import modelroute.control.handlers  # noqa: F401  (registers the handlers)

    kopf.run(
        clusterwide=settings.clusterwide,
        namespaces=settings.namespaces,
        standalone=True,  # leader election is the operator's own Lease, not kopf peering
        memo=kopf.Memo(settings=settings),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
