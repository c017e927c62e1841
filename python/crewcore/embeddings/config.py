"""What a CrewAI embedder configuration means: which client, endpoint and
model it resolves to, the key under which equal configurations share one
embedder, and the cache namespace of its vectors.

A configuration is what CrewAI passes to ``build_embedder``: a dict
``{"provider": ..., "config": {...}}`` or a provider instance
(``crewai.rag.core.base_embeddings_provider.BaseEmbeddingsProvider``).
CrewAI's own provider class validates it (so the environment variables it
reads are read the same way), and for the OpenAI-compatible providers
(``openai``, ``azure``, ``openrouter``) the endpoint, key, headers and
``dimensions`` are resolved exactly as chromadb's ``OpenAIEmbeddingFunction``
and the ``openai`` client resolve them. Nothing here imports another
crewcore capability.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import functools
import hashlib
import json
import os
from typing import Any

#: Providers whose embedding function is chromadb's OpenAIEmbeddingFunction
#: over an OpenAI-compatible /embeddings API: served by the Go client.
API_PROVIDERS = ("openai", "azure", "openrouter")

#: Providers never shared: the callable is the user's own object.
UNSHARED_PROVIDERS = ("custom",)

#: Environment variables the OpenAI embedding function and client read at
#: construction; part of the share key so a change makes a new embedder.
_ENV = ("OPENAI_API_KEY", "CHROMA_OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID",
        "OPENAI_PROJECT_ID", "OPENAI_CUSTOM_HEADERS", "AZURE_OPENAI_ENDPOINT")


@dataclass(frozen=True)
class ApiConfig:
    """An OpenAI-compatible endpoint, resolved."""

    provider: str
    model: str
    base_url: str
    api_key: str
    dimensions: int = 0  # sent as "dimensions" when > 0
    headers: dict[str, str] = field(default_factory=dict)
    azure_deployment: str = ""
    azure_api_version: str = ""

    def endpoint(self) -> str:
        """The URL the vectors come from (no key, no query)."""
        base = self.base_url.rstrip("/")
        if self.azure_deployment:
            return f"{base}/openai/deployments/{self.azure_deployment}/embeddings"
        return f"{base}/embeddings"

    def namespace(self) -> str:
        """The cache namespace: provider|endpoint|model|dimensions (as Go's embed.Namespace)."""
        return f"{self.provider}|{self.endpoint()}|{self.model}|{self.dimensions}"

    def go_config(self, **client: Any) -> dict[str, Any]:
        """The JSON configuration of the Go client (embed.ParseConfig)."""
        out: dict[str, Any] = {"provider": self.provider, "base_url": self.base_url,
                               "api_key": self.api_key, "model": self.model,
                               "dimensions": self.dimensions, "headers": dict(self.headers)}
        if self.azure_deployment:
            out["azure_deployment"] = self.azure_deployment
            out["azure_api_version"] = self.azure_api_version
        out.update({k: v for k, v in client.items() if v is not None})
        return out


@dataclass(frozen=True)
class Resolved:
    """A configuration resolved: ``key`` (None: not shareable), ``api`` (an
    OpenAI-compatible endpoint served by crewcore's client, else None) and
    ``namespace`` (cache namespace, "" when its vectors are not cached)."""

    key: tuple[Any, ...] | None
    api: ApiConfig | None
    namespace: str
    provider: str


NOT_SHARED = Resolved(None, None, "", "")


def _digest(value: Any) -> str:
    """A stable digest of a JSON-able value (secrets never kept in clear)."""
    raw = json.dumps(value, sort_keys=True, default=repr, separators=(",", ":"))
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def _provider_of(spec: Any) -> tuple[str, Any] | None:
    """(provider name, validated provider object) or None."""
    try:
        from crewai.rag.core.base_embeddings_provider import BaseEmbeddingsProvider
    except ImportError:  # pragma: no cover - CrewAI always has it
        return None
    if isinstance(spec, BaseEmbeddingsProvider):
        name = _provider_name(f"{type(spec).__module__}.{type(spec).__name__}")
        return (name, spec) if name else None
    if not isinstance(spec, dict):
        return None
    name = spec.get("provider")
    if not isinstance(name, str) or name in UNSHARED_PROVIDERS:
        return None
    from crewai.rag.embeddings.factory import PROVIDER_PATHS
    from crewai.utilities.import_utils import import_and_validate_definition

    path = PROVIDER_PATHS.get(name)
    config = spec.get("config", {})
    if path is None or not isinstance(config, dict):
        return None
    provider_class = import_and_validate_definition(path)
    return name, provider_class(**config)


@functools.lru_cache(maxsize=None)
def _provider_name(class_path: str) -> str | None:
    """CrewAI's provider name of a provider class ("module.Class")."""
    from crewai.rag.embeddings.factory import PROVIDER_PATHS

    return {path: name for name, path in PROVIDER_PATHS.items()}.get(class_path)


def resolve(spec: Any) -> Resolved:
    """Resolve a CrewAI embedder configuration (see the module doc).

    Raises whatever CrewAI's provider validation raises for a bad
    configuration; callers then fall back to CrewAI's own build, so the user
    sees CrewAI's error.
    """
    got = _provider_of(spec)
    if got is None:
        return NOT_SHARED
    name, provider = got
    dump = provider.model_dump(exclude={"embedding_callable"})
    callable_ = getattr(provider, "embedding_callable", None)
    default_callable = type(provider).model_fields["embedding_callable"].default
    env = {k: os.environ.get(k) for k in _ENV}
    key = (name, f"{type(provider).__module__}.{type(provider).__qualname__}",
           f"{getattr(callable_, '__module__', '')}.{getattr(callable_, '__qualname__', repr(callable_))}",
           _digest(dump), _digest(env))
    api = None
    if name in API_PROVIDERS and callable_ is default_callable:
        api = _api_config(name, dump)
    if api is not None:
        return Resolved(key, api, api.namespace(), name)
    model = dump.get("model_name") or dump.get("model") or ""
    where = dump.get("url") or dump.get("api_base") or dump.get("api_url") or ""
    ns = f"{name}|{where}|{model}|{dump.get('dimensions') or 0}|{_digest(_public(dump))[:16]}"
    return Resolved(key, None, ns, name)


def _public(dump: dict[str, Any]) -> dict[str, Any]:
    """The settings that can change the vectors (no keys, no headers)."""
    return {k: v for k, v in dump.items() if "key" not in k.lower() and "header" not in k.lower()
            and "token" not in k.lower() and "secret" not in k.lower()}


def _api_config(name: str, dump: dict[str, Any]) -> ApiConfig | None:
    """The endpoint chromadb's OpenAIEmbeddingFunction would call, or None
    when CrewAI's own function would refuse the configuration."""
    key_env = "OPENAI_API_KEY" if os.environ.get("OPENAI_API_KEY") is not None else "CHROMA_OPENAI_API_KEY"
    api_key = dump.get("api_key") or os.environ.get(key_env)
    model = dump.get("model_name")
    if not api_key or not isinstance(model, str) or not model:
        return None
    dims = dump.get("dimensions")
    send_dims = int(dims) if isinstance(dims, int) and dims > 0 and "text-embedding-3" in model else 0
    headers: dict[str, str] = {}
    api_base = dump.get("api_base")
    if dump.get("api_type") == "azure" or name == "azure":
        version, deployment = dump.get("api_version"), dump.get("deployment_id")
        if not (version and deployment and api_base):
            return None
        headers.update({str(k): str(v) for k, v in (dump.get("default_headers") or {}).items()})
        return ApiConfig(provider="azure", model=model, base_url=str(api_base), api_key=str(api_key),
                         dimensions=send_dims, headers=headers, azure_deployment=str(deployment),
                         azure_api_version=str(version))
    custom = os.environ.get("OPENAI_CUSTOM_HEADERS")
    if custom is not None:
        for line in custom.split("\n"):
            k, sep, v = line.partition(":")
            if sep:
                headers[k.strip()] = v.strip()
    headers.update({str(k): str(v) for k, v in (dump.get("default_headers") or {}).items()})
    org = dump.get("organization_id") or os.environ.get("OPENAI_ORG_ID")
    if org:
        headers["OpenAI-Organization"] = str(org)
    project = os.environ.get("OPENAI_PROJECT_ID")
    if project:
        headers["OpenAI-Project"] = project
    base = api_base or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
    return ApiConfig(provider=name, model=model, base_url=str(base), api_key=str(api_key),
                     dimensions=send_dims, headers=headers)
