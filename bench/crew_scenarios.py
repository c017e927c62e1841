"""The crews bench_crew.py runs, built the way a CrewAI project builds them
(agents, tasks, LLMs and the crew made anew for every run, as a ``@CrewBase``
class's ``crew()`` does), and the mockllm script that makes their models
call tools.

(a) sequential: a researcher with one tool and a writer, two tasks, memory
(b) hierarchical: a manager LLM delegating to three agents, memory
(c) a Flow with ``@persist`` whose step runs crew (a)
(d) crew (a) built once, run over many inputs (kickoff_many / kickoff_for_each_async)
"""

from __future__ import annotations

from typing import Any

#: mockllm chat script: the researcher calls its tool once per task, the
#: manager delegates once per task; everything else gets mockllm's
#: deterministic answers (which echo the prompt's key words and recalled
#: memories, so equal inputs and equal memories give equal outputs).
SCRIPT = [
    {"match": "TOOLUSER", "in": "system",
     "tool_calls": [{"name": "lookup", "arguments": {"topic": "the assigned topic"}}]},
    {"match": "MANAGERROLE", "in": "system",
     "tool_calls": [{"name": "delegate_work_to_coworker",
                     "arguments": {"task": "Research the topic and report one fact.",
                                   "context": "The crew needs one fact.", "coworker": "Researcher"}}]},
]


def _lookup_tool() -> Any:
    from crewai.tools import tool

    @tool("lookup")
    def lookup(topic: str) -> str:
        """Look up one documented fact about a topic."""
        return f"Documented fact about {topic}: it was reviewed in the 2025 audit."

    return lookup


def sequential_crew() -> Any:
    """(a): 2 agents, 2 tasks, memory, one tool."""
    from crewai import LLM, Agent, Crew, Task

    researcher = Agent(role="Researcher", goal="Find facts about {topic}",
                       backstory="You research topics with the lookup tool (TOOLUSER).",
                       llm=LLM(model="gpt-4o-mini"), tools=[_lookup_tool()], verbose=False)
    writer = Agent(role="Writer", goal="Write about {topic}", backstory="You write short summaries.",
                   llm=LLM(model="gpt-4o-mini"), verbose=False)
    t1 = Task(description="Find one fact about {topic}.", expected_output="One fact.", agent=researcher)
    t2 = Task(description="Summarize the fact about {topic} in one line.", expected_output="One line.",
              agent=writer, context=[t1])
    return Crew(agents=[researcher, writer], tasks=[t1, t2], memory=True, verbose=False)


def hierarchical_crew() -> Any:
    """(b): a manager LLM and 3 agents, memory."""
    from crewai import LLM, Agent, Crew, Process, Task

    agents = [
        Agent(role="Researcher", goal="Find facts about {topic}", backstory="You research topics.",
              llm=LLM(model="gpt-4o-mini"), verbose=False, allow_delegation=False),
        Agent(role="Analyst", goal="Analyse {topic}", backstory="You analyse findings.",
              llm=LLM(model="gpt-4o-mini"), verbose=False, allow_delegation=False),
        Agent(role="Writer", goal="Write about {topic}", backstory="You write short summaries.",
              llm=LLM(model="gpt-4o-mini"), verbose=False, allow_delegation=False),
    ]
    manager = Agent(role="Manager", goal="Coordinate the crew on {topic}",
                    backstory="You delegate work to your coworkers (MANAGERROLE).",
                    llm=LLM(model="gpt-4o-mini"), allow_delegation=True, verbose=False)
    tasks = [
        Task(description="Report one fact about {topic}.", expected_output="One fact."),
        Task(description="Write a one-line summary about {topic}.", expected_output="One line."),
    ]
    return Crew(agents=agents, tasks=tasks, process=Process.hierarchical, manager_agent=manager,
                memory=True, verbose=False)


def flow_class() -> Any:
    """(c): a Flow with @persist whose start step runs crew (a)."""
    from crewai.flow.flow import Flow, start
    from crewai.flow.persistence import persist
    from pydantic import BaseModel

    class ResearchState(BaseModel):
        id: str = ""
        topic: str = ""
        summary: str = ""

    @persist()
    class ResearchFlow(Flow[ResearchState]):
        @start()
        def research(self) -> str:
            out = sequential_crew().kickoff(inputs={"topic": self.state.topic})
            self.state.summary = out.raw
            return out.raw

    return ResearchFlow


_shared_crew: list[Any] = []


def run_once(scenario: str, topic: str, flow_cls: Any = None) -> str:
    """One run of a scenario for one input: build and kick off; the final text.
    "d" is one run of scenario (d) on one thread: a copy of one crew built
    once (what kickoff_many and kickoff_for_each_async run per input)."""
    if scenario == "d":
        if not _shared_crew:
            _shared_crew.append(sequential_crew())
        return str(_shared_crew[0].copy().kickoff(inputs={"topic": topic}).raw)
    if scenario == "a":
        return str(sequential_crew().kickoff(inputs={"topic": topic}).raw)
    if scenario == "b":
        return str(hierarchical_crew().kickoff(inputs={"topic": topic}).raw)
    if scenario == "c":
        return str(flow_cls().kickoff(inputs={"topic": topic}))
    raise ValueError(f"unknown scenario {scenario!r}")
