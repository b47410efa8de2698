"""The peer: LiteLLM's Router with background health checks and fallbacks, in its own process.

``python -m bench.peer_litellm CONFIG_JSON``; talks JSON lines on stdout, reads commands on
stdin (``traffic``, ``stop``; EOF stops too). Fully offline: the local model cost map
(LITELLM_LOCAL_MODEL_COST_MAP=True) and the tiktoken files litellm ships; no downloads.

LiteLLM runs background health checks in its proxy server (``background_health_checks`` with
``health_check_interval``), whose loop feeds the Router's health state
(``enable_health_check_routing``). The proxy module needs the web stack (FastAPI & co.), so this
runner drives the very same pieces the proxy loop uses -- ``perform_health_check`` and the
Router's ``health_state_cache`` plus cooldowns for unhealthy deployments -- in the same order:
check every deployment, write the states, then ``sleep(health_check_interval)``.

Topology (what a LiteLLM user writes for "vendor first, in-house when the vendor is down"):
one model group ``chat`` with the vendor (``order: 1``) and the in-house backend
(``order: 2``), health-check routing on, and a fallback group ``chat-backup`` (the in-house
backend again, not health-checked twice) so that requests failing before the health check
notices are retried there.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import sys
import time
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("LITELLM_LOG", "ERROR")

TRAFFIC_HEADER = "X-Bench-Traffic"


def say(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def model_list(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    timeout = cfg["timeout_s"]
    vendor = {
        "model_name": "chat",
        "litellm_params": {
            "model": "openai/gpt-4o",
            "api_base": cfg["vendor_url"] + "/v1",
            "api_key": cfg["vendor_key"],
            "order": 1,
            "timeout": timeout,
        },
        "model_info": {"id": "vendor", "health_check_timeout": timeout},
    }
    inhouse_params = {
        "model": "openai/llama-3.1-70b-instruct",
        "api_base": cfg["inhouse_url"] + "/v1",
        "api_key": "not-needed",
        "timeout": timeout,
    }
    inhouse = {
        "model_name": "chat",
        "litellm_params": {**inhouse_params, "order": 2},
        "model_info": {"id": "inhouse", "health_check_timeout": timeout},
    }
    backup = {
        "model_name": "chat-backup",
        "litellm_params": dict(inhouse_params),
        "model_info": {"id": "inhouse-backup", "disable_background_health_check": True},
    }
    return [vendor, inhouse, backup]


async def main(cfg: dict[str, Any]) -> None:
    import litellm
    from litellm import Router
    from litellm.proxy.health_check import build_deployment_health_states, perform_health_check
    from litellm.router_utils.cooldown_handlers import set_cooldown_deployments
    from litellm.router_utils.router_callbacks.track_deployment_metrics import (
        increment_deployment_failures_for_current_minute,
    )

    litellm.telemetry = False
    litellm.suppress_debug_info = True
    models = model_list(cfg)
    router = Router(
        model_list=models,
        fallbacks=[{"chat": ["chat-backup"]}],
        enable_health_check_routing=True,
        num_retries=0,
        disable_cooldowns=not cfg["cooldowns"],
    )
    interval = cfg["interval_s"]
    checked = [m for m in models if not m["model_info"].get("disable_background_health_check")]
    probes = 0
    first_cycle = asyncio.Event()

    async def health_loop() -> None:
        # The proxy's _run_background_health_check, minus Redis/DB: check, write, sleep.
        nonlocal probes
        while True:
            healthy, unhealthy, exceptions = await perform_health_check(
                model_list=checked, details=False, router=router
            )
            probes += len(checked)
            states = build_deployment_health_states(
                healthy_endpoints=healthy, unhealthy_endpoints=unhealthy
            )
            if states:
                router.health_state_cache.set_deployment_health_states(states)
            for endpoint in unhealthy:  # as _write_health_state_to_router_cache does
                model_id = endpoint.get("model_id")
                exc = exceptions.get(model_id) if model_id else None
                if exc is None:
                    continue
                increment_deployment_failures_for_current_minute(
                    litellm_router_instance=router, deployment_id=model_id
                )
                set_cooldown_deployments(
                    litellm_router_instance=router,
                    original_exception=exc,
                    exception_status=getattr(exc, "status_code", 500),
                    deployment=model_id,
                    time_to_cooldown=router.cooldown_time,
                )
            first_cycle.set()
            await asyncio.sleep(interval)

    sent = ok = failed = 0
    served_by: dict[str, int] = {}

    async def one_request() -> None:
        nonlocal ok, failed
        try:
            response = await router.acompletion(
                model="chat",
                messages=[{"role": "user", "content": "ping"}],
                max_tokens=1,
                extra_headers={TRAFFIC_HEADER: "1"},
            )
            ok += 1
            model_id = (getattr(response, "_hidden_params", None) or {}).get("model_id", "?")
            served_by[model_id] = served_by.get(model_id, 0) + 1
        except Exception:
            failed += 1

    async def traffic() -> None:
        nonlocal sent
        period = 1.0 / cfg["rps"]
        tasks: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while True:
            task = asyncio.create_task(one_request())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            sent += 1
            next_at += period
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    checker = asyncio.create_task(health_loop())
    await asyncio.wait_for(first_cycle.wait(), 60)
    say(event="ready")
    # Quiet window: health checks only, for the CPU cost per probe.
    cpu0, probes0, t0 = cpu_seconds(), probes, time.monotonic()
    await asyncio.sleep(cfg["quiet_s"])
    say(
        event="quiet",
        cpu_s=cpu_seconds() - cpu0,
        probes=probes - probes0,
        window_s=time.monotonic() - t0,
    )
    sender: asyncio.Task[None] | None = None
    deadline = loop.time() + cfg["max_s"]
    while True:
        try:
            line = await asyncio.wait_for(reader.readline(), max(0.1, deadline - loop.time()))
        except TimeoutError:
            break
        command = line.decode().strip()
        if command == "traffic" and sender is None:
            sender = asyncio.create_task(traffic())
            say(event="traffic")
        elif command in ("stop", ""):
            break
    for task in (sender, checker):
        if task is not None:
            task.cancel()
    say(event="done", sent=sent, ok=ok, failed=failed, served_by=served_by, probes=probes)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
