"""Storage layer end to end: a real CrewAI crew against `crewcore mockllm`
with crewcore installed, then CrewAI's own replay path (`crew.replay(task_id)`)
and CrewAI's CLI (`crewai log-tasks-outputs`) on the file crewcore wrote.

Each engine runs in its own child process (a crew run imports all of CrewAI;
the CLI reads the file with Python's sqlite3, so it runs in another process
than the Go engine).
"""

from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys
from typing import Iterator

import pytest

from conftest import REPO, child_env

CREW = """
import json, os, sys
import crewcore
crewcore.install()
from crewai import LLM, Agent, Crew, Task
from crewai.utilities.task_output_storage_handler import TaskOutputStorageHandler
from crewcore.task_outputs import TaskOutputStorage

llm = LLM(model="gpt-4o-mini", base_url=os.environ["MOCK_URL"], api_key="sk-mockllm")
agent = Agent(role="Writer", goal="Write about {topic}", backstory="You write.", llm=llm, verbose=False, max_iter=2)
tasks = [Task(description=f"Step {k}: one line about {{topic}}.", expected_output=f"Line {k}.", agent=agent)
         for k in range(3)]
crew = Crew(agents=[agent], tasks=tasks, verbose=False)
assert isinstance(crew._task_output_handler.storage, TaskOutputStorage)
out = crew.kickoff(inputs={"topic": "otters"})
stored = crew._task_output_handler.load()
first = [(r["task_id"], r["task_index"], r["was_replayed"], r["output"]["raw"]) for r in stored]
replayed = crew.replay(str(tasks[1].id))
after = crew._task_output_handler.load()
sys.stdout.write("RESULT " + json.dumps({
    "engine": crew._task_output_handler.storage.engine,
    "ids": [str(t.id) for t in tasks],
    "first": first,
    "after": [(r["task_id"], r["task_index"], r["was_replayed"], r["inputs"]) for r in after],
    "raw": out.raw, "replayed_raw": replayed.raw,
}) + "\\n")
sys.stdout.flush()
"""


def _binary() -> str:
    for p in (REPO / "python/crewcore/_lib/crewcore", REPO / "bin/crewcore"):
        if p.exists():
            return str(p)
    pytest.fail("the crewcore command is not built (make build)")


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    proc = subprocess.Popen([_binary(), "mockllm", "--addr", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("mockllm listening on "), line
    try:
        yield line.split("mockllm listening on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.mark.parametrize("engine", ["native", "python"])
def test_crew_run_then_replay_and_cli(engine: str, mock_url: str, tmp_path: Path) -> None:
    storage = tmp_path / "crewai"
    env = child_env(
        MOCK_URL=mock_url, OPENAI_API_KEY="sk-mockllm", OPENAI_BASE_URL=mock_url,
        CREWAI_STORAGE_DIR=str(storage), CREWCORE_LOCK_DIR=str(tmp_path / "locks"),
        CREWAI_DISABLE_TRACKING="true", CREWAI_DISABLE_VERSION_CHECK="true",
    )
    if engine == "python":
        env["CREWCORE_FORCE_PYTHON"] = "1"
    run = subprocess.run([sys.executable, "-c", CREW], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    # CrewAI's exit-time panels (another thread) may land on the same line.
    got, _ = json.JSONDecoder().raw_decode(out[out.rindex("RESULT ") + len("RESULT "):])
    assert got["engine"] == engine
    ids = got["ids"]
    assert [(r[0], r[1], r[2]) for r in got["first"]] == [(ids[k], k, 0) for k in range(3)]
    assert all(r[3] for r in got["first"])
    assert got["raw"] and got["replayed_raw"]
    # Replay from task 1 re-ran tasks 1 and 2 and marked them replayed.
    assert [(r[0], r[1], r[2]) for r in got["after"]] == [(ids[0], 0, 0), (ids[1], 1, 1), (ids[2], 2, 1)]
    assert got["after"][1][3] == {"topic": "otters"}

    db = storage / "latest_kickoff_task_outputs.db"
    assert db.exists()
    # CrewAI's CLI reads the same file.
    crewai_cli = Path(sys.executable).with_name("crewai")
    cli = subprocess.run([str(crewai_cli), "log-tasks-outputs"], capture_output=True, text=True, env=env,
                         cwd=str(tmp_path), timeout=180)
    assert cli.returncode == 0, cli.stderr
    for k in range(3):
        assert f"Task {k + 1}: {ids[k]}" in cli.stdout, cli.stdout
        assert f"Expected output: Line {k}." in cli.stdout
    # CrewAI's locks were crewcore's: their files are in the lock directory,
    # none in the working directory.
    assert list((tmp_path / "locks").glob("*.lock"))
    assert not [p for p in tmp_path.rglob("*.lock") if p.parent != tmp_path / "locks"]
