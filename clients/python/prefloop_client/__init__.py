"""A typed client for prefloop's REST API: studies, imports, progress,
leaderboards and exports. Standard library only.

    client = Client.login("http://127.0.0.1:8000", "researcher", "research-demo")
    client.import_records("demo", [{"prompt": "…", "candidates": ["…", "…"]}])
    client.progress("demo").percent
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Client", "ImportJob", "ImportResult", "PrefloopError", "Progress"]
__version__ = "0.1.0"

JSON = dict[str, Any]


class PrefloopError(Exception):
    """The server refused a request: ``status`` (HTTP), ``detail`` (its message)
    and ``fields`` (per-field messages, when it named fields)."""

    def __init__(self, status: int, detail: str, fields: Mapping[str, Any] | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status, self.detail, self.fields = status, detail, dict(fields or {})


@dataclass(frozen=True)
class Progress:
    """A study's progress (``GET …/progress/``)."""

    status: str
    judgments: int
    judgments_by_models: int
    budget: int
    percent: int
    annotators: int
    queued: int
    model_version: int | None
    heldout_accuracy: float | None


@dataclass(frozen=True)
class ImportResult:
    """What an import stored (and skipped, with ``skip_invalid``)."""

    prompts_created: int
    candidates_created: int
    raw: JSON = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class ImportJob:
    """A background import: poll it with :meth:`Client.import_job`."""

    id: int
    status: str
    percent: int
    error: str
    result: ImportResult | None
    raw: JSON = field(repr=False, default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "failed")


def _result(raw: Mapping[str, Any]) -> ImportResult:
    return ImportResult(int(raw.get("prompts_created", 0)), int(raw.get("candidates_created", 0)), dict(raw))


def _job(raw: Mapping[str, Any]) -> ImportJob:
    result = raw.get("result")
    return ImportJob(
        int(raw["id"]), str(raw["status"]), int(raw.get("percent", 0)), str(raw.get("error", "")),
        _result(result) if result else None, dict(raw),
    )  # fmt: skip


class Client:
    """One prefloop server, as one user (an API token)."""

    def __init__(
        self,
        base_url: str,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self._sleep = sleep

    @classmethod
    def login(cls, base_url: str, username: str, password: str, **options: Any) -> Client:
        """A client signed in with a username and password (``POST /api/v1/auth/token/``)."""
        client = cls(base_url, **options)
        credentials = {"username": username, "password": password}
        client.token = client._request("POST", "/api/v1/auth/token/", json_body=credentials)["token"]
        return client

    # --- transport ---------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        query: Mapping[str, Any] | None = None,
        raw: bool = False,
    ) -> Any:
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        if json_body is not None:
            data, content_type = json.dumps(json_body).encode(), "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            payload = exc.read()
            try:
                problem = json.loads(payload)
            except ValueError:
                problem = {"detail": payload.decode("utf-8", "replace")[:500] or exc.reason}
            if not isinstance(problem, dict):
                problem = {"detail": str(problem)}
            detail = str(problem.get("detail") or "; ".join(f"{k}: {v}" for k, v in problem.items()))
            raise PrefloopError(exc.code, detail, problem.get("fields") or {}) from None
        if raw:
            return body
        return json.loads(body) if body else None

    # --- studies -----------------------------------------------------------------

    def studies(self) -> list[JSON]:
        """The studies you belong to (``GET /api/v1/studies/``)."""
        return self._request("GET", "/api/v1/studies/")

    def study(self, slug: str) -> JSON:
        return self._request("GET", f"/api/v1/studies/{slug}/")

    def create_study(self, name: str, *, settings: Mapping[str, Any] | None = None) -> JSON:
        """A new study you are the researcher of; ``settings`` as the study page's."""
        return self._request("POST", "/api/v1/studies/", json_body={"name": name, "settings": dict(settings or {})})

    def update_study(self, slug: str, settings: Mapping[str, Any]) -> JSON:
        return self._request("PATCH", f"/api/v1/studies/{slug}/", json_body={"settings": dict(settings)})

    def progress(self, slug: str) -> Progress:
        """People's judgments against the budget, the queue and the live model."""
        return Progress(**self._request("GET", f"/api/v1/studies/{slug}/progress/"))

    # --- imports -----------------------------------------------------------------

    def import_records(
        self,
        slug: str,
        records: Iterable[Mapping[str, Any]],
        *,
        skip_invalid: bool = False,
        wait: bool = True,
        poll_s: float = 0.5,
        timeout_s: float = 3600.0,
    ) -> ImportResult | ImportJob:
        """Import records (``{"prompt": …, "candidates": […]}``, as a JSONL file's
        lines). All or nothing unless ``skip_invalid``. A large import runs in the
        background: waited for unless ``wait=False`` (then its job is returned)."""
        body = {"records": list(records), "skip_invalid": skip_invalid}
        return self._import_answer(slug, self._request("POST", f"/api/v1/studies/{slug}/imports/", json_body=body),
                                   wait, poll_s, timeout_s)  # fmt: skip

    def import_file(
        self,
        slug: str,
        path: str | Path,
        *,
        format: str | None = None,
        skip_invalid: bool = False,
        wait: bool = True,
        poll_s: float = 0.5,
        timeout_s: float = 3600.0,
    ) -> ImportResult | ImportJob:
        """Upload a file (JSONL, CSV, Parquet, … as the study page takes them)."""
        path = Path(path)
        boundary = uuid.uuid4().hex
        fields = {"skip_invalid": "true" if skip_invalid else "false", **({"format": format} if format else {})}
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
            for k, v in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
            + path.read_bytes()
            + f"\r\n--{boundary}--\r\n".encode()
        )
        answer = self._request(
            "POST", f"/api/v1/studies/{slug}/imports/", data=b"".join(parts),
            content_type=f"multipart/form-data; boundary={boundary}",
        )  # fmt: skip
        return self._import_answer(slug, answer, wait, poll_s, timeout_s)

    def import_job(self, slug: str, job_id: int) -> ImportJob:
        return _job(self._request("GET", f"/api/v1/studies/{slug}/imports/{job_id}/"))

    def _import_answer(self, slug: str, answer: JSON, wait: bool, poll_s: float, timeout_s: float) -> Any:
        if "status" not in answer:  # imported during the request
            return _result(answer)
        job = _job(answer)
        if not wait:
            return job
        waited = 0.0
        while not job.finished:
            if waited >= timeout_s:
                raise TimeoutError(f"import job {job.id} still {job.status} after {timeout_s:.0f} s")
            self._sleep(poll_s)
            waited += poll_s
            job = self.import_job(slug, job.id)
        if job.status == "failed":
            raise PrefloopError(400, job.error or "the import failed")
        return job.result

    # --- results -----------------------------------------------------------------

    def leaderboard(self, slug: str) -> JSON:
        """Models ranked by Bradley–Terry score with intervals, and the reward model's best responses."""
        return self._request("GET", f"/api/v1/studies/{slug}/leaderboard/")

    def model_versions(self, slug: str) -> list[JSON]:
        """The study's reward-model versions, newest first (every page)."""
        versions, path, query = [], f"/api/v1/studies/{slug}/model-versions/", None
        while True:
            page = self._request("GET", path, query=query)
            versions += page["results"]
            if not page.get("next"):
                return versions
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(page["next"]).query))

    def export(
        self,
        slug: str,
        fmt: str,
        destination: str | Path | None = None,
        *,
        pseudonymise: bool = False,
        form: str | None = None,
    ) -> bytes | Path:
        """An export (``judgments.jsonl``, ``dpo.parquet``, …): its bytes, or
        written to ``destination`` (returned)."""
        query = {"pseudonymise": "1" if pseudonymise else None, "form": form}
        body = self._request("GET", f"/api/v1/studies/{slug}/exports/{fmt}/", query=query, raw=True)
        if destination is None:
            return body
        target = Path(destination)
        target.write_bytes(body)
        return target
