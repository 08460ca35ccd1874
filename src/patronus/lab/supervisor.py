"""The lab supervisor: one long-running process that owns everything a running lab is made of.

``patronus lab up`` starts it detached (``patronus lab serve``) and waits for its ready file. In order it
builds the lab network and the delay relay, a real control plane with the CRDs, runs the operator in
its own event loop, declares the Sites, a full Mesh and two example Policies, then gives every site an
agent: a process inside the site's network namespace (and in its own mount namespace, because
wireguard-go keeps its control sockets in ``/var/run/wireguard`` and every site uses the same interface
names), with its own ServiceAccount token and a forwarder that makes the API server reachable on the
site's ``127.0.0.1:6443``.

Every step is registered for undoing the moment it has been done, on one exit stack, so SIGTERM, SIGINT
or a failure half-way all unwind the same way, in reverse: agents, forwarders, operator, control plane,
relay, network; then the state directory is removed except its ``logs``. An agent that fails is logged
and left alone: the lab is still useful (and testable) without one.

Once ready it answers requests on its control socket (:mod:`patronus.lab.control`): ``patronus lab
apiserver stop|start`` takes the API server away and brings it back while everything else runs.

The parts: :mod:`.steps` (each step and its undo), :mod:`.manifests` (what the lab declares),
:mod:`.agents` (the agent processes), :mod:`.operator` (the operator's task) and :mod:`.files` (the
lab's files, shared with the CLI).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import traceback
from pathlib import Path

from patronus.lab.files import LabFiles, write_atomic
from patronus.lab.manifests import LAB_NAMESPACE, MESH_NAME, PATH_MONITORING, UNDERLAYS, site_names
from patronus.lab.plan import plan_lab
from patronus.lab.steps import Stopped, Supervisor
from patronus.runtime.logs import configure_logging

# What scripts and tests that drive a lab take from here.
__all__ = ["LAB_NAMESPACE", "MESH_NAME", "PATH_MONITORING", "LabFiles", "serve"]


async def _bring_up(supervisor: Supervisor) -> None:
    supervisor.build_network()
    supervisor.check_stop()
    await supervisor.start_control_plane()
    supervisor.check_stop()
    await supervisor.start_operator()
    await supervisor.declare()
    await supervisor.start_forwarders()
    await supervisor.start_agents()
    await supervisor.start_observability()
    await supervisor.start_control()
    supervisor.write_ready()


async def serve(sites: int = 3, prefix: str = "pl", state_dir: Path | None = None) -> int:
    """Run a lab of ``sites`` sites until SIGTERM or SIGINT; returns the exit code (0 after a clean stop).

    Whatever happens, on return nothing of the lab is left: no namespace, interface or process, and of
    the state directory only ``logs``.
    """
    if sites < 2:
        raise ValueError("a lab needs at least 2 sites (the example policies run from a to b)")
    files = LabFiles(state_dir) if state_dir is not None else LabFiles.for_prefix(prefix)
    files.logs.mkdir(parents=True, exist_ok=True)
    files.progress.unlink(missing_ok=True)
    files.ready.unlink(missing_ok=True)
    plan = plan_lab(site_names(sites), UNDERLAYS, prefix)
    files.save_plan(plan)
    write_atomic(files.pid, f"{os.getpid()}\n")
    configure_logging("info", "console")
    loop = asyncio.get_running_loop()
    code = 0
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(files.clean)  # registered first, so it runs last
        supervisor = Supervisor(plan, files, stack)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stopping.set)
            stack.callback(loop.remove_signal_handler, signum)
        stack.callback(supervisor.say, "stopped; nothing of the lab is left")
        try:
            await _bring_up(supervisor)
            code = await supervisor.run_until_stopped()
        except Stopped:
            supervisor.say("stop requested while starting")
        except Exception as error:
            traceback.print_exc()
            supervisor.say(f"failed: {error}")
            code = 1
        finally:
            supervisor.say("stopping: agents, forwarders, operator, control plane, relay, network")
    return code
