"""The built-in Go-native tools: FetchTool, FileReadTool, FileListTool (built
on first use by ``crewcore.tools.__getattr__``: they import CrewAI)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from crewcore.tools.executor import _native_timeout
from crewcore.tools.guarded import _base_tool_cls
from crewcore.tools.policy import _MiB

# --------------------------------------------------------------------------
# built-in Go-native tools


def _native_tools() -> tuple[Any, Any, Any]:
    from pydantic import BaseModel, Field

    BaseTool = _base_tool_cls()

    class _FetchArgs(BaseModel):
        url: str = Field(description="The http(s) URL to fetch.")

    class FetchTool(BaseTool):  # type: ignore[misc, valid-type]
        """Fetch a URL over HTTP(S), in Go, without holding the GIL."""

        _crewcore_native: ClassVar[bool] = True
        name: str = "fetch_url"
        description: str = "Fetch a web page or document by URL and return its text."
        args_schema: type[BaseModel] = _FetchArgs
        timeout: float = 10.0
        max_bytes: int = _MiB
        max_redirects: int = 5
        allow_private: bool = False

        def _run(self, url: str) -> str:
            from crewcore import _bridge

            final, status, ctype, body, truncated = _bridge.call(
                [
                    "tool_fetch",
                    0,
                    str(url),
                    _native_timeout(float(self.timeout)) * 1000.0,
                    int(self.max_bytes),
                    int(self.max_redirects) if self.max_redirects else -1,
                    bool(self.allow_private),
                ]
            )
            text = body.decode("utf-8", "replace")
            head = f"URL: {final}\nStatus: {status}\nContent-Type: {ctype}\n\n"
            if truncated:
                text += f"\n[crewcore: the body was cut at {self.max_bytes} bytes]"
            return head + text

    class _ReadArgs(BaseModel):
        path: str = Field(description="Path of the file, relative to the root directory.")

    class FileReadTool(BaseTool):  # type: ignore[misc, valid-type]
        """Read a text file under a root directory (no escape via .. or symlinks).

        Only regular files are read: FIFOs, sockets and devices are refused
        (ToolRefusedError) without being waited on, and every call ends by its
        timeout whatever the file system does. A file with more than one hard
        link is refused unless ``allow_hardlinks=True``: a hard link made inside
        the root to a file outside it would make that file readable.
        """

        _crewcore_native: ClassVar[bool] = True
        name: str = "read_file"
        description: str = "Read a text file; the path is relative to the working directory."
        args_schema: type[BaseModel] = _ReadArgs
        root: str
        max_bytes: int = _MiB
        timeout: float = 10.0
        allow_hardlinks: bool = False

        def _run(self, path: str) -> str:
            from crewcore import _bridge

            data, size, truncated = _bridge.call(
                [
                    "tool_read_file",
                    0,
                    os.path.abspath(self.root),
                    str(path),
                    int(self.max_bytes),
                    _native_timeout(float(self.timeout)) * 1000.0,
                    bool(self.allow_hardlinks),
                ]
            )
            text = data.decode("utf-8", "replace")
            if truncated:
                text += f"\n[crewcore: the file is {size} bytes; cut at {self.max_bytes}]"
            return text

    class _ListArgs(BaseModel):
        path: str = Field(default=".", description="Directory, relative to the root directory.")

    class FileListTool(BaseTool):  # type: ignore[misc, valid-type]
        """List a directory under a root directory (no escape via .. or symlinks).

        Entries that are not regular files or directories are named with
        their kind (symlink, fifo, socket, device) and never opened."""

        _crewcore_native: ClassVar[bool] = True
        name: str = "list_files"
        description: str = "List the files of a directory; the path is relative to the working directory."
        args_schema: type[BaseModel] = _ListArgs
        root: str
        max_entries: int = 1000
        timeout: float = 10.0

        def _run(self, path: str = ".") -> str:
            from crewcore import _bridge

            ents, more = _bridge.call(
                ["tool_list_dir", 0, os.path.abspath(self.root), str(path), int(self.max_entries), _native_timeout(float(self.timeout)) * 1000.0]
            )
            lines = [_entry_line(*e) for e in ents]
            if more:
                lines.append(f"[crewcore: listing cut at {self.max_entries} entries]")
            return "\n".join(lines) if lines else "(empty directory)"

    return FetchTool, FileReadTool, FileListTool


def _entry_line(name: str, is_dir: bool, size: int, kind: str = "") -> str:
    """One line of a listing: ``dir/``, ``file<TAB>N bytes`` or ``name<TAB>(kind...)``."""
    if is_dir:
        return f"{name}/"
    if kind == "symlink":
        return f"{name}\t(symlink)"
    if kind:
        return f"{name}\t({kind}: not readable)"
    return f"{name}\t{size} bytes"
