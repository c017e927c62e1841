"""Crew factories for the durable-queue tests and benchmarks (importable by
name from worker processes: the tests pass this directory as crew_path).

``build_crew`` is a real CrewAI crew (one agent, one task) talking to the
``crewcore mockllm`` server named by RUNQ_LLM_URL; its task callback
appends ``<topic> <pid>`` to RUNQ_EXEC_LOG when that is set, so a test
counts how often each input really ran. The others need no CrewAI.
"""

from __future__ import annotations

import os
import time
from typing import Any


def _note(topic: str) -> None:
    log = os.environ.get("RUNQ_EXEC_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{topic} {os.getpid()}\n")


def _task_done(out: Any) -> None:
    _note(out.description.rsplit("about ", 1)[-1].rstrip("."))


def build_crew() -> Any:
    from crewai import LLM, Agent, Crew, Task

    llm = LLM(model="gpt-4o-mini", base_url=os.environ["RUNQ_LLM_URL"], api_key="sk-mockllm")
    agent = Agent(role="Researcher", goal="Research {topic}", backstory="You research.", llm=llm,
                  verbose=False, max_iter=3)
    task = Task(description="Write one line about {topic}.", expected_output="One line.", agent=agent,
                callback=_task_done)
    return Crew(agents=[agent], tasks=[task], verbose=False)


class _Plain:
    """Not a CrewAI crew: kickoff(inputs) returns a dict (or raises)."""

    def kickoff(self, inputs: dict[str, Any]) -> dict[str, Any]:
        if inputs.get("fail"):
            raise ValueError(f"asked to fail: {inputs['fail']}")
        end = time.time() + float(inputs.get("spin", 0))
        while time.time() < end:
            time.sleep(0.01)
        _note(str(inputs.get("topic", "")))
        return {"echo": inputs, "pid": os.getpid(), "at": time.time()}


def plain() -> _Plain:
    return _Plain()


class _Where:
    """Not a CrewAI crew: reports the CPUs its process and threads may use,
    and whether asyncio.to_thread in two asyncio.run calls used one pool."""

    def kickoff(self, inputs: dict[str, Any]) -> dict[str, Any]:
        import asyncio
        import threading

        async def name() -> str:
            return await asyncio.to_thread(lambda: threading.current_thread().name)

        names = [asyncio.run(name()) for _ in range(2)]
        threads = {}
        for t in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{t}/status") as f:
                for line in f:
                    if line.startswith("Cpus_allowed_list:"):
                        threads[t] = line.split(":", 1)[1].strip()
        return {"pid": os.getpid(), "threads": threads, "to_thread": names}


def where() -> _Where:
    return _Where()
