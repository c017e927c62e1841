#!/usr/bin/env python3
"""End-to-end smoke test: CrewAI's real OpenAI client against `crewcore mockllm`.

Runs, against the mock server and with CrewAI's native OpenAI provider (the
`openai` SDK):

  1. crewai.LLM(model="gpt-4o-mini").call(...)  -- plain, streaming, and
     structured output (response_model -> response_format json_schema);
  2. a Crew of two agents with two sequential tasks, no memory;
  3. crewai.memory.Memory(embedder=openai text-embedding-3-small,
     llm="gpt-4o-mini"): remember() with LLM analysis, recall() shallow and
     deep (a long query, so the LLM query analysis runs);
  4. a Crew with memory=True run twice; the second run must show the
     memories the first one saved (the mock echoes recalled memories);
  5. (scripted server only) an agent with a custom tool: the script
     crewai_smoke_script.json makes the model call it natively
     (tool_calls), CrewAI runs it and the next answer reports its result.

It fails (exit 1) on any exception, on any warning/error logged by CrewAI's
memory code (CrewAI swallows LLM failures there and only logs them), and
when the server's /stats counters show the calls did not happen.

Usage (from the repository root):

    # against a running server
    OPENAI_BASE_URL=http://127.0.0.1:PORT/v1 .venv/bin/python internal/mockllm/testdata/crewai_smoke.py

    # or let the script build and start one (`go build ./cmd/crewcore`, or
    # the binary named by $CREWCORE_BIN, run as `crewcore mockllm --addr
    # 127.0.0.1:0 --script internal/mockllm/testdata/crewai_smoke_script.json`)
    .venv/bin/python internal/mockllm/testdata/crewai_smoke.py

Part 5 needs the server to run with crewai_smoke_script.json: it runs when
the script started the server itself, or when SMOKE_SCRIPTED=1.

Environment it sets for itself when unset: OPENAI_API_KEY=sk-mockllm,
CREWAI_DISABLE_TELEMETRY=true, CREWAI_DISABLE_TRACKING=true,
OTEL_SDK_DISABLED=true, CREWAI_TRACING_ENABLED=false,
CREWAI_DISABLE_VERSION_CHECK=true, and CREWAI_STORAGE_DIR=<fresh temp dir>
(memory storage; kept only with --keep).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
SCRIPT = Path(__file__).resolve().with_name("crewai_smoke_script.json")


def start_server(tmp: str) -> tuple[subprocess.Popen, str]:
    """Start `crewcore mockllm --addr 127.0.0.1:0` and return (proc, base_url).

    The binary is $CREWCORE_BIN or built into tmp with `go build` (not
    `go run`, whose child process would outlive a terminated `go run`).
    """
    binary = os.environ.get("CREWCORE_BIN")
    if not binary:
        binary = os.path.join(tmp, "crewcore")
        subprocess.run(["go", "build", "-o", binary, "./cmd/crewcore"], cwd=REPO, check=True)
    cmd = [binary, "mockllm", "--addr", "127.0.0.1:0", "--script", str(SCRIPT)]
    if os.environ.get("MOCKLLM_LOG"):
        cmd.append("--log")
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the server prints it once listening
    if line.startswith("mockllm listening on "):
        return proc, line.split("mockllm listening on ", 1)[1].strip()
    proc.kill()
    raise SystemExit(f"crewcore mockllm did not report its address (got {line!r})")


def stats(base_url: str) -> dict:
    root = base_url.rstrip("/")
    if root.endswith("/v1"):
        root = root[: -len("/v1")]
    with urllib.request.urlopen(root + "/stats", timeout=10) as resp:
        return json.load(resp)


class Problems(logging.Handler):
    """Collects WARNING+ records from CrewAI's loggers."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("crewai", "root")) or record.name == "":
            self.records.append(f"{record.name}: {record.getMessage()}")


def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)
    print(f"  ok: {what}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep", action="store_true", help="keep the CREWAI_STORAGE_DIR temp dir")
    args = ap.parse_args()

    proc = None
    bindir = tempfile.mkdtemp(prefix="crewcore-bin-")
    if not os.environ.get("OPENAI_BASE_URL"):
        proc, url = start_server(bindir)
        os.environ["OPENAI_BASE_URL"] = url
    base_url = os.environ["OPENAI_BASE_URL"]
    defaults = {
        "OPENAI_API_KEY": "sk-mockllm",
        "CREWAI_DISABLE_TELEMETRY": "true",
        "CREWAI_DISABLE_TRACKING": "true",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "CREWAI_DISABLE_VERSION_CHECK": "true",
    }
    for k, v in defaults.items():
        os.environ.setdefault(k, v)
    storage = None
    if not os.environ.get("CREWAI_STORAGE_DIR"):
        storage = tempfile.mkdtemp(prefix="crewai-smoke-")
        os.environ["CREWAI_STORAGE_DIR"] = storage
    print(f"mock server: {base_url}; storage: {os.environ['CREWAI_STORAGE_DIR']}")

    problems = Problems()
    logging.getLogger().addHandler(problems)
    scripted = proc is not None or os.environ.get("SMOKE_SCRIPTED") == "1"
    try:
        run_checks(base_url, problems, scripted)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(bindir, ignore_errors=True)
        if storage and not args.keep:
            shutil.rmtree(storage, ignore_errors=True)
    print("crewai smoke test: all checks passed")
    return 0


def embedder_spec() -> dict:
    """The OpenAI embedder config for Memory / Crew(embedder=...).

    CrewAI 1.15.30 quirk: {"config": {"model": ...}} fails inside CrewAI
    (OpenAIProvider copies "model" to "model_name" but also passes "model"
    on to chromadb's OpenAIEmbeddingFunction -> TypeError), before any
    request is made. "model_name" works. Use "model" if a fixed CrewAI
    accepts it.
    """
    from crewai.rag.embeddings.factory import build_embedder

    spec = {"provider": "openai", "config": {"model": "text-embedding-3-small"}}
    try:
        build_embedder(spec)
        return spec
    except TypeError as e:
        print(f"  note: CrewAI rejects embedder config 'model' ({e}); using 'model_name'")
    return {"provider": "openai", "config": {"model_name": "text-embedding-3-small"}}


def run_checks(base_url: str, problems: Problems, scripted: bool) -> None:
    # Imported late: the environment above must be in place first.
    from pydantic import BaseModel, Field

    from crewai import LLM, Agent, Crew, Process, Task
    from crewai.memory import Memory

    before = stats(base_url)

    # 1. Direct LLM calls.
    print("1. LLM calls")
    llm = LLM(model="gpt-4o-mini")
    check(type(llm).__name__ == "OpenAICompletion", f"native OpenAI provider ({type(llm).__name__})")
    out = llm.call("What is the capital of France?")
    check(isinstance(out, str) and "Final Answer:" in out and "france" in out.lower(), f"plain call: {out!r}")
    out = llm.call([
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Name three colors of the rainbow."},
    ])
    check("rainbow" in out.lower(), "messages call mentions the prompt")

    streaming = LLM(model="gpt-4o-mini", stream=True)
    sout = streaming.call("Stream a haiku about autumn leaves.")
    check(isinstance(sout, str) and "autumn" in sout.lower(), f"streaming call: {sout!r}")

    class Step(BaseModel):
        title: str
        minutes: int = Field(ge=1, le=120)

    class Plan(BaseModel):
        goal: str
        steps: list[Step]
        priority: str | None = None
        confidence: float = Field(ge=0, le=1)

    plan = llm.call("Plan a one-hour study session on vector databases.", response_model=Plan)
    check(isinstance(plan, Plan), f"structured output parsed: {plan!r}")
    splan = streaming.call("Plan a short walk in the park.", response_model=Plan)
    check(isinstance(splan, Plan), f"streaming structured output parsed: {splan!r}")

    # 2. A two-agent, two-task sequential crew, no memory.
    print("2. Crew without memory")
    researcher = Agent(
        role="Researcher",
        goal="Find facts about {topic}",
        backstory="A careful analyst.",
        llm=LLM(model="gpt-4o-mini"),
        verbose=False,
    )
    writer = Agent(
        role="Writer",
        goal="Write clear summaries",
        backstory="A concise technical writer.",
        llm=LLM(model="gpt-4o-mini"),
        verbose=False,
    )
    t1 = Task(
        description="Research the main benefits of {topic} for small teams.",
        expected_output="A bullet list of benefits.",
        agent=researcher,
    )
    t2 = Task(
        description="Write a short summary of the research about {topic}.",
        expected_output="One paragraph.",
        agent=writer,
    )
    crew = Crew(agents=[researcher, writer], tasks=[t1, t2], process=Process.sequential, verbose=False)
    result = crew.kickoff(inputs={"topic": "embedded vector search"})
    check(len(result.tasks_output) == 2, "two task outputs")
    check("benefits" in result.tasks_output[0].raw.lower(), f"task 1 output: {result.tasks_output[0].raw!r}")
    check("summary" in result.raw.lower() and "Final Answer" not in result.raw, f"crew output: {result.raw!r}")

    # 3. Standalone Memory with LLM analysis.
    print("3. Memory remember/recall")
    embedder = embedder_spec()
    memory = Memory(embedder=embedder, llm="gpt-4o-mini")
    s0 = stats(base_url)
    rec = memory.remember("The Atlas project deadline is March 5 and Priya owns the launch checklist.")
    s1 = stats(base_url)
    check(rec is not None and rec.content.startswith("The Atlas project"), f"remember() -> {rec!r}")
    check(s1["structured"] > s0["structured"], "remember() asked for structured analysis (json_schema)")
    check(rec.scope not in ("", None) and len(rec.categories) > 0, f"LLM-inferred scope {rec.scope!r} and categories {rec.categories!r}")
    check(rec.embedding is not None and len(rec.embedding) == 1536, "1536-dim embedding stored")
    memory.remember("Team lunch is on Fridays at the Italian place near the office.")
    memory.drain_writes()

    shallow = memory.recall("Atlas deadline", depth="shallow")
    check(bool(shallow) and "Atlas" in shallow[0].record.content, f"shallow recall top hit: {shallow[0].record.content if shallow else None!r}")
    deep = memory.recall("When is the Atlas project deadline?")
    check(bool(deep) and "Atlas" in deep[0].record.content, "deep recall (short query) finds the Atlas memory")
    long_query = (
        "I am preparing the quarterly planning meeting and I need to know everything we have "
        "recorded about the Atlas project: in particular the deadline for the launch, who owns "
        "the launch checklist, and any other commitments the team made about it recently."
    )
    check(len(long_query) >= 200, "long query exceeds query_analysis_threshold")
    s2 = stats(base_url)
    deep_long = memory.recall(long_query, depth="deep")
    s3 = stats(base_url)
    check(s3["structured"] > s2["structured"], "deep recall of a long query ran the LLM query analysis")
    check(bool(deep_long) and any("Atlas" in m.record.content for m in deep_long), "deep recall (long query) finds the Atlas memory")
    # A near-duplicate triggers consolidation (similarity above 0.85).
    memory.remember("The Atlas project deadline is March 5 and Priya owns the launch checklist!")
    memory.drain_writes()
    check(len(memory.list_records(limit=50)) >= 2, "records listed after consolidation")

    # 4. Crew with memory=True, run twice.
    print("4. Crew with memory=True")

    def memory_crew() -> Crew:
        analyst = Agent(
            role="Project Analyst",
            goal="Track project facts",
            backstory="Remembers what matters.",
            llm=LLM(model="gpt-4o-mini"),
            verbose=False,
        )
        task = Task(
            description="Report the launch date of the Zephyr satellite project and its owner.",
            expected_output="The launch date and owner.",
            agent=analyst,
        )
        return Crew(
            agents=[analyst],
            tasks=[task],
            memory=True,
            embedder=embedder,
            verbose=False,
        )

    first = memory_crew().kickoff()
    check("zephyr" in first.raw.lower(), f"first memory crew output: {first.raw!r}")
    second = memory_crew().kickoff()
    print(f"     second run output: {second.raw!r}")
    check("Recalled memories:" in second.raw and "zephyr" in second.raw.lower(), "second run recalled the first run's memory")

    # 5. Native tool calling driven by the server's script.
    if scripted:
        print("5. Scripted native tool call")
        from crewai.tools import tool

        calls: list[str] = []

        @tool("city_population")
        def city_population(city: str) -> str:
            """Return the number of inhabitants of a city."""
            calls.append(city)
            return f"{city} has 545,000 inhabitants."

        s4 = stats(base_url)
        geographer = Agent(
            role="Geographer",
            goal="Answer questions about cities",
            backstory="Knows where to look things up.",
            llm=LLM(model="gpt-4o-mini"),
            tools=[city_population],
            verbose=False,
        )
        task = Task(
            description="Look up the population of Lisbon and report it.",
            expected_output="The population.",
            agent=geographer,
        )
        out = Crew(agents=[geographer], tasks=[task], verbose=False).kickoff()
        s5 = stats(base_url)
        check(calls == ["Lisbon"], f"CrewAI executed the scripted tool call ({calls})")
        check(s5["tool_calls"] > s4["tool_calls"] and s5["scripted"] > s4["scripted"], "server answered with tool_calls")
        check("Tool result: Lisbon has 545,000 inhabitants." in out.raw, f"final answer reports the tool result: {out.raw!r}")
    else:
        print("5. (skipped: server not started with crewai_smoke_script.json; set SMOKE_SCRIPTED=1 if it was)")

    after = stats(base_url)
    check(after["chat"] > before["chat"] and after["embeddings"] > before["embeddings"], f"server stats {after}")
    check(after["streamed"] > before["streamed"], "streaming requests reached the server")
    bad = [p for p in problems.records if "memory" in p.lower() or "failed" in p.lower() or "error" in p.lower()]
    check(not bad, f"no CrewAI warnings/errors logged ({bad})")


if __name__ == "__main__":
    sys.exit(main())
